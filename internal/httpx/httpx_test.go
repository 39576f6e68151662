package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

type target struct {
	Name  *string `json:"name"`
	Count *int    `json:"count"`
	Tags  []string
}

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr string // substring of the message; "" for success
	}{
		{"ok", `{"name":"a","count":1}`, ""},
		{"ok with whitespace", " \n{\"name\":\"a\"}\n ", ""},
		{"empty", ``, "empty"},
		{"blank", "  \n", "empty"},
		{"malformed", `{not json`, "malformed JSON"},
		{"truncated", `{"name":"a"`, "unexpected end"},
		{"wrong type string", `{"name":12345}`, `field "name" must be a string, not a number`},
		{"wrong type int", `{"count":"x"}`, `field "count" must be an integer, not a string`},
		{"float for int", `{"count":1.5}`, `field "count" must be an integer`},
		{"array body", `["a"]`, "must be a JSON object, not an array"},
		{"string body", `"a"`, "must be a JSON object, not a string"},
		{"unknown field", `{"nmae":"a"}`, `unknown field "nmae"`},
		{"trailing object", `{"name":"a"}{"name":"b"}`, "after the JSON object"},
		{"trailing garbage", `{"name":"a"} x`, "after the JSON object"},
		{"invalid utf8", "{\"name\":\"\xff\xfe\"}", "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dst target
			e := DecodeJSON([]byte(tt.body), &dst)
			if tt.wantErr == "" {
				if e != nil {
					t.Fatalf("unexpected %v", e)
				}
				return
			}
			if e == nil || e.Status != http.StatusBadRequest || !strings.Contains(e.Msg, tt.wantErr) {
				t.Fatalf("got %v, want 400 containing %q", e, tt.wantErr)
			}
		})
	}
}

func TestReadBody(t *testing.T) {
	tests := []struct {
		name       string
		size       int
		hideLength bool // chunked: no Content-Length to check up front
		wantStatus int  // 0: read fine
	}{
		{"under cap", 100, false, 0},
		{"at cap", 1024, false, 0},
		{"over cap", 1025, false, http.StatusRequestEntityTooLarge},
		{"over cap chunked", 4096, true, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = bytes.NewReader(make([]byte, tt.size))
			if tt.hideLength {
				body = io.MultiReader(body)
			}
			r := httptest.NewRequest(http.MethodPost, "/", body)
			if tt.hideLength {
				r.ContentLength = -1
			}
			b, e := ReadBody(r, 1024)
			if tt.wantStatus == 0 {
				if e != nil || len(b) != tt.size {
					t.Fatalf("got %d bytes, %v", len(b), e)
				}
				return
			}
			if e == nil || e.Status != tt.wantStatus {
				t.Fatalf("got %v, want %d", e, tt.wantStatus)
			}
		})
	}
}

func mustAPI(t *testing.T, clearErr error) *API {
	t.Helper()
	a := NewAPI("/api/v1/things", slog.New(slog.NewTextHandler(io.Discard, nil)),
		func(context.Context) error { return clearErr })
	ok := func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, http.StatusOK, Empty) }
	a.Handle("/api/v1/things", Methods{http.MethodGet: ok, http.MethodPut: ok})
	a.Handle("/api/v1/things/count", Methods{http.MethodGet: ok})
	a.Handle("/api/v1/things/{id}", Methods{http.MethodGet: ok, http.MethodPost: ok, http.MethodDelete: ok})
	a.Handle("/api/v1/panic", Methods{http.MethodGet: func(http.ResponseWriter, *http.Request) { panic("boom") }})
	return a
}

func TestAPI_Routing(t *testing.T) {
	srv := httptest.NewServer(mustAPI(t, nil).Handler())
	defer srv.Close()
	tests := []struct {
		name, method, path string
		wantStatus         int
		wantAllow          string
	}{
		{"known route", "GET", "/api/v1/things", 200, ""},
		{"wrong method on collection", "POST", "/api/v1/things", 405, "GET, PUT"},
		{"static segment wins over param", "DELETE", "/api/v1/things/count", 405, "GET"},
		{"param route", "DELETE", "/api/v1/things/7", 200, ""},
		{"wrong method on param route", "PUT", "/api/v1/things/7", 405, "DELETE, GET, POST"},
		{"method chi does not know", "BREW", "/api/v1/things", 405, "GET, PUT"},
		{"unknown method, unknown path", "BREW", "/nowhere", 404, ""},
		{"unknown route", "GET", "/api/v1/nowhere", 404, ""},
		{"too deep", "GET", "/api/v1/things/1/2", 404, ""},
		{"count GET", "GET", "/api/v1/_count", 200, ""},
		{"count POST", "POST", "/api/v1/_count", 405, "DELETE, GET"},
		{"clear", "POST", "/api/v1/db/clear", 200, ""},
		{"clear GET", "GET", "/api/v1/db/clear", 405, "POST"},
		{"healthz", "GET", "/healthz", 200, ""},
		{"panic", "GET", "/api/v1/panic", 500, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := resp.Header.Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow %q, want %q", got, tt.wantAllow)
			}
			id := resp.Header.Get("X-Request-ID")
			if id == "" {
				t.Errorf("no X-Request-ID on the reply")
			}
			if tt.wantStatus >= 400 {
				var body struct {
					Error     string
					RequestID string `json:"request_id"`
				}
				if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error == "" {
					t.Errorf("error body not JSON {error}: %v", err)
				}
				if body.RequestID != id {
					t.Errorf("error body's request_id %q, want the header's %q", body.RequestID, id)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
			}
		})
	}
}

// A client's X-Request-ID is answered, put in the error body and on the
// service's log lines about the request; an invalid one is replaced.
func TestAPI_RequestID(t *testing.T) {
	var logs bytes.Buffer
	a := NewAPI("/api/v1/things", reqidLogger(&logs), func(context.Context) error { return errors.New("down") })
	h := a.Handler()
	tests := []struct {
		name, sent string
		keep       bool
	}{
		{"client id kept", "t-client.1", true},
		{"invalid id replaced", "bad id\n", false},
		{"none sent", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs.Reset()
			r := httptest.NewRequest("POST", "/api/v1/db/clear", nil)
			if tt.sent != "" {
				r.Header.Set("X-Request-ID", tt.sent)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			id := w.Header().Get("X-Request-ID")
			if tt.keep && id != tt.sent || !tt.keep && (id == "" || id == tt.sent) {
				t.Fatalf("X-Request-ID %q after sending %q", id, tt.sent)
			}
			var body map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["request_id"] != id || body["error"] == "" {
				t.Fatalf("body %s, want error and request_id %q", w.Body, id)
			}
			// The 503's lines: "database unavailable" and the request line.
			n := 0
			for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(l), &m) != nil || m["request_id"] != id {
					t.Errorf("log line without request_id %q: %s", id, l)
				}
				n++
			}
			if n < 2 {
				t.Errorf("%d log lines, want the failure and the request:\n%s", n, logs.String())
			}
		})
	}
}

func reqidLogger(w io.Writer) *slog.Logger {
	return NewLogger(w, "things")
}

func TestAPI_ClearFailureIs503(t *testing.T) {
	a := mustAPI(t, errors.New("down"))
	w := httptest.NewRecorder()
	a.Handler().ServeHTTP(w, httptest.NewRequest("POST", "/api/v1/db/clear", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d", w.Code)
	}
}

func TestAPI_Counter(t *testing.T) {
	a := mustAPI(t, nil)
	h := a.Handler()
	do := func(method, path string) int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
		return w.Code
	}
	counted := [][2]string{
		{"GET", "/api/v1/things"}, {"POST", "/api/v1/things"}, {"GET", "/api/v1/things/count"},
		{"GET", "/api/v1/things/9"}, {"GET", "/api/v1/things/1/2"}, {"BREW", "/api/v1/things"},
	}
	notCounted := [][2]string{
		{"GET", "/api/v1/_count"}, {"POST", "/api/v1/_count"}, {"POST", "/api/v1/db/clear"},
		{"GET", "/healthz"}, {"GET", "/api/v1/thingsx"}, {"GET", "/elsewhere"},
	}
	for _, c := range append(counted, notCounted...) {
		do(c[0], c[1])
	}
	if got := a.Count(); got != int64(len(counted)) {
		t.Fatalf("count %d, want %d", got, len(counted))
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/_count", nil))
	if strings.TrimSpace(w.Body.String()) != "[6]" {
		t.Fatalf("_count body %q", w.Body.String())
	}
	if do("DELETE", "/api/v1/_count") != 200 || a.Count() != 0 {
		t.Fatalf("reset failed: %d", a.Count())
	}
}

func TestAPI_CounterConcurrent(t *testing.T) {
	a := mustAPI(t, nil)
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			method := "GET"
			if i%3 == 0 {
				method = "PATCH" // 405s count too
			}
			req, _ := http.NewRequest(method, srv.URL+"/api/v1/things", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		})
	}
	wg.Wait()
	if a.Count() != n {
		t.Fatalf("count %d, want %d", a.Count(), n)
	}
}

func TestServe_GracefulShutdownFinishesInFlight(t *testing.T) {
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(200 * time.Millisecond)
		WriteJSON(w, http.StatusOK, Empty)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, Config{DBaaSURL: "http://127.0.0.1:1"}, ln, h) }()
	got := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			got <- -1
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	<-started
	cancel()
	if st := <-got; st != 200 {
		t.Fatalf("in-flight request got %d", st)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

func TestValidateUsername(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"plain", "zoe", true},
		{"sql-looking", "x'); DROP TABLE users;--", true},
		{"unicode", "Zoë 🚗", true},
		{"long", strings.Repeat("n", 100000), true},
		{"empty", "", false},
		{"nul", "a\x00b", false},
		{"newline", "a\nb", false},
		{"del", "a\x7fb", false},
		{"C1 control", "a\u0085b", false},
		{"invalid utf8", "a\xffb", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if e := ValidateUsername(tt.in); (e == nil) != tt.ok {
				t.Fatalf("ValidateUsername = %v, want ok=%v", e, tt.ok)
			}
		})
	}
}
