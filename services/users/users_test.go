package users

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
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
)

func sha(s string) string {
	h := sha1.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// mustUsers starts the service against a fresh fake DBaaS.
func mustUsers(t *testing.T) (*Service, *dbaasfake.Server, string) {
	t.Helper()
	fake := dbaasfake.New(t)
	svc, err := New(Options{Config: httpx.Config{DBaaSURL: fake.URL},
		DB: dbaasclient.New(fake.URL, dbaasclient.WithTimeout(2*time.Second))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return svc, fake, srv.URL
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

func userBody(name, pw string) string {
	b, _ := json.Marshal(map[string]string{"username": name, "password": pw})
	return string(b)
}

func TestRoutes(t *testing.T) {
	_, fake, base := mustUsers(t)
	fake.AddUser("zoe")
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantBody   string // exact JSON (compacted), "-" for empty, "" to skip
		wantErrSub string // substring of {"error"} for 4xx
	}{
		{"U1 add", "PUT", "/api/v1/users", userBody("adam", sha("a")), 201, `{}`, ""},
		{"U1 username taken", "PUT", "/api/v1/users", userBody("zoe", sha("b")), 400, "", "username taken"},
		{"U1 case-sensitive", "PUT", "/api/v1/users", userBody("Zoe", sha("c")), 201, `{}`, ""},
		{"U1 upper-case hex", "PUT", "/api/v1/users", userBody("ann", strings.ToUpper(sha("d"))), 201, `{}`, ""},
		{"U1 password 39 chars", "PUT", "/api/v1/users", userBody("bob", sha("e")[:39]), 400, "", "SHA-1"},
		{"U1 password 41 chars", "PUT", "/api/v1/users", userBody("bob", sha("e")+"a"), 400, "", "SHA-1"},
		{"U1 password non-hex", "PUT", "/api/v1/users", userBody("bob", strings.Repeat("g", 40)), 400, "", "SHA-1"},
		{"U1 password empty", "PUT", "/api/v1/users", userBody("bob", ""), 400, "", "SHA-1"},
		{"U1 password number", "PUT", "/api/v1/users", `{"username":"bob","password":12345}`, 400, "", `"password" must be a string`},
		{"U1 password null", "PUT", "/api/v1/users", `{"username":"bob","password":null}`, 400, "", `"password" is missing`},
		{"U1 username missing", "PUT", "/api/v1/users", `{"password":"` + sha("f") + `"}`, 400, "", `"username" is missing`},
		{"U1 password missing", "PUT", "/api/v1/users", `{"username":"bob"}`, 400, "", `"password" is missing`},
		{"U1 username empty", "PUT", "/api/v1/users", userBody("", sha("f")), 400, "", "empty"},
		{"U1 username not a string", "PUT", "/api/v1/users", `{"username":["a"],"password":"` + sha("f") + `"}`, 400, "", `"username" must be a string`},
		{"U1 username control chars", "PUT", "/api/v1/users", userBody("a\u0000b", sha("f")), 400, "", "control"},
		{"U1 invalid JSON", "PUT", "/api/v1/users", `{not json`, 400, "", "malformed JSON"},
		{"U1 empty body", "PUT", "/api/v1/users", ``, 400, "", "empty"},
		{"U1 array body", "PUT", "/api/v1/users", `[]`, 400, "", "JSON object"},
		{"U1 trailing data", "PUT", "/api/v1/users", userBody("bob", sha("f")) + `x`, 400, "", "after the JSON object"},
		{"U1 unknown field", "PUT", "/api/v1/users", `{"username":"bob","password":"` + sha("f") + `","admin":true}`, 400, "", `unknown field "admin"`},
		{"U1 invalid UTF-8", "PUT", "/api/v1/users", "{\"username\":\"\xff\",\"password\":\"" + sha("f") + "\"}", 400, "", "UTF-8"},
		{"U1 SQL-looking name", "PUT", "/api/v1/users", userBody("x'); DROP TABLE users;--", sha("h")), 201, `{}`, ""},
		{"U1 POST is 405", "POST", "/api/v1/users", `{}`, 405, "", "not allowed"},
		{"U3 list sorted", "GET", "/api/v1/users", "", 200, `["Zoe","adam","ann","x'); DROP TABLE users;--","zoe"]`, ""},
		{"U2 delete unknown", "DELETE", "/api/v1/users/nobody", "", 400, "", "no such user"},
		{"U2 delete", "DELETE", "/api/v1/users/adam", "", 200, `{}`, ""},
		{"U2 delete again", "DELETE", "/api/v1/users/adam", "", 400, "", "no such user"},
		{"U2 delete escaped SQL name", "DELETE", "/api/v1/users/x%27%29%3B%20DROP%20TABLE%20users%3B--", "", 200, `{}`, ""},
		{"U2 GET is 405", "GET", "/api/v1/users/zoe", "", 405, "", "not allowed"},
		{"U3 after deletes", "GET", "/api/v1/users", "", 200, `["Zoe","ann","zoe"]`, ""},
		{"U4 wrong method", "GET", "/api/v1/db/clear", "", 405, "", "not allowed"},
		{"unknown route", "GET", "/api/v1/people", "", 404, "", "no route"},
		{"unknown route under users", "GET", "/api/v1/users/a/b", "", 404, "", "no route"},
		{"healthz", "GET", "/healthz", "", 200, `{}`, ""},
		{"U4 clear", "POST", "/api/v1/db/clear", "", 200, `{}`, ""},
		{"U3 empty is 204", "GET", "/api/v1/users", "", 204, "-", ""},
		{"U6 reset count", "DELETE", "/api/v1/_count", "", 200, `{}`, ""},
		{"U5 count", "GET", "/api/v1/_count", "", 200, `[0]`, ""},
		{"U5 POST _count is 405", "POST", "/api/v1/_count", "{}", 405, "", "not allowed"},
	}
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

func TestPasswordStoredLowerCase(t *testing.T) {
	u, e := decodeNewUser([]byte(userBody("a", strings.ToUpper(sha("x")))))
	if e != nil || u.Password != sha("x") {
		t.Fatalf("got %+v %v", u, e)
	}
}

func TestAllowHeaders(t *testing.T) {
	_, _, base := mustUsers(t)
	tests := []struct{ method, path, allow string }{
		{"POST", "/api/v1/users", "GET, PUT"},
		{"PATCH", "/api/v1/users/zoe", "DELETE"},
		{"POST", "/api/v1/_count", "DELETE, GET"},
		{"PUT", "/api/v1/db/clear", "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			got := call(t, base, tt.method, tt.path, "")
			if got.status != 405 || got.header.Get("Allow") != tt.allow {
				t.Fatalf("got %d Allow %q, want 405 %q", got.status, got.header.Get("Allow"), tt.allow)
			}
		})
	}
}

func TestBodyOverCapIs413(t *testing.T) {
	_, fake, base := mustUsers(t)
	huge := userBody(strings.Repeat("n", 2<<20), sha("g")) // 2 MiB username
	got := call(t, base, "PUT", "/api/v1/users", huge)
	if got.status != http.StatusRequestEntityTooLarge || !strings.Contains(got.body, "limit") {
		t.Fatalf("got %d %s", got.status, got.body)
	}
	if fake.Writes("users.add") != 0 {
		t.Fatal("an oversized body reached the DBaaS")
	}
}

func TestLongUsername(t *testing.T) {
	_, _, base := mustUsers(t)
	long := strings.Repeat("n", 100000)
	if got := call(t, base, "PUT", "/api/v1/users", userBody(long, sha("g"))); got.status != 201 {
		t.Fatalf("add: %d %s", got.status, got.body)
	}
	got := call(t, base, "GET", "/api/v1/users", "")
	var names []string
	if err := json.Unmarshal([]byte(got.body), &names); err != nil || len(names) != 1 || names[0] != long {
		t.Fatalf("list: %d, %d names", got.status, len(names))
	}
	if got := call(t, base, "DELETE", "/api/v1/users/"+long, ""); got.status != 200 {
		t.Fatalf("delete: %d %s", got.status, got.body)
	}
}

func TestUsernameWithSlash(t *testing.T) {
	_, _, base := mustUsers(t)
	if got := call(t, base, "PUT", "/api/v1/users", userBody("a/b", sha("g"))); got.status != 201 {
		t.Fatalf("add: %d", got.status)
	}
	if got := call(t, base, "DELETE", "/api/v1/users/a%2Fb", ""); got.status != 200 {
		t.Fatalf("delete: %d %s", got.status, got.body)
	}
}

func TestDBaaSUnavailableIs503(t *testing.T) {
	_, fake, base := mustUsers(t)
	fake.Intercept = func(path, op string) (int, string, bool) {
		return 502, `{"error":"handler crashed","handler":"rideshare"}`, true
	}
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/api/v1/users", userBody("a", sha("a"))},
		{"GET", "/api/v1/users", ""},
		{"DELETE", "/api/v1/users/a", ""},
		{"POST", "/api/v1/db/clear", ""},
	} {
		got := call(t, base, c.method, c.path, c.body)
		if got.status != http.StatusServiceUnavailable || !strings.Contains(got.body, "error") {
			t.Errorf("%s %s: %d %s", c.method, c.path, got.status, got.body)
		}
	}
}

// TestCounter follows the acceptance suite's counter check, then hammers
// the service from 200 goroutines.
func TestCounter(t *testing.T) {
	svc, _, base := mustUsers(t)
	call(t, base, "DELETE", "/api/v1/_count", "")
	call(t, base, "GET", "/api/v1/users", "")
	call(t, base, "PUT", "/api/v1/users", `{"username":"c1","password":"bad"}`) // 400 counts
	call(t, base, "POST", "/api/v1/users", `{}`)                                // 405 counts
	call(t, base, "POST", "/api/v1/db/clear", "")                               // not counted
	call(t, base, "GET", "/healthz", "")                                        // not counted
	call(t, base, "POST", "/api/v1/_count", "{}")                               // 405, not counted
	if got := call(t, base, "GET", "/api/v1/_count", ""); got.body != "[3]\n" {
		t.Fatalf("count %q, want [3]", got.body)
	}

	call(t, base, "DELETE", "/api/v1/_count", "")
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			switch i % 4 {
			case 0:
				call(t, base, "GET", "/api/v1/users", "")
			case 1:
				call(t, base, "PUT", "/api/v1/users", userBody("u"+strings.Repeat("x", i), sha("p")))
			case 2:
				call(t, base, "DELETE", "/api/v1/users/nobody", "")
			case 3:
				call(t, base, "PATCH", "/api/v1/users", "")
			}
			call(t, base, "GET", "/api/v1/_count", "") // never counted
		})
	}
	wg.Wait()
	if svc.Count() != n {
		t.Fatalf("count %d, want %d", svc.Count(), n)
	}
}

func FuzzDecodeUser(f *testing.F) {
	for _, seed := range []string{
		userBody("zoe", sha("a")),
		userBody("x'); DROP TABLE users;--", strings.ToUpper(sha("b"))),
		`{"username":"a","password":12345}`,
		`{"username":null,"password":"` + sha("c") + `"}`,
		`{not json`, ``, `[]`, `null`, `{"username":"a"}{}`,
		"{\"username\":\"\xff\",\"password\":\"" + sha("d") + "\"}",
		`{"username":"\u0000","password":"` + sha("e") + `"}`,
		`{"username":"a","password":"` + sha("f") + `","extra":1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		u, e := decodeNewUser(body)
		if e != nil {
			if e.Status != http.StatusBadRequest || e.Msg == "" {
				t.Fatalf("bad error %v", e)
			}
			return
		}
		if httpx.ValidateUsername(u.Username) != nil || !isSHA1Hex(u.Password) || strings.ToLower(u.Password) != u.Password {
			t.Fatalf("accepted %q / %q", u.Username, u.Password)
		}
	})
}

func TestMetrics(t *testing.T) {
	_, _, base := mustUsers(t)
	call(t, base, "GET", "/api/v1/users", "")
	got := call(t, base, "GET", "/metrics", "")
	if got.status != 200 || !strings.Contains(got.body, `rideshare_http_requests_total{code="204",component="users",method="GET",route="/api/v1/users"} 1`) {
		t.Fatalf("/metrics: %d\n%s", got.status, got.body)
	}
	if got := call(t, base, "GET", "/api/v1/_count", ""); got.body != "[1]\n" && got.body != "[1]" {
		t.Fatalf("/metrics was counted: _count %q", got.body)
	}
}
