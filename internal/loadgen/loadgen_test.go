package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	seq := func(n int) []time.Duration {
		s := make([]time.Duration, n)
		for i := range s {
			s[i] = time.Duration(i + 1)
		}
		return s
	}
	tests := []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"no samples", nil, 50, 0},
		{"one sample p50", seq(1), 50, 1},
		{"one sample p99", seq(1), 99, 1},
		{"two samples p50 is the lower", seq(2), 50, 1},
		{"two samples p51 is the upper", seq(2), 51, 2},
		{"1..100 p50", seq(100), 50, 50},
		{"1..100 p90", seq(100), 90, 90},
		{"1..100 p99", seq(100), 99, 99},
		{"1..100 p100 is the max", seq(100), 100, 100},
		{"1..10 p99 rounds up to the max", seq(10), 99, 10},
		{"1..10 p90", seq(10), 90, 9},
		{"1..1000 p99.9", seq(1000), 99.9, 999},
		{"tiny p takes the min", seq(1000), 0.0001, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.samples, tt.p); got != tt.want {
				t.Errorf("Percentile(%d samples, %v) = %v, want %v", len(tt.samples), tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	// Unsorted on purpose: Summarize sorts.
	samples := []time.Duration{4 * time.Millisecond, 1 * time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond}
	got := Summarize(samples)
	want := Latency{Mean: 2.5, P50: 2, P90: 4, P99: 4, Max: 4}
	if got != want {
		t.Errorf("Summarize = %+v, want %+v", got, want)
	}
	if (Summarize(nil) != Latency{}) {
		t.Errorf("Summarize(nil) not zero")
	}
}

func TestParseMix(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Mix
		wantErr string
	}{
		{"default round trip", DefaultMix().String(), DefaultMix(), ""},
		{"one route, others zero", "list-upcoming=3", Mix{ListUpcoming: 3}, ""},
		{"spaces and empty parts", " add-user = 1 ,, ride-details=2 ", Mix{AddUser: 1, RideDetails: 2}, ""},
		{"unknown route", "search=1", Mix{}, "unknown route"},
		{"no equals", "add-user", Mix{}, "NAME=WEIGHT"},
		{"twice", "add-user=1,add-user=2", Mix{}, "twice"},
		{"negative", "add-user=-1", Mix{}, "integer from 0"},
		{"not a number", "add-user=x", Mix{}, "integer from 0"},
		{"all zero", "add-user=0,join-ride=0", Mix{}, "no route a positive weight"},
		{"empty", "", Mix{}, "no route a positive weight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMix(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseMix(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseMix(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestMixPick(t *testing.T) {
	tests := []struct {
		name string
		mix  Mix
	}{
		{"default", DefaultMix()},
		{"only lists", Mix{ListUpcoming: 1}},
		{"writes only, uneven", Mix{AddUser: 1, CreateRide: 3, JoinRide: 6}},
		{"equal", Mix{1, 1, 1, 1, 1}},
	}
	const draws = 50000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			var got [numRoutes]int
			for range draws {
				got[tt.mix.Pick(rng)]++
			}
			for _, r := range Routes() {
				want := float64(tt.mix[r]) / float64(tt.mix.total())
				frac := float64(got[r]) / draws
				if tt.mix[r] == 0 && got[r] != 0 {
					t.Errorf("%s has weight 0 but was drawn %d times", r, got[r])
				}
				if d := frac - want; d > 0.01 || d < -0.01 {
					t.Errorf("%s drawn %.3f of the time, want %.3f", r, frac, want)
				}
			}
		})
	}
}

func TestNewChecksOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string // "" = valid
	}{
		{"IPv4 loopback", Options{URL: "http://127.0.0.1:8080"}, ""},
		{"other 127/8 address", Options{URL: "http://127.1.2.3:8080/"}, ""},
		{"localhost", Options{URL: "http://localhost:8080"}, ""},
		{"IPv6 loopback", Options{URL: "http://[::1]:8080"}, ""},
		{"split URLs, no base", Options{UsersURL: "http://127.0.0.1:1", RidesURL: "http://127.0.0.1:2"}, ""},
		{"private address", Options{URL: "http://10.0.0.1:8080"}, "loopback"},
		{"unspecified address", Options{URL: "http://0.0.0.0:8080"}, "loopback"},
		{"host name", Options{URL: "http://example.com"}, "loopback"},
		{"users override not loopback", Options{URL: "http://127.0.0.1:8080", UsersURL: "http://192.168.1.1"}, "users URL"},
		{"no URL at all", Options{}, "no URL"},
		{"bad scheme", Options{URL: "ftp://127.0.0.1"}, "scheme"},
		{"query in URL", Options{URL: "http://127.0.0.1:1/?a=b"}, "no query"},
		{"too many clients", Options{URL: "http://127.0.0.1:1", Clients: MaxClients + 1}, "clients"},
		{"negative clients", Options{URL: "http://127.0.0.1:1", Clients: -1}, "clients"},
		{"duration over the cap", Options{URL: "http://127.0.0.1:1", Duration: 2 * time.Hour}, "duration"},
		{"one seed user", Options{URL: "http://127.0.0.1:1", SeedUsers: 1}, "seed users"},
		{"one area", Options{URL: "http://127.0.0.1:1", Areas: 1}, "areas"},
		{"too many areas", Options{URL: "http://127.0.0.1:1", Areas: 199}, "areas"},
		{"negative requests", Options{URL: "http://127.0.0.1:1", Requests: -5}, "requests"},
		{"negative weight", Options{URL: "http://127.0.0.1:1", Mix: Mix{AddUser: -1, ListUpcoming: 2}}, "negative weight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := New(tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if g.opts.Clients != 16 || g.opts.Duration != 20*time.Second || g.opts.Mix != DefaultMix() {
					t.Errorf("defaults not applied: %+v", g.opts)
				}
				if strings.HasSuffix(g.usersURL, "/") || strings.HasSuffix(g.ridesURL, "/") {
					t.Errorf("trailing slash kept: %q %q", g.usersURL, g.ridesURL)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestFormatTimestamp(t *testing.T) {
	in := time.Date(2027, 1, 26, 9, 53, 7, 0, time.FixedZone("X", 3600))
	if got, want := FormatTimestamp(in), "26-01-2027:07-53-08"; got != want {
		t.Errorf("FormatTimestamp = %q, want %q (UTC, seconds-minutes-hours)", got, want)
	}
	if p := Password("zoe"); !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(p) {
		t.Errorf("Password = %q, not 40 hex digits", p)
	}
}

// fake is an in-memory RideShare that checks every call as the contract
// says, counts calls per service, and can be told to misbehave.
type fake struct {
	t  *testing.T
	mu sync.Mutex

	users   map[string]bool
	rides   map[int64]*fakeRide
	nextID  int64
	hits    map[string]int // "users" / "rides" / "wrong-service"
	bad     []string       // contract violations by the generator
	cleared int

	// failCreates answers every n-th ride creation 503 (0: never).
	failCreates int
	creates     int
	// alwaysTaken answers every join 400 "already joined".
	alwaysTaken bool
}

type fakeRide struct {
	creator string
	members map[string]bool
	ts      time.Time
	src     int
	dst     int
}

func newFake(t *testing.T) *fake {
	return &fake{t: t, users: map[string]bool{}, rides: map[int64]*fakeRide{}, hits: map[string]int{}}
}

var hexPass = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// handler serves the routes of service ("users", "rides" or "" for both).
func (f *fake) handler(service string) http.Handler {
	mux := http.NewServeMux()
	on := func(svc, pattern string, h func(w http.ResponseWriter, r *http.Request)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if service != "" && service != svc {
				f.hits["wrong-service"]++
				fail(w, http.StatusNotFound, "not this service")
				return
			}
			f.hits[svc]++
			h(w, r)
		})
	}
	on("users", "POST /api/v1/db/clear", func(w http.ResponseWriter, r *http.Request) {
		f.users, f.rides = map[string]bool{}, map[int64]*fakeRide{}
		f.cleared++
		writeJSON(w, 200, struct{}{})
	})
	on("users", "PUT /api/v1/users", func(w http.ResponseWriter, r *http.Request) {
		var b struct{ Username, Password string }
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil || b.Username == "" || !hexPass.MatchString(b.Password) {
			f.bad = append(f.bad, fmt.Sprintf("bad PUT user %+v %v", b, err))
			fail(w, 400, "bad user")
			return
		}
		if f.users[b.Username] {
			fail(w, 400, "username taken")
			return
		}
		f.users[b.Username] = true
		writeJSON(w, 201, struct{}{})
	})
	on("rides", "POST /api/v1/rides", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			CreatedBy   string `json:"created_by"`
			Timestamp   string `json:"timestamp"`
			Source      int    `json:"source"`
			Destination int    `json:"destination"`
		}
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			f.bad = append(f.bad, "bad ride body: "+err.Error())
			fail(w, 400, "bad body")
			return
		}
		ts, err := time.Parse(TimestampLayout, b.Timestamp)
		switch {
		case err != nil || !ts.After(time.Now()):
			f.bad = append(f.bad, fmt.Sprintf("timestamp %q not a future DD-MM-YYYY:SS-MM-HH: %v", b.Timestamp, err))
		case b.Source < 1 || b.Source > MaxAreas || b.Destination < 1 || b.Destination > MaxAreas || b.Source == b.Destination:
			f.bad = append(f.bad, fmt.Sprintf("areas %d -> %d", b.Source, b.Destination))
		case !f.users[b.CreatedBy]:
			f.bad = append(f.bad, "unknown creator "+b.CreatedBy)
		default:
			f.creates++
			if f.failCreates > 0 && f.creates%f.failCreates == 0 {
				fail(w, 503, "dbaas unavailable")
				return
			}
			f.nextID++
			f.rides[f.nextID] = &fakeRide{creator: b.CreatedBy, members: map[string]bool{}, ts: ts, src: b.Source, dst: b.Destination}
			writeJSON(w, 201, map[string]int64{"rideId": f.nextID})
			return
		}
		fail(w, 400, "bad ride")
	})
	on("rides", "GET /api/v1/rides", func(w http.ResponseWriter, r *http.Request) {
		src, err1 := strconv.Atoi(r.URL.Query().Get("source"))
		dst, err2 := strconv.Atoi(r.URL.Query().Get("destination"))
		if err1 != nil || err2 != nil || src < 1 || dst > MaxAreas {
			f.bad = append(f.bad, "bad list query "+r.URL.RawQuery)
			fail(w, 400, "bad query")
			return
		}
		var out []map[string]any
		for id, rd := range f.rides {
			if rd.src == src && rd.dst == dst {
				out = append(out, map[string]any{"rideId": id, "username": rd.creator, "timestamp": FormatTimestamp(rd.ts)})
			}
		}
		if len(out) == 0 {
			w.WriteHeader(204)
			return
		}
		writeJSON(w, 200, out)
	})
	on("rides", "POST /api/v1/rides/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
		var b struct{ Username string }
		_ = json.NewDecoder(r.Body).Decode(&b)
		rd := f.rides[id]
		switch {
		case rd == nil:
			f.bad = append(f.bad, "join of unknown ride "+r.PathValue("id"))
			w.WriteHeader(204)
		case !f.users[b.Username]:
			f.bad = append(f.bad, "join by unknown user "+b.Username)
			fail(w, 400, "unknown user")
		case b.Username == rd.creator:
			f.bad = append(f.bad, "creator joins own ride")
			fail(w, 400, "cannot join: user created ride and cannot join it")
		case rd.members[b.Username] || f.alwaysTaken:
			fail(w, 400, fmt.Sprintf("cannot join: user %q already joined ride %d", b.Username, id))
		default:
			rd.members[b.Username] = true
			writeJSON(w, 200, struct{}{})
		}
	})
	on("rides", "GET /api/v1/rides/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
		rd := f.rides[id]
		if rd == nil {
			f.bad = append(f.bad, "details of unknown ride "+r.PathValue("id"))
			w.WriteHeader(204)
			return
		}
		writeJSON(w, 200, map[string]any{"rideId": id, "created_by": rd.creator, "users": []string{},
			"timestamp": FormatTimestamp(rd.ts), "source": rd.src, "destination": rd.dst})
	})
	return mux
}

func (f *fake) check() {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.bad {
		f.t.Errorf("generator broke the contract: %s", b)
	}
	if f.hits["wrong-service"] > 0 {
		f.t.Errorf("%d calls reached the wrong service", f.hits["wrong-service"])
	}
}

func TestRunAgainstFake(t *testing.T) {
	tests := []struct {
		name  string
		split bool // users and rides on two servers
		mix   Mix
	}{
		{"one base URL, default mix", false, DefaultMix()},
		{"users and rides URLs, default mix", true, DefaultMix()},
		{"reads only", false, Mix{ListUpcoming: 1, RideDetails: 1}},
		{"writes only", true, Mix{AddUser: 1, CreateRide: 1, JoinRide: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			opts := Options{Clients: 4, Requests: 800, Duration: 30 * time.Second, Mix: tt.mix, Seed: 7, Areas: 4, Clear: true}
			if tt.split {
				us := httptest.NewServer(f.handler("users"))
				defer us.Close()
				rs := httptest.NewServer(f.handler("rides"))
				defer rs.Close()
				opts.UsersURL, opts.RidesURL = us.URL, rs.URL+"/"
			} else {
				s := httptest.NewServer(f.handler(""))
				defer s.Close()
				opts.URL = s.URL
			}
			g, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := g.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			f.check()
			if f.cleared != 1 {
				t.Errorf("db/clear called %d times, want 1", f.cleared)
			}
			if rep.Total.Requests != 800 {
				t.Errorf("total requests = %d, want exactly the budget 800", rep.Total.Requests)
			}
			if rep.Total.UnexpectedErrors != 0 {
				t.Errorf("unexpected errors: %+v", rep.Total.ErrorDetails)
			}
			if rep.SeededUsers != 8 {
				t.Errorf("seeded users = %d, want 4 clients x 2", rep.SeededUsers)
			}
			var sum int64
			for _, r := range rep.Routes {
				if tt.mix[mustRoute(t, r.Route)] == 0 {
					t.Errorf("route %s with weight 0 in the report", r.Route)
				}
				if r.Requests == 0 {
					t.Errorf("route %s never called", r.Route)
				}
				var st int64
				for _, n := range r.Statuses {
					st += n
				}
				if st != r.Requests {
					t.Errorf("%s: statuses add up to %d, requests %d", r.Route, st, r.Requests)
				}
				if !(r.Latency.P50 <= r.Latency.P90 && r.Latency.P90 <= r.Latency.P99 && r.Latency.P99 <= r.Latency.Max) {
					t.Errorf("%s: percentiles out of order: %+v", r.Route, r.Latency)
				}
				sum += r.Requests
			}
			if sum != rep.Total.Requests {
				t.Errorf("routes add up to %d, total %d", sum, rep.Total.Requests)
			}
			if rep.Total.Throughput <= 0 || rep.ElapsedSeconds <= 0 {
				t.Errorf("throughput %v over %vs", rep.Total.Throughput, rep.ElapsedSeconds)
			}
		})
	}
}

func mustRoute(t *testing.T, name string) Route {
	t.Helper()
	r, ok := routeByName(name)
	if !ok {
		t.Fatalf("unknown route %q in the report", name)
	}
	return r
}

func TestErrorsAreClassified(t *testing.T) {
	tests := []struct {
		name           string
		setup          func(*fake)
		mix            Mix
		route          string
		status         int
		wantExpected   bool
		wantUnexpected bool
	}{
		{"joining twice is expected", func(f *fake) { f.alwaysTaken = true }, Mix{JoinRide: 1}, "join-ride", 400, true, false},
		{"a 503 on create is unexpected", func(f *fake) { f.failCreates = 3 }, Mix{CreateRide: 1}, "create-ride", 503, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			tt.setup(f)
			s := httptest.NewServer(f.handler(""))
			defer s.Close()
			// One client: its seed ride is the 1st creation, so every 3rd
			// creation failing never hits seeding.
			g, err := New(Options{URL: s.URL, Clients: 1, Requests: 60, Mix: tt.mix, Seed: 3})
			if err != nil {
				t.Fatal(err)
			}
			rep, err := g.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			r := rep.Routes[0]
			if r.Route != tt.route {
				t.Fatalf("route %s, want %s", r.Route, tt.route)
			}
			if got := r.ExpectedErrors > 0; got != tt.wantExpected {
				t.Errorf("expected errors = %d, want some: %v", r.ExpectedErrors, tt.wantExpected)
			}
			if got := r.UnexpectedErrors > 0; got != tt.wantUnexpected {
				t.Errorf("unexpected errors = %d, want some: %v", r.UnexpectedErrors, tt.wantUnexpected)
			}
			if r.Errors != r.ExpectedErrors+r.UnexpectedErrors || r.Errors != r.Statuses[strconv.Itoa(tt.status)] {
				t.Errorf("errors %d (expected %d, unexpected %d), status %d seen %d times",
					r.Errors, r.ExpectedErrors, r.UnexpectedErrors, tt.status, r.Statuses[strconv.Itoa(tt.status)])
			}
			if len(r.ErrorDetails) != 1 || r.ErrorDetails[0].Status != tt.status || r.ErrorDetails[0].Example == "" {
				t.Errorf("error details = %+v, want one class with status %d and an example", r.ErrorDetails, tt.status)
			}
			if rep.Total.Errors != r.Errors || len(rep.Total.ErrorDetails) != 1 || rep.Total.ErrorDetails[0].Route != tt.route {
				t.Errorf("total errors %d, details %+v", rep.Total.Errors, rep.Total.ErrorDetails)
			}
		})
	}
}

func TestRunFailures(t *testing.T) {
	t.Run("seeding refused stops the run", func(t *testing.T) {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fail(w, 503, "no dbaas")
		}))
		defer s.Close()
		g, _ := New(Options{URL: s.URL, Clients: 2, Duration: time.Second})
		if _, err := g.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "503 no dbaas") {
			t.Fatalf("Run error = %v, want the seeding 503", err)
		}
	})
	t.Run("no answer counts as status 0", func(t *testing.T) {
		f := newFake(t)
		h := f.handler("")
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && r.URL.Path == "/api/v1/rides" {
				panic(http.ErrAbortHandler) // drops the connection
			}
			h.ServeHTTP(w, r)
		}))
		s.Config.ErrorLog = nil
		defer s.Close()
		g, _ := New(Options{URL: s.URL, Clients: 2, Requests: 20, Mix: Mix{ListUpcoming: 1}})
		rep, err := g.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if rep.Total.UnexpectedErrors != 20 || rep.Total.Statuses["0"] != 20 {
			t.Errorf("unexpected errors %d, status 0 seen %d, want 20 each", rep.Total.UnexpectedErrors, rep.Total.Statuses["0"])
		}
	})
	t.Run("duration bounds the run", func(t *testing.T) {
		f := newFake(t)
		s := httptest.NewServer(f.handler(""))
		defer s.Close()
		g, _ := New(Options{URL: s.URL, Clients: 2, Duration: 200 * time.Millisecond, Mix: Mix{ListUpcoming: 1}})
		t0 := time.Now()
		rep, err := g.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(t0); d > 5*time.Second {
			t.Errorf("run took %s for a 200ms duration", d)
		}
		if rep.ElapsedSeconds < 0.2 || rep.Total.Requests == 0 {
			t.Errorf("elapsed %.3fs with %d requests", rep.ElapsedSeconds, rep.Total.Requests)
		}
	})
	t.Run("cancelled context stops early", func(t *testing.T) {
		f := newFake(t)
		s := httptest.NewServer(f.handler(""))
		defer s.Close()
		g, _ := New(Options{URL: s.URL, Clients: 2, Duration: time.Minute})
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		t0 := time.Now()
		rep, err := g.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(t0); d > 10*time.Second {
			t.Errorf("run took %s after cancel", d)
		}
		if rep.Total.Statuses["0"] != 0 {
			t.Errorf("calls cut by the cancel were counted: %v", rep.Total.Statuses)
		}
	})
}

func TestReportOutput(t *testing.T) {
	f := newFake(t)
	s := httptest.NewServer(f.handler(""))
	defer s.Close()
	f.alwaysTaken = true // some expected errors in the output
	g, err := New(Options{URL: s.URL, Clients: 2, Requests: 200, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := g.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("JSON round trip", func(t *testing.T) {
		var buf bytes.Buffer
		if err := rep.WriteJSON(&buf); err != nil {
			t.Fatal(err)
		}
		var back Report
		if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
			t.Fatal(err)
		}
		if back.Total.Requests != rep.Total.Requests || len(back.Routes) != len(rep.Routes) ||
			back.Total.Latency != rep.Total.Latency || back.Mix["list-upcoming"] != DefaultMix()[ListUpcoming] {
			t.Errorf("JSON round trip lost data:\n%s", buf.String())
		}
		var raw map[string]any
		_ = json.Unmarshal(buf.Bytes(), &raw)
		total := raw["total"].(map[string]any)
		for _, k := range []string{"requests", "throughput_rps", "latency_ms", "errors", "expected_errors", "unexpected_errors", "statuses"} {
			if _, ok := total[k]; !ok {
				t.Errorf("JSON total has no %q", k)
			}
		}
		for _, k := range []string{"p50", "p90", "p99", "max"} {
			if _, ok := total["latency_ms"].(map[string]any)[k]; !ok {
				t.Errorf("JSON latency has no %q", k)
			}
		}
	})
	t.Run("table", func(t *testing.T) {
		var buf bytes.Buffer
		if err := rep.WriteTable(&buf); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		for _, want := range []string{"p50 ms", "p99 ms", "req/s", "add-user", "create-ride", "list-upcoming", "join-ride", "ride-details", "total", "expected", "already joined"} {
			if !strings.Contains(out, want) {
				t.Errorf("table lacks %q:\n%s", want, out)
			}
		}
	})
}
