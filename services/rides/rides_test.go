package rides

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/dbaasclient"
	"github.com/rideshare-dbaas/rideshare/internal/httpx"
	"github.com/rideshare-dbaas/rideshare/services/internal/dbaasfake"
	"github.com/rideshare-dbaas/rideshare/services/users"
)

// now is the fixed clock of the tests: rides after it are upcoming.
var now = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

const publicURL = "http://rides.test:8082"

// stack is a rides service, the real users service behind a stand-in for
// the load balancer, and one fake DBaaS under both.
type stack struct {
	fake  *dbaasfake.Server
	rides *Service
	base  string // rides service

	mu       sync.Mutex
	balancer []string // "Origin path" of every request the balancer saw
	ids      []string // the X-Request-ID of each
}

func (s *stack) balancerRequests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.balancer...)
}

// mustStack builds a stack; edit adjusts the rides options first.
func mustStack(t *testing.T, edit func(*Options)) *stack {
	t.Helper()
	st := &stack{fake: dbaasfake.New(t)}
	usvc, err := users.New(users.Options{Config: httpx.Config{DBaaSURL: st.fake.URL}})
	if err != nil {
		t.Fatal(err)
	}
	uh := usvc.Handler()
	lb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st.mu.Lock()
		st.balancer = append(st.balancer, r.Header.Get("Origin")+" "+r.URL.Path)
		st.ids = append(st.ids, r.Header.Get("X-Request-ID"))
		st.mu.Unlock()
		uh.ServeHTTP(w, r)
	}))
	t.Cleanup(lb.Close)
	opts := Options{
		Config:    httpx.Config{DBaaSURL: st.fake.URL},
		UsersURL:  lb.URL,
		PublicURL: publicURL,
		DB:        dbaasclient.New(st.fake.URL, dbaasclient.WithTimeout(2*time.Second)),
		Now:       func() time.Time { return now },
	}
	if edit != nil {
		edit(&opts)
	}
	st.rides, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(st.rides.Handler())
	t.Cleanup(srv.Close)
	st.base = srv.URL
	return st
}

type response struct {
	status int
	header http.Header
	body   string
}

func call(t *testing.T, base, method, path, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, string(b)}
}

func rideBody(by, ts string, src, dst any) string {
	m := map[string]any{"created_by": by, "timestamp": ts, "source": src, "destination": dst}
	b, _ := json.Marshal(m)
	return string(b)
}

const (
	future  = "26-01-2027:00-53-09"
	future2 = "27-01-2027:00-00-10"
	past    = "30-12-2026:00-00-10"
)

type routeCase struct {
	name       string
	method     string
	path       string
	body       string
	wantStatus int
	wantBody   string // exact JSON (compacted), "-" for empty, "" to skip
	wantErrSub string
}

func runCases(t *testing.T, base string, tests []routeCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := call(t, base, tt.method, tt.path, tt.body)
			if got.status != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", got.status, tt.wantStatus, got.body)
			}
			switch tt.wantBody {
			case "":
			case "-":
				if got.body != "" {
					t.Fatalf("body %q, want empty", got.body)
				}
			default:
				var buf bytes.Buffer
				if err := json.Compact(&buf, []byte(got.body)); err != nil || buf.String() != tt.wantBody {
					t.Fatalf("body %s, want %s", got.body, tt.wantBody)
				}
			}
			if tt.wantStatus >= 400 {
				var eb struct{ Error string }
				if err := json.Unmarshal([]byte(got.body), &eb); err != nil || !strings.Contains(eb.Error, tt.wantErrSub) {
					t.Fatalf("error body %s, want it to contain %q", got.body, tt.wantErrSub)
				}
			}
			if tt.wantStatus == 405 && got.header.Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	st := mustStack(t, nil)
	for _, u := range []string{"rita", "sam", "tom"} {
		st.fake.AddUser(u)
	}
	runCases(t, st.base, []routeCase{
		// R1 (ids 1, 2, 3 in order)
		{"R1 create", "POST", "/api/v1/rides", rideBody("rita", future, 22, 23), 201, `{"rideId":1}`, ""},
		{"R1 numeric-string areas", "POST", "/api/v1/rides", rideBody("sam", future2, "22", "23"), 201, `{"rideId":2}`, ""},
		{"R1 past ride", "POST", "/api/v1/rides", rideBody("tom", past, 22, 23), 201, `{"rideId":3}`, ""},
		{"R1 unknown user", "POST", "/api/v1/rides", rideBody("ghost", future, 1, 2), 400, "", "unknown user"},
		{"R1 area 0", "POST", "/api/v1/rides", rideBody("rita", future, 0, 2), 400, "", "source"},
		{"R1 area 199", "POST", "/api/v1/rides", rideBody("rita", future, 1, 199), 400, "", "destination"},
		{"R1 area not a number", "POST", "/api/v1/rides", rideBody("rita", future, "abc", 2), 400, "", "source"},
		{"R1 area fractional", "POST", "/api/v1/rides", rideBody("rita", future, 1.5, 2), 400, "", "source"},
		{"R1 area boolean", "POST", "/api/v1/rides", rideBody("rita", future, true, 2), 400, "", "source"},
		{"R1 source equals destination", "POST", "/api/v1/rides", rideBody("rita", future, 5, 5), 400, "", "same area"},
		{"R1 source equals destination mixed", "POST", "/api/v1/rides", rideBody("rita", future, 5, "5"), 400, "", "same area"},
		{"R1 ISO timestamp", "POST", "/api/v1/rides", rideBody("rita", "2027-01-26T09:53:00", 1, 2), 400, "", "DD-MM-YYYY"},
		{"R1 month 13", "POST", "/api/v1/rides", rideBody("rita", "26-13-2027:00-53-09", 1, 2), 400, "", "month"},
		{"R1 hour 24", "POST", "/api/v1/rides", rideBody("rita", "26-01-2027:00-53-24", 1, 2), 400, "", "hour"},
		{"R1 31 February", "POST", "/api/v1/rides", rideBody("rita", "31-02-2027:00-00-10", 1, 2), 400, "", "not a date"},
		{"R1 timestamp not a string", "POST", "/api/v1/rides", `{"created_by":"rita","timestamp":123,"source":1,"destination":2}`, 400, "", `"timestamp" must be a string`},
		{"R1 missing timestamp", "POST", "/api/v1/rides", `{"created_by":"rita","source":1,"destination":2}`, 400, "", `"timestamp" is missing`},
		{"R1 missing created_by", "POST", "/api/v1/rides", `{"timestamp":"` + future + `","source":1,"destination":2}`, 400, "", `"created_by" is missing`},
		{"R1 missing source", "POST", "/api/v1/rides", `{"created_by":"rita","timestamp":"` + future + `","destination":2}`, 400, "", `"source" is missing`},
		{"R1 null destination", "POST", "/api/v1/rides", `{"created_by":"rita","timestamp":"` + future + `","source":1,"destination":null}`, 400, "", `"destination" is missing`},
		{"R1 empty created_by", "POST", "/api/v1/rides", rideBody("", future, 1, 2), 400, "", "empty"},
		{"R1 invalid JSON", "POST", "/api/v1/rides", `{"created_by":`, 400, "", "JSON"},
		{"R1 unknown field", "POST", "/api/v1/rides", `{"created_by":"rita","timestamp":"` + future + `","source":1,"destination":2,"seats":3}`, 400, "", `unknown field "seats"`},
		{"R1 trailing data", "POST", "/api/v1/rides", rideBody("rita", future, 1, 2) + "[]", 400, "", "after the JSON object"},
		{"PUT on the collection is 405", "PUT", "/api/v1/rides", `{}`, 405, "", "not allowed"},
		// R2
		{"R2 only upcoming, by time", "GET", "/api/v1/rides?source=22&destination=23", "", 200,
			`[{"rideId":1,"username":"rita","timestamp":"` + future + `"},{"rideId":2,"username":"sam","timestamp":"` + future2 + `"}]`, ""},
		{"R2 no match is 204", "GET", "/api/v1/rides?source=100&destination=101", "", 204, "-", ""},
		{"R2 same areas is 204", "GET", "/api/v1/rides?source=22&destination=22", "", 204, "-", ""},
		{"R2 missing destination", "GET", "/api/v1/rides?source=22", "", 400, "", `"destination" is missing`},
		{"R2 missing both", "GET", "/api/v1/rides", "", 400, "", "missing"},
		{"R2 area 500", "GET", "/api/v1/rides?source=22&destination=500", "", 400, "", "destination"},
		{"R2 area text", "GET", "/api/v1/rides?source=abc&destination=23", "", 400, "", "source"},
		{"R2 empty value", "GET", "/api/v1/rides?source=&destination=23", "", 400, "", "source"},
		{"R2 malformed query", "GET", "/api/v1/rides?source=%zz&destination=23", "", 400, "", "query"},
		// R4
		{"R4 join", "POST", "/api/v1/rides/1", `{"username":"sam"}`, 200, `{}`, ""},
		{"R4 second join", "POST", "/api/v1/rides/1", `{"username":"tom"}`, 200, `{}`, ""},
		{"R4 joining twice", "POST", "/api/v1/rides/1", `{"username":"sam"}`, 400, "", "already joined"},
		{"R4 creator joins own ride", "POST", "/api/v1/rides/1", `{"username":"rita"}`, 400, "", "creator"},
		{"R4 unknown user", "POST", "/api/v1/rides/1", `{"username":"ghost"}`, 400, "", "unknown user"},
		{"R4 missing ride", "POST", "/api/v1/rides/999999", `{"username":"sam"}`, 204, "-", ""},
		{"R4 missing username", "POST", "/api/v1/rides/1", `{}`, 400, "", `"username" is missing`},
		{"R4 username not a string", "POST", "/api/v1/rides/1", `{"username":7}`, 400, "", `"username" must be a string`},
		{"R4 bad rideId", "POST", "/api/v1/rides/x", `{"username":"sam"}`, 400, "", "rideId"},
		// R3
		{"R3 details", "GET", "/api/v1/rides/1", "", 200,
			`{"rideId":1,"created_by":"rita","users":["sam","tom"],"timestamp":"` + future + `","source":22,"destination":23}`, ""},
		{"R3 details without riders", "GET", "/api/v1/rides/2", "", 200,
			`{"rideId":2,"created_by":"sam","users":[],"timestamp":"` + future2 + `","source":22,"destination":23}`, ""},
		{"R3 missing ride is 204", "GET", "/api/v1/rides/999999", "", 204, "-", ""},
		{"R3 non-numeric id", "GET", "/api/v1/rides/abc", "", 400, "", "positive integer"},
		{"R3 zero id", "GET", "/api/v1/rides/0", "", 400, "", "positive integer"},
		{"R3 negative id", "GET", "/api/v1/rides/-1", "", 400, "", "positive integer"},
		{"R3 huge id", "GET", "/api/v1/rides/99999999999999999999", "", 400, "", "2^63"},
		{"PATCH on a ride is 405", "PATCH", "/api/v1/rides/1", "", 405, "", "not allowed"},
		// R6 wins over {rideId}
		{"R6 count", "GET", "/api/v1/rides/count", "", 200, `[3]`, ""},
		{"R6 DELETE is 405, not a ride", "DELETE", "/api/v1/rides/count", "", 405, "", "not allowed"},
		{"R6 POST is 405, not a join", "POST", "/api/v1/rides/count", `{"username":"sam"}`, 405, "", "not allowed"},
		// R5
		{"R5 delete", "DELETE", "/api/v1/rides/1", "", 200, `{}`, ""},
		{"R5 delete again", "DELETE", "/api/v1/rides/1", "", 400, "", "no such ride"},
		{"R5 bad id", "DELETE", "/api/v1/rides/1x", "", 400, "", "positive integer"},
		{"R6 count after delete", "GET", "/api/v1/rides/count", "", 200, `[2]`, ""},
		// R7, R8, others
		{"unknown route", "GET", "/api/v1/cars", "", 404, "", "no route"},
		{"unknown route under rides", "GET", "/api/v1/rides/1/riders", "", 404, "", "no route"},
		{"healthz", "GET", "/healthz", "", 200, `{}`, ""},
		{"R8 count", "GET", "/api/v1/_count", "", 200, "", ""},
		{"R8 POST _count is 405", "POST", "/api/v1/_count", `{}`, 405, "", "not allowed"},
		{"R8 reset", "DELETE", "/api/v1/_count", "", 200, `{}`, ""},
		{"R8 zero", "GET", "/api/v1/_count", "", 200, `[0]`, ""},
		{"R7 clear", "POST", "/api/v1/db/clear", "", 200, `{}`, ""},
		{"R6 count after clear", "GET", "/api/v1/rides/count", "", 200, `[0]`, ""},
	})
}

func TestAllowHeaders(t *testing.T) {
	st := mustStack(t, nil)
	tests := []struct{ method, path, allow string }{
		{"PUT", "/api/v1/rides", "GET, POST"},
		{"DELETE", "/api/v1/rides", "GET, POST"},
		{"PUT", "/api/v1/rides/7", "DELETE, GET, POST"},
		{"DELETE", "/api/v1/rides/count", "GET"},
		{"PUT", "/api/v1/_count", "DELETE, GET"},
		{"GET", "/api/v1/db/clear", "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			got := call(t, st.base, tt.method, tt.path, "")
			if got.status != 405 || got.header.Get("Allow") != tt.allow {
				t.Fatalf("got %d Allow %q, want 405 %q", got.status, got.header.Get("Allow"), tt.allow)
			}
		})
	}
}

// TestUpcoming_OneReadPerCall: every R2, valid or not, is exactly one
// DBaaS read (the autoscaler counts them).
func TestUpcoming_OneReadPerCall(t *testing.T) {
	st := mustStack(t, nil)
	st.fake.AddUser("rita")
	call(t, st.base, "POST", "/api/v1/rides", rideBody("rita", future, 1, 2))
	for _, q := range []string{
		"source=1&destination=2", "source=3&destination=4", "source=1", "", "source=0&destination=2",
		"source=abc&destination=2", "source=%zz", "source=1&destination=1",
	} {
		t.Run(q, func(t *testing.T) {
			before := st.fake.Reads("")
			call(t, st.base, "GET", "/api/v1/rides?"+q, "")
			if got := st.fake.Reads("") - before; got != 1 {
				t.Fatalf("%d reads, want exactly 1", got)
			}
		})
	}
}

func TestUpcoming_DBaaSDownIs503(t *testing.T) {
	st := mustStack(t, nil)
	st.fake.Intercept = func(path, op string) (int, string, bool) {
		return 503, `{"error":"no slave answered in time"}`, true
	}
	got := call(t, st.base, "GET", "/api/v1/rides?source=1&destination=2", "")
	if got.status != 503 {
		t.Fatalf("got %d %s", got.status, got.body)
	}
	// An invalid R2 stays a 400 even when its counting read fails.
	if got := call(t, st.base, "GET", "/api/v1/rides?source=1", ""); got.status != 400 {
		t.Fatalf("got %d %s", got.status, got.body)
	}
}

func TestUsersCheckedThroughBalancerWithOrigin(t *testing.T) {
	st := mustStack(t, nil)
	st.fake.AddUser("rita")
	st.fake.AddUser("sam")
	call(t, st.base, "POST", "/api/v1/rides", rideBody("rita", future, 1, 2))
	call(t, st.base, "POST", "/api/v1/rides/1", `{"username":"sam"}`)
	got := st.balancerRequests()
	want := []string{publicURL + " /api/v1/users", publicURL + " /api/v1/users"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("balancer saw %q, want %q", got, want)
	}
}

// The users check carries the request's id, so that the users service
// (and Traefik between them) logs the same id.
func TestUsersCheckForwardsRequestID(t *testing.T) {
	st := mustStack(t, nil)
	st.fake.AddUser("rita")
	req, _ := http.NewRequest("POST", st.base+"/api/v1/rides", strings.NewReader(rideBody("rita", future, 1, 2)))
	req.Header.Set("X-Request-ID", "t-rides-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	st.mu.Lock()
	defer st.mu.Unlock()
	if resp.StatusCode != 201 || len(st.ids) != 1 || st.ids[0] != "t-rides-1" {
		t.Fatalf("status %d; the balancer saw ids %q, want [t-rides-1]", resp.StatusCode, st.ids)
	}
}

func TestCascadeAndIDsNeverReused(t *testing.T) {
	st := mustStack(t, nil)
	st.fake.AddUser("rita")
	st.fake.AddUser("tom")
	call(t, st.base, "POST", "/api/v1/rides", rideBody("rita", future, 1, 2)) // 1
	call(t, st.base, "POST", "/api/v1/rides", rideBody("tom", future, 1, 2))  // 2
	call(t, st.base, "POST", "/api/v1/rides/1", `{"username":"tom"}`)
	// Delete tom through the users service (the balancer's handler).
	usvc, _ := users.New(users.Options{Config: httpx.Config{DBaaSURL: st.fake.URL}})
	w := httptest.NewRecorder()
	usvc.Handler().ServeHTTP(w, httptest.NewRequest("DELETE", "/api/v1/users/tom", nil))
	if w.Code != 200 {
		t.Fatalf("delete tom: %d", w.Code)
	}
	runCases(t, st.base, []routeCase{
		{"rider removed", "GET", "/api/v1/rides/1", "", 200,
			`{"rideId":1,"created_by":"rita","users":[],"timestamp":"` + future + `","source":1,"destination":2}`, ""},
		{"tom's ride gone", "GET", "/api/v1/rides/2", "", 204, "-", ""},
		{"count", "GET", "/api/v1/rides/count", "", 200, `[1]`, ""},
		{"delete", "DELETE", "/api/v1/rides/1", "", 200, `{}`, ""},
		{"clear", "POST", "/api/v1/db/clear", "", 200, `{}`, ""},
	})
	st.fake.AddUser("rita")
	got := call(t, st.base, "POST", "/api/v1/rides", rideBody("rita", future, 1, 2))
	if got.status != 201 || strings.TrimSpace(got.body) != `{"rideId":3}` {
		t.Fatalf("after clear: %d %s", got.status, got.body)
	}
}

// fakeUsers is a UserChecker with a fixed answer.
type fakeUsers struct {
	exists bool
	err    error
}

func (f fakeUsers) Exists(context.Context, string) (bool, error) { return f.exists, f.err }

func TestUserVanishedAfterCheck(t *testing.T) {
	// The users service says "ghost" exists; the DBaaS no longer has it.
	st := mustStack(t, func(o *Options) { o.Users = fakeUsers{exists: true} })
	st.fake.AddUser("rita")
	call(t, st.base, "POST", "/api/v1/rides", rideBody("rita", future, 1, 2))
	runCases(t, st.base, []routeCase{
		{"R1 create", "POST", "/api/v1/rides", rideBody("ghost", future, 1, 2), 400, "", "unknown user"},
		{"R4 join", "POST", "/api/v1/rides/1", `{"username":"ghost"}`, 400, "", "unknown user"},
	})
}

func TestUsersServiceDownIs503(t *testing.T) {
	st := mustStack(t, func(o *Options) { o.Users = fakeUsers{err: errors.New("connection refused")} })
	runCases(t, st.base, []routeCase{
		{"R1", "POST", "/api/v1/rides", rideBody("rita", future, 1, 2), 503, "", "users service"},
		{"R4", "POST", "/api/v1/rides/1", `{"username":"rita"}`, 503, "", "users service"},
	})
	if n := st.fake.Writes("rides.create") + st.fake.Writes("rides.join"); n != 0 {
		t.Fatalf("%d writes reached the DBaaS", n)
	}
}

func TestBalancerErrorsAreUnavailable(t *testing.T) {
	for _, status := range []int{http.StatusBadGateway, http.StatusNotFound} {
		lb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
		}))
		b := &balancerUsers{client: http.DefaultClient, url: lb.URL + "/api/v1/users", origin: publicURL}
		if _, err := b.Exists(context.Background(), "rita"); err == nil {
			t.Errorf("HTTP %d: no error", status)
		}
		lb.Close()
	}
}

func TestTimeZone(t *testing.T) {
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	st := mustStack(t, func(o *Options) { o.Location = kolkata })
	st.fake.AddUser("rita")
	if got := call(t, st.base, "POST", "/api/v1/rides", rideBody("rita", future, 1, 2)); got.status != 201 {
		t.Fatalf("create: %d %s", got.status, got.body)
	}
	_, _, ts, _ := st.fake.Ride(1)
	if want := time.Date(2027, 1, 26, 4, 23, 0, 0, time.UTC).Unix(); ts != want {
		t.Fatalf("stored %d, want %d", ts, want)
	}
	got := call(t, st.base, "GET", "/api/v1/rides/1", "")
	if !strings.Contains(got.body, `"timestamp":"`+future+`"`) {
		t.Fatalf("details %s", got.body)
	}
}

func TestBodyOverCapIs413(t *testing.T) {
	st := mustStack(t, nil)
	huge := rideBody(strings.Repeat("n", 2<<20), future, 1, 2)
	for _, path := range []string{"/api/v1/rides", "/api/v1/rides/1"} {
		got := call(t, st.base, "POST", path, huge)
		if got.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s: %d %s", path, got.status, got.body)
		}
	}
	if len(st.balancerRequests()) != 0 {
		t.Fatal("an oversized request went on to the users check")
	}
}

func TestCounter(t *testing.T) {
	st := mustStack(t, nil)
	base := st.base
	call(t, base, "DELETE", "/api/v1/_count", "")
	call(t, base, "GET", "/api/v1/rides/count", "")
	call(t, base, "GET", "/api/v1/rides?source=1&destination=2", "")
	call(t, base, "GET", "/api/v1/rides/424242", "")
	call(t, base, "PUT", "/api/v1/rides", "")     // 405 counts
	call(t, base, "POST", "/api/v1/db/clear", "") // not counted
	call(t, base, "POST", "/api/v1/_count", "")   // not counted
	call(t, base, "GET", "/healthz", "")          // not counted
	if got := call(t, base, "GET", "/api/v1/_count", ""); got.body != "[4]\n" {
		t.Fatalf("count %q, want [4]", got.body)
	}

	call(t, base, "DELETE", "/api/v1/_count", "")
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			switch i % 5 {
			case 0:
				call(t, base, "GET", "/api/v1/rides?source=1&destination=2", "")
			case 1:
				call(t, base, "GET", "/api/v1/rides?source=1", "")
			case 2:
				call(t, base, "GET", "/api/v1/rides/count", "")
			case 3:
				call(t, base, "POST", "/api/v1/rides", `{bad`)
			case 4:
				call(t, base, "DELETE", "/api/v1/rides/count", "")
			}
			call(t, base, "GET", "/api/v1/_count", "")
		})
	}
	wg.Wait()
	if st.rides.Count() != n {
		t.Fatalf("count %d, want %d", st.rides.Count(), n)
	}
}

func mustService(t testing.TB) *Service {
	t.Helper()
	s, err := New(Options{Config: httpx.Config{DBaaSURL: "http://127.0.0.1:1"}, Users: fakeUsers{}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func FuzzDecodeRide(f *testing.F) {
	for _, seed := range []string{
		rideBody("rita", future, 22, 23), rideBody("rita", future, "22", "23"),
		rideBody("rita", future, 5, 5), rideBody("rita", "31-02-2027:00-00-10", 1, 2),
		rideBody("", future, 1, 2), rideBody("rita", future, 1.5, "abc"),
		`{"created_by":"rita","source":1,"destination":2}`, `{`, ``, `null`, `[]`,
		`{"created_by":"rita","timestamp":"` + future + `","source":"\u0031","destination":198}`,
	} {
		f.Add([]byte(seed))
	}
	s := mustService(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rd, e := s.decodeNewRide(body)
		if e != nil {
			if e.Status != http.StatusBadRequest || e.Msg == "" {
				t.Fatalf("bad error %v", e)
			}
			return
		}
		if _, ok := s.areas[rd.Source]; !ok || rd.Source == rd.Destination {
			t.Fatalf("accepted areas %d -> %d", rd.Source, rd.Destination)
		}
		if _, ok := s.areas[rd.Destination]; !ok {
			t.Fatalf("accepted destination %d", rd.Destination)
		}
		if httpx.ValidateUsername(rd.CreatedBy) != nil {
			t.Fatalf("accepted creator %q", rd.CreatedBy)
		}
	})
}

func FuzzDecodeJoin(f *testing.F) {
	for _, seed := range []string{`{"username":"sam"}`, `{"username":""}`, `{"username":7}`, `{}`, `{"username":"a"} 1`, "{\"username\":\"\xff\"}"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		name, e := decodeJoin(body)
		if e == nil && httpx.ValidateUsername(name) != nil {
			t.Fatalf("accepted %q", name)
		}
	})
}

func FuzzParseRideID(f *testing.F) {
	for _, seed := range []string{"1", "0", "-1", "abc", "", "007", "9223372036854775807", "9223372036854775808", "1e3"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, e := ParseRideID(s)
		if e == nil && id < 1 {
			t.Fatalf("accepted %q as %d", s, id)
		}
	})
}

// Every route that reads or writes answers 503 when the DBaaS cannot.
func TestDBaaSUnavailableIs503(t *testing.T) {
	st := mustStack(t, nil)
	if got := call(t, st.base, "POST", "/api/v1/rides", rideBody("rita", future, 1, 2)); got.status != 400 {
		t.Fatalf("setup: unknown user should be 400, got %d %s", got.status, got.body)
	}
	st.fake.Intercept = func(path, op string) (int, string, bool) {
		return 502, `{"error":"handler crashed","handler":"rideshare"}`, true
	}
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/api/v1/rides/1", ""},
		{"DELETE", "/api/v1/rides/1", ""},
		{"GET", "/api/v1/rides/count", ""},
		{"POST", "/api/v1/db/clear", ""},
	} {
		got := call(t, st.base, c.method, c.path, c.body)
		if got.status != http.StatusServiceUnavailable || !strings.Contains(got.body, "error") {
			t.Errorf("%s %s: %d %s", c.method, c.path, got.status, got.body)
		}
	}
}

// /metrics counts requests by route pattern (never the raw path) and status.
func TestMetrics(t *testing.T) {
	st := mustStack(t, nil)
	call(t, st.base, "GET", "/api/v1/rides/12345", "")
	call(t, st.base, "GET", "/api/v1/rides/abc", "")
	got := call(t, st.base, "GET", "/metrics", "")
	if got.status != 200 {
		t.Fatalf("/metrics: %d", got.status)
	}
	for _, want := range []string{
		`rideshare_http_requests_total{code="204",component="rides",method="GET",route="/api/v1/rides/{rideId}"} 1`,
		`rideshare_http_requests_total{code="400",component="rides",method="GET",route="/api/v1/rides/{rideId}"} 1`,
		`rideshare_http_request_duration_seconds_count{component="rides",method="GET",route="/api/v1/rides/{rideId}"} 2`,
	} {
		if !strings.Contains(got.body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(got.body, "12345") {
		t.Error("/metrics names a raw path")
	}
}
