package loadgen

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Route is one of the public API calls the generator makes.
type Route int

// The routes, in report order.
const (
	AddUser      Route = iota // PUT /api/v1/users
	CreateRide                // POST /api/v1/rides
	ListUpcoming              // GET /api/v1/rides?source=S&destination=D
	JoinRide                  // POST /api/v1/rides/{rideId}
	RideDetails               // GET /api/v1/rides/{rideId}
	numRoutes
)

var routeInfo = [numRoutes]struct {
	name     string // in -mix and the report
	endpoint string // method and path pattern
}{
	AddUser:      {"add-user", "PUT /api/v1/users"},
	CreateRide:   {"create-ride", "POST /api/v1/rides"},
	ListUpcoming: {"list-upcoming", "GET /api/v1/rides?source=&destination="},
	JoinRide:     {"join-ride", "POST /api/v1/rides/{rideId}"},
	RideDetails:  {"ride-details", "GET /api/v1/rides/{rideId}"},
}

// String is the route's short name (add-user, create-ride, ...).
func (r Route) String() string {
	if r < 0 || r >= numRoutes {
		return "route(" + strconv.Itoa(int(r)) + ")"
	}
	return routeInfo[r].name
}

// Endpoint is the route's method and path pattern.
func (r Route) Endpoint() string { return routeInfo[r].endpoint }

// Routes lists every route in report order.
func Routes() []Route {
	rs := make([]Route, numRoutes)
	for i := range rs {
		rs[i] = Route(i)
	}
	return rs
}

// Mix is the relative weight of each route: a client picks its next call
// with probability weight/sum. A zero weight never picks the route.
type Mix [numRoutes]int

// DefaultMix is a read-heavy ride-sharing day: searches dominate, then
// looking at a ride, then creating and joining, and now and then a new user.
func DefaultMix() Mix {
	var m Mix
	m[AddUser] = 1
	m[CreateRide] = 2
	m[ListUpcoming] = 5
	m[JoinRide] = 2
	m[RideDetails] = 3
	return m
}

// ParseMix reads "add-user=1,create-ride=2,list-upcoming=5,join-ride=2,ride-details=3".
// Routes not named get weight 0; at least one weight must be positive.
func ParseMix(s string) (Mix, error) {
	var m Mix
	seen := map[Route]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return Mix{}, fmt.Errorf("mix: %q is not NAME=WEIGHT", part)
		}
		r, ok := routeByName(strings.TrimSpace(name))
		if !ok {
			return Mix{}, fmt.Errorf("mix: unknown route %q (want one of %s)", name, strings.Join(routeNames(), ", "))
		}
		if seen[r] {
			return Mix{}, fmt.Errorf("mix: route %q given twice", name)
		}
		seen[r] = true
		w, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil || w < 0 || w > 1_000_000 {
			return Mix{}, fmt.Errorf("mix: weight of %s must be an integer from 0 to 1000000, got %q", name, val)
		}
		m[r] = w
	}
	if m.total() == 0 {
		return Mix{}, fmt.Errorf("mix: %q gives no route a positive weight", s)
	}
	return m, nil
}

func routeByName(name string) (Route, bool) {
	for _, r := range Routes() {
		if routeInfo[r].name == name {
			return r, true
		}
	}
	return 0, false
}

func routeNames() []string {
	var ns []string
	for _, r := range Routes() {
		ns = append(ns, r.String())
	}
	return ns
}

func (m Mix) total() int {
	t := 0
	for _, w := range m {
		t += w
	}
	return t
}

// String formats the mix as ParseMix reads it (every route, zeros included).
func (m Mix) String() string {
	parts := make([]string, 0, numRoutes)
	for _, r := range Routes() {
		parts = append(parts, fmt.Sprintf("%s=%d", r, m[r]))
	}
	return strings.Join(parts, ",")
}

// Set implements flag.Value.
func (m *Mix) Set(s string) error {
	v, err := ParseMix(s)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Pick draws a route according to the weights; the mix must have a
// positive total.
func (m Mix) Pick(rng *rand.Rand) Route {
	n := rng.IntN(m.total())
	for _, r := range Routes() {
		if n < m[r] {
			return r
		}
		n -= m[r]
	}
	panic("loadgen: Pick on an empty mix")
}

// asMap is the mix for the JSON report.
func (m Mix) asMap() map[string]int {
	out := make(map[string]int, numRoutes)
	for _, r := range Routes() {
		out[r.String()] = m[r]
	}
	return out
}
