package rides

import (
	"encoding/json"
	"strings"
	"testing"
)

// statsStack is a rides stack with users and rides to count:
//
//	ride 1: rita 22->23, joined by sam, tom
//	ride 2: sam  22->23
//	ride 3: tom  23->1 (past)
//	ride 4: rita 1->198, joined by sam
func statsStack(t *testing.T) *stack {
	t.Helper()
	st := mustStack(t, nil)
	for _, u := range []string{"rita", "sam", "tom", "uma"} {
		st.fake.AddUser(u)
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/v1/rides", rideBody("rita", future, 22, 23)},
		{"POST", "/api/v1/rides", rideBody("sam", future2, 22, 23)},
		{"POST", "/api/v1/rides", rideBody("tom", past, 23, 1)},
		{"POST", "/api/v1/rides", rideBody("rita", future, 1, 198)},
		{"POST", "/api/v1/rides/1", `{"username":"sam"}`},
		{"POST", "/api/v1/rides/1", `{"username":"tom"}`},
		{"POST", "/api/v1/rides/4", `{"username":"sam"}`},
	} {
		if got := call(t, st.base, c.method, c.path, c.body); got.status >= 300 {
			t.Fatalf("%s %s: %d %s", c.method, c.path, got.status, got.body)
		}
	}
	return st
}

func TestStats(t *testing.T) {
	st := statsStack(t)
	areas := `[` +
		`{"area":23,"name":"` + st.rides.areas[23] + `","rides_from":1,"rides_to":2},` +
		`{"area":1,"name":"` + st.rides.areas[1] + `","rides_from":1,"rides_to":1},` +
		`{"area":22,"name":"` + st.rides.areas[22] + `","rides_from":2,"rides_to":0},` +
		`{"area":198,"name":"` + st.rides.areas[198] + `","rides_from":0,"rides_to":1}]`
	users := `[{"username":"sam","created":1,"joined":2},{"username":"rita","created":2,"joined":0},` +
		`{"username":"tom","created":1,"joined":1}]`
	runCases(t, st.base, []routeCase{
		{"stats", "GET", "/api/v1/rides/stats", "", 200, `{"areas":` + areas + `,"top_users":` + users + `}`, ""},
		{"stats limit", "GET", "/api/v1/rides/stats?limit=1", "", 200,
			`{"areas":` + areas + `,"top_users":[{"username":"sam","created":1,"joined":2}]}`, ""},
		{"stats limit 100, other params ignored", "GET", "/api/v1/rides/stats?limit=100&x=1", "", 200,
			`{"areas":` + areas + `,"top_users":` + users + `}`, ""},
		{"stats first limit wins", "GET", "/api/v1/rides/stats?limit=1&limit=500", "", 200, "", ""},
		{"stats limit 0", "GET", "/api/v1/rides/stats?limit=0", "", 400, "", "limit must be an integer from 1 to 100"},
		{"stats limit 101", "GET", "/api/v1/rides/stats?limit=101", "", 400, "", "limit"},
		{"stats limit empty", "GET", "/api/v1/rides/stats?limit=", "", 400, "", "limit"},
		{"stats limit sign", "GET", "/api/v1/rides/stats?limit=%2B5", "", 400, "", "limit"},
		{"stats limit text", "GET", "/api/v1/rides/stats?limit=ten", "", 400, "", "limit"},
		{"stats malformed query", "GET", "/api/v1/rides/stats?limit=%zz", "", 400, "", "query"},
		// Like R6, the static route wins over {rideId} for every method.
		{"stats DELETE is 405, not a ride", "DELETE", "/api/v1/rides/stats", "", 405, "", "allowed: GET"},
		{"stats POST is 405, not a join", "POST", "/api/v1/rides/stats", `{"username":"sam"}`, 405, "", "allowed: GET"},
		{"stats trailing slash is 404", "GET", "/api/v1/rides/stats/", "", 404, "", "no route"},
	})
	// Nothing was deleted or joined by the 405s.
	if got := call(t, st.base, "GET", "/api/v1/rides/count", ""); strings.TrimSpace(got.body) != "[4]" {
		t.Fatalf("count %s", got.body)
	}
}

func TestStats_Empty(t *testing.T) {
	st := mustStack(t, nil)
	runCases(t, st.base, []routeCase{
		{"stats of nothing", "GET", "/api/v1/rides/stats", "", 200, `{"areas":[],"top_users":[]}`, ""},
	})
}

// Two DBaaS reads per call, the limit passed as the plugin's parameter, and
// none at all for a bad query.
func TestStats_Reads(t *testing.T) {
	st := statsStack(t)
	before := [2]int{st.fake.Reads(opRidesPerArea), st.fake.Reads(opTopUsers)}
	call(t, st.base, "GET", "/api/v1/rides/stats?limit=2", "")
	call(t, st.base, "GET", "/api/v1/rides/stats?limit=x", "")
	after := [2]int{st.fake.Reads(opRidesPerArea), st.fake.Reads(opTopUsers)}
	if after[0]-before[0] != 1 || after[1]-before[1] != 1 {
		t.Fatalf("reads %v -> %v, want one of each", before, after)
	}
	got := call(t, st.base, "GET", "/api/v1/rides/stats?limit=2", "")
	var s Stats
	if err := json.Unmarshal([]byte(got.body), &s); err != nil || len(s.TopUsers) != 2 {
		t.Fatalf("limit=2: %d %s", got.status, got.body)
	}
}

// Without the stats plugin the DBaaS answers 400 "unknown read operation":
// that is 501 naming the plugin, not a 400 blaming the client nor a 503.
func TestStats_PluginNotInstalled(t *testing.T) {
	st := statsStack(t)
	st.fake.SetStatsInstalled(false)
	got := call(t, st.base, "GET", "/api/v1/rides/stats", "")
	if got.status != 501 {
		t.Fatalf("got %d %s, want 501", got.status, got.body)
	}
	var body map[string]string
	if err := json.Unmarshal([]byte(got.body), &body); err != nil || len(body) != 2 || body["request_id"] == "" {
		t.Fatalf("body %s: want exactly {\"error\": ..., \"request_id\": ...}", got.body)
	}
	if msg := body["error"]; !strings.Contains(msg, "stats plugin is not installed") || !strings.Contains(msg, "stats.") {
		t.Fatalf("error %q does not say the stats plugin is missing", msg)
	}
	// The rest of the service is unaffected, and installing it is enough.
	if got := call(t, st.base, "GET", "/api/v1/rides/count", ""); got.status != 200 {
		t.Fatalf("count: %d", got.status)
	}
	st.fake.SetStatsInstalled(true)
	if got := call(t, st.base, "GET", "/api/v1/rides/stats", ""); got.status != 200 {
		t.Fatalf("after install: %d %s", got.status, got.body)
	}
}

func TestStats_Failures(t *testing.T) {
	tests := []struct {
		name       string
		failOp     string
		status     int
		body       string
		wantStatus int
		wantErr    string
	}{
		{"DBaaS 503", opTopUsers, 503, `{"error":"no slave answered in time"}`, 503, "database unavailable"},
		{"plugin crashed 502", opRidesPerArea, 502, `{"error":"plugin crashed","handler":"stats"}`, 503, "database unavailable"},
		{"garbage result", opTopUsers, 200, `{"seq":1,"result":{"users":"nope"}}`, 503, "database unavailable"},
		{"unknown op for one of the two", opTopUsers, 400, `{"error":"unknown read operation \"stats.top_users\""}`, 501, "stats.top_users"},
		{"plugin refused", opTopUsers, 400, `{"error":"parameter \"limit\" must be ...","code":"invalid"}`, 400, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := mustStack(t, nil)
			st.fake.Intercept = func(path, op string) (int, string, bool) {
				return tt.status, tt.body, op == tt.failOp
			}
			got := call(t, st.base, "GET", "/api/v1/rides/stats", "")
			if got.status != tt.wantStatus || !strings.Contains(got.body, tt.wantErr) {
				t.Fatalf("got %d %s, want %d with %q", got.status, got.body, tt.wantStatus, tt.wantErr)
			}
		})
	}
}

// _count counts the stats route like every route under /api/v1/rides,
// whatever the outcome.
func TestStats_Counted(t *testing.T) {
	st := mustStack(t, nil)
	st.fake.SetStatsInstalled(false)
	for _, c := range []struct{ method, query string }{{"GET", ""}, {"GET", "?limit=0"}, {"PUT", ""}} {
		call(t, st.base, c.method, "/api/v1/rides/stats"+c.query, "")
	}
	if got := call(t, st.base, "GET", "/api/v1/_count", ""); strings.TrimSpace(got.body) != "[3]" {
		t.Fatalf("_count %s, want [3]", got.body)
	}
}
