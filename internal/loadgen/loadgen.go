// Package loadgen drives RideShare's public API (shared/contract/api.md)
// with concurrent clients and reports throughput and latency per route.
//
// Each client first seeds a few users (and, when the mix joins or reads
// rides, one ride) so that its later calls are valid; seeding is not
// measured. Then every client loops until the duration has passed or the
// request budget is spent: it draws a route from the mix and calls it.
//
//   - add-user:      PUT /api/v1/users with a fresh name and its SHA-1 hex
//   - create-ride:   POST /api/v1/rides by a known user, at a future time
//     (1 hour to 30 days ahead, UTC, DD-MM-YYYY:SS-MM-HH), between two
//     different areas of 1..Areas
//   - list-upcoming: GET /api/v1/rides?source=S&destination=D, random areas
//   - join-ride:     POST /api/v1/rides/{id}: a known user joins a recently
//     created ride that someone else created
//   - ride-details:  GET /api/v1/rides/{id} of a recently created ride
//
// Users and rides are shared by every client. A join may pick a user who
// already joined that ride: its 400 ("already joined") is an expected
// error. Every other non-2xx answer, and every call that got no answer, is
// an unexpected error.
//
// Only loopback URLs are accepted: this is a local benchmark, not a tool
// to load someone else's server.
package loadgen

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TimestampLayout is the contract's DD-MM-YYYY:SS-MM-HH as a Go layout.
const TimestampLayout = "02-01-2006:05-04-15"

// MaxAreas is the number of areas in AreaNameEnum.csv.
const MaxAreas = 198

// Limits on the options, so that a run stays bounded.
const (
	MaxClients  = 1024
	MaxDuration = time.Hour
	ridePool    = 4096 // recently created rides kept for joins and details
)

// Options configure a run. Zero values take the defaults of RegisterFlags.
type Options struct {
	URL       string        // base URL for every route: Traefik's entry point
	UsersURL  string        // overrides URL for /api/v1/users routes
	RidesURL  string        // overrides URL for /api/v1/rides routes
	Clients   int           // concurrent clients (default 16)
	Duration  time.Duration // measured phase (default 20s; at most MaxDuration)
	Requests  int64         // stop after this many measured calls as well (0: no limit)
	Mix       Mix           // route weights (zero: DefaultMix)
	SeedUsers int           // users each client adds before measuring (default 2, at least 2)
	Areas     int           // areas used are 1..Areas (default 198, 2..198)
	Timeout   time.Duration // per call (default 10s)
	Seed      uint64        // random seed for the mix (0: random)
	Clear     bool          // POST /api/v1/db/clear (users service) before seeding
	Prefix    string        // username prefix (default "lg-<time>-"), unique per run

	// HTTPClient makes the calls; nil: a client with keep-alive connections
	// for every client.
	HTTPClient *http.Client
	// Now is the clock for ride timestamps (nil: time.Now).
	Now func() time.Time
}

// RegisterFlags binds the options to flags.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.URL, "url", "http://127.0.0.1:8080", "base URL (Traefik's entry point) for every route")
	fs.StringVar(&o.UsersURL, "users-url", "", "base URL of the users service (overrides -url for /api/v1/users)")
	fs.StringVar(&o.RidesURL, "rides-url", "", "base URL of the rides service (overrides -url for /api/v1/rides)")
	fs.IntVar(&o.Clients, "c", 16, "concurrent clients")
	fs.DurationVar(&o.Duration, "d", 20*time.Second, "duration of the measured phase (at most 1h)")
	fs.Int64Var(&o.Requests, "n", 0, "stop after this many requests in all, or at -d, whichever comes first (0: only -d)")
	o.Mix = DefaultMix()
	fs.Var(&o.Mix, "mix", "route weights, NAME=WEIGHT,... over add-user, create-ride, list-upcoming, join-ride, ride-details (unnamed: 0)")
	fs.IntVar(&o.SeedUsers, "seed-users", 2, "users each client adds before the measured phase")
	fs.IntVar(&o.Areas, "areas", MaxAreas, "rides and searches use areas 1..N")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Second, "timeout of one call")
	fs.Uint64Var(&o.Seed, "seed", 0, "random seed (0: random)")
	fs.BoolVar(&o.Clear, "clear", false, "empty the database (POST /api/v1/db/clear) before seeding: every user and ride is gone")
}

// Generator runs the load; make one with New.
type Generator struct {
	opts     Options
	usersURL string
	ridesURL string
	client   *http.Client
	now      func() time.Time

	mu      sync.Mutex
	users   []string
	rides   []ride // ring of the latest ridePool rides
	nextIdx int
	made    atomic.Int64 // users made, for unique names
}

type ride struct {
	id      int64
	creator string
}

// New checks the options and fills in defaults.
func New(opts Options) (*Generator, error) {
	if opts.Clients == 0 {
		opts.Clients = 16
	}
	if opts.Duration == 0 {
		opts.Duration = 20 * time.Second
	}
	if opts.Mix == (Mix{}) {
		opts.Mix = DefaultMix()
	}
	if opts.SeedUsers == 0 {
		opts.SeedUsers = 2
	}
	if opts.Areas == 0 {
		opts.Areas = MaxAreas
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Prefix == "" {
		opts.Prefix = "lg-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	}
	switch {
	case opts.Clients < 1 || opts.Clients > MaxClients:
		return nil, fmt.Errorf("clients must be 1..%d, got %d", MaxClients, opts.Clients)
	case opts.Duration < 0 || opts.Duration > MaxDuration:
		return nil, fmt.Errorf("duration must be positive and at most %s, got %s", MaxDuration, opts.Duration)
	case opts.Requests < 0:
		return nil, fmt.Errorf("requests must be >= 0, got %d", opts.Requests)
	case opts.SeedUsers < 2 || opts.SeedUsers > 1000:
		// Two at least, so that a join always finds a user other than the creator.
		return nil, fmt.Errorf("seed users must be 2..1000, got %d", opts.SeedUsers)
	case opts.Areas < 2 || opts.Areas > MaxAreas:
		return nil, fmt.Errorf("areas must be 2..%d, got %d", MaxAreas, opts.Areas)
	case opts.Timeout < 0:
		return nil, fmt.Errorf("timeout must be positive, got %s", opts.Timeout)
	}
	for _, w := range opts.Mix {
		if w < 0 {
			return nil, fmt.Errorf("mix: negative weight in %s", opts.Mix)
		}
	}
	g := &Generator{opts: opts, client: opts.HTTPClient, now: opts.Now}
	var err error
	if g.usersURL, err = baseURL("users", opts.UsersURL, opts.URL); err != nil {
		return nil, err
	}
	if g.ridesURL, err = baseURL("rides", opts.RidesURL, opts.URL); err != nil {
		return nil, err
	}
	if g.client == nil {
		g.client = &http.Client{Transport: &http.Transport{
			Proxy:               nil, // loopback only: never through a proxy
			MaxIdleConns:        4 * opts.Clients,
			MaxIdleConnsPerHost: 2 * opts.Clients,
			IdleConnTimeout:     30 * time.Second,
		}}
	}
	if g.now == nil {
		g.now = time.Now
	}
	return g, nil
}

// baseURL picks override or base and checks that it is an http URL on a
// loopback address.
func baseURL(what, override, base string) (string, error) {
	raw := override
	if raw == "" {
		raw = base
	}
	if raw == "" {
		return "", fmt.Errorf("%s: no URL (set -url or -%s-url)", what, what)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%s URL: %w", what, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("%s URL %q: scheme must be http or https", what, raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%s URL %q: no query, fragment or user info", what, raw)
	}
	if !IsLoopback(u.Hostname()) {
		return "", fmt.Errorf("%s URL %q: only loopback hosts (127.0.0.0/8, ::1, localhost) are allowed", what, raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// IsLoopback reports whether host (no port) is localhost or a loopback IP.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Password is the SHA-1 hex digest the generator uses as name's password.
func Password(name string) string {
	sum := sha1.Sum([]byte("loadgen:" + name))
	return hex.EncodeToString(sum[:])
}

// Run seeds, runs the measured phase and reports. Cancelling ctx stops the
// run early; the calls it cut short are not counted. An error means the run
// could not start (e.g. seeding failed): the stack is not serving.
func (g *Generator) Run(ctx context.Context) (*Report, error) {
	o := g.opts
	seed := o.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	if o.Clear {
		if err := g.clear(ctx); err != nil {
			return nil, err
		}
	}
	needRides := o.Mix[JoinRide] > 0 || o.Mix[RideDetails] > 0
	// Every client adds its users first (a barrier), then the seed rides,
	// so each ride's creator exists and joins have other users to pick.
	if err := g.parallel(ctx, func(ctx context.Context, c int) error {
		for range o.SeedUsers {
			if out, err := g.addUser(ctx); err != nil {
				return fmt.Errorf("seeding users: %w", err)
			} else if out.status != http.StatusCreated {
				return fmt.Errorf("seeding users: PUT /api/v1/users: %d %s", out.status, out.msg)
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	seededRides := 0
	if needRides {
		if err := g.parallel(ctx, func(ctx context.Context, c int) error {
			rng := rand.New(rand.NewPCG(seed, ^uint64(c)))
			if out, err := g.createRide(ctx, rng); err != nil {
				return fmt.Errorf("seeding rides: %w", err)
			} else if out.status != http.StatusCreated || out.msg != "" {
				return fmt.Errorf("seeding rides: POST /api/v1/rides: %d %s", out.status, out.msg)
			}
			return nil
		}); err != nil {
			return nil, err
		}
		seededRides = o.Clients
	}

	recs := make([]*recorder, o.Clients)
	var budget atomic.Int64
	budget.Store(o.Requests)
	start := time.Now()
	deadline := start.Add(o.Duration)
	var wg sync.WaitGroup
	for c := range o.Clients {
		recs[c] = newRecorder()
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if o.Requests > 0 && budget.Add(-1) < 0 {
					return
				}
				route := o.Mix.Pick(rng)
				t0 := time.Now()
				out, err := g.call(ctx, route, rng)
				lat := time.Since(t0)
				if err != nil { // ctx cancelled: not counted
					return
				}
				recs[c].add(route, lat, out)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	rep := &Report{
		Started:        start.UTC(),
		ElapsedSeconds: elapsed.Seconds(),
		Clients:        o.Clients,
		Duration:       o.Duration.String(),
		RequestLimit:   o.Requests,
		UsersURL:       g.usersURL,
		RidesURL:       g.ridesURL,
		Mix:            o.Mix.asMap(),
		SeededUsers:    o.Clients * o.SeedUsers,
		SeededRides:    seededRides,
	}
	rep.Routes, rep.Total = merge(recs).stats(o.Mix, elapsed)
	if err := ctx.Err(); err != nil && rep.Total.Requests == 0 {
		return rep, err
	}
	return rep, nil
}

// parallel runs f once per client and returns the first error.
func (g *Generator) parallel(ctx context.Context, f func(ctx context.Context, c int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, g.opts.Clients)
	var wg sync.WaitGroup
	for c := range g.opts.Clients {
		wg.Go(func() {
			if errs[c] = f(ctx, c); errs[c] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return errors.Join(errs...)
}

func (g *Generator) clear(ctx context.Context) error {
	o, err := g.do(ctx, http.MethodPost, g.usersURL+"/api/v1/db/clear", struct{}{}, nil)
	if err != nil {
		return fmt.Errorf("clear: %w", err)
	}
	if o.status != http.StatusOK {
		return fmt.Errorf("clear: POST /api/v1/db/clear: %d %s", o.status, o.msg)
	}
	g.mu.Lock()
	g.users, g.rides, g.nextIdx = nil, nil, 0
	g.mu.Unlock()
	return nil
}

// call makes one call of route. err is non-nil only when ctx was
// cancelled; every other failure is an outcome.
func (g *Generator) call(ctx context.Context, route Route, rng *rand.Rand) (outcome, error) {
	switch route {
	case AddUser:
		return g.addUser(ctx)
	case CreateRide:
		return g.createRide(ctx, rng)
	case ListUpcoming:
		src, dst := g.areas(rng)
		u := fmt.Sprintf("%s/api/v1/rides?source=%d&destination=%d", g.ridesURL, src, dst)
		return g.do(ctx, http.MethodGet, u, nil, nil)
	case JoinRide:
		r, user := g.pickJoin(rng)
		o, err := g.do(ctx, http.MethodPost, g.rideURL(r.id), map[string]string{"username": user}, nil)
		if o.status == http.StatusBadRequest && strings.Contains(o.msg, "already joined") {
			o.expected = true
		}
		return o, err
	case RideDetails:
		r := g.pickRide(rng)
		return g.do(ctx, http.MethodGet, g.rideURL(r.id), nil, nil)
	}
	panic("loadgen: unknown route " + route.String())
}

func (g *Generator) rideURL(id int64) string {
	return g.ridesURL + "/api/v1/rides/" + strconv.FormatInt(id, 10)
}

func (g *Generator) addUser(ctx context.Context) (outcome, error) {
	name := g.opts.Prefix + strconv.FormatInt(g.made.Add(1), 10)
	o, err := g.do(ctx, http.MethodPut, g.usersURL+"/api/v1/users",
		map[string]string{"username": name, "password": Password(name)}, nil)
	if err == nil && o.status == http.StatusCreated {
		g.mu.Lock()
		g.users = append(g.users, name)
		g.mu.Unlock()
	}
	return o, err
}

func (g *Generator) createRide(ctx context.Context, rng *rand.Rand) (outcome, error) {
	creator := g.pickUser(rng)
	src, dst := g.areas(rng)
	// 1 hour to 30 days ahead, whole seconds.
	ahead := time.Hour + time.Duration(rng.Int64N(int64(30*24*time.Hour/time.Second)))*time.Second
	body := map[string]any{
		"created_by":  creator,
		"timestamp":   FormatTimestamp(g.now().Add(ahead)),
		"source":      src,
		"destination": dst,
	}
	var created struct {
		RideID int64 `json:"rideId"`
	}
	o, err := g.do(ctx, http.MethodPost, g.ridesURL+"/api/v1/rides", body, &created)
	if err == nil && o.status == http.StatusCreated {
		if created.RideID <= 0 {
			if o.msg == "" {
				o.msg = "201 without a positive rideId"
			}
			return o, nil
		}
		g.addRide(ride{created.RideID, creator})
	}
	return o, err
}

// FormatTimestamp formats t in UTC as the contract's DD-MM-YYYY:SS-MM-HH.
func FormatTimestamp(t time.Time) string { return t.UTC().Format(TimestampLayout) }

func (g *Generator) areas(rng *rand.Rand) (src, dst int) {
	src = 1 + rng.IntN(g.opts.Areas)
	dst = 1 + rng.IntN(g.opts.Areas-1)
	if dst >= src {
		dst++
	}
	return src, dst
}

func (g *Generator) pickUser(rng *rand.Rand) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.users[rng.IntN(len(g.users))]
}

func (g *Generator) addRide(r ride) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.rides) < ridePool {
		g.rides = append(g.rides, r)
		return
	}
	g.rides[g.nextIdx] = r
	g.nextIdx = (g.nextIdx + 1) % ridePool
}

func (g *Generator) pickRide(rng *rand.Rand) ride {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rides[rng.IntN(len(g.rides))]
}

// pickJoin picks a ride and a user other than its creator (there are
// always at least two users: every client seeds at least two).
func (g *Generator) pickJoin(rng *rand.Rand) (ride, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.rides[rng.IntN(len(g.rides))]
	for {
		u := g.users[rng.IntN(len(g.users))]
		if u != r.creator {
			return r, u
		}
	}
}

// do makes one call: body (nil: none) as JSON; a 2xx answer's JSON into
// into (when not nil). The error is non-nil only when ctx is done.
func (g *Generator) do(ctx context.Context, method, u string, body, into any) (outcome, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			panic(err) // our own maps
		}
		rd = bytes.NewReader(b)
	}
	cctx, cancel := context.WithTimeout(ctx, g.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, method, u, rd)
	if err != nil {
		return outcome{msg: err.Error()}, nil
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return outcome{}, ctx.Err()
		}
		return outcome{msg: err.Error()}, nil
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		if ctx.Err() != nil {
			return outcome{}, ctx.Err()
		}
		return outcome{msg: "reading the answer: " + err.Error()}, nil
	}
	o := outcome{status: resp.StatusCode}
	if isSuccess(resp.StatusCode) {
		if into != nil && len(data) > 0 {
			if err := json.Unmarshal(data, into); err != nil {
				o.msg = "undecodable answer: " + err.Error()
			}
		}
		return o, nil
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		o.msg = e.Error
	} else {
		o.msg = strings.TrimSpace(string(data[:min(len(data), 200)]))
	}
	if o.msg == "" {
		o.msg = http.StatusText(resp.StatusCode)
	}
	return o, nil
}
