package bench

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeServer answers every request with the answer func's status and body
// and records the last request. The real servers are exercised by the
// smoke (make bench-smoke); this checks how the clients read answers.
type fakeServer struct {
	answer   func(path, query string, body []byte) (int, string)
	lastPath string
	lastBody []byte
}

func (f *fakeServer) start(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.lastPath, f.lastBody = r.URL.Path+"?"+r.URL.RawQuery, b
		code, body := f.answer(r.URL.Path, r.URL.RawQuery, b)
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestDBaaSClient(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name    string
		status  int
		body    string
		call    func(d DBaaS) error
		wantErr string
		path    string
	}{
		{"write ok", 200, `{"seq":3,"result":{}}`, func(d DBaaS) error { return d.AddUser(ctx, "zoe") }, "", "/api/v1/db/write?"},
		{"write refused", 409, `{"error":"username taken","code":"conflict"}`, func(d DBaaS) error { return d.AddUser(ctx, "zoe") }, "409", "/api/v1/db/write?"},
		{"read exists", 200, `{"seq":3,"result":{"exists":true}}`, func(d DBaaS) error { return d.UserExists(ctx, "zoe") }, "", "/api/v1/db/read?"},
		{"read missing row", 200, `{"seq":3,"result":{"exists":false}}`, func(d DBaaS) error { return d.UserExists(ctx, "zoe") }, "false", "/api/v1/db/read?"},
		{"read garbage", 200, `{"seq":`, func(d DBaaS) error { return d.UserExists(ctx, "zoe") }, "undecodable", "/api/v1/db/read?"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServer{answer: func(string, string, []byte) (int, string) { return tt.status, tt.body }}
			d := DBaaS{URL: f.start(t), Client: NewHTTPClient(1, 5*time.Second)}
			err := tt.call(d)
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if f.lastPath != tt.path {
				t.Errorf("path %q, want %q", f.lastPath, tt.path)
			}
			var req struct {
				Op     string            `json:"op"`
				Params map[string]string `json:"params"`
			}
			if err := json.Unmarshal(f.lastBody, &req); err != nil || req.Params["username"] != "zoe" || !strings.HasPrefix(req.Op, "users.") {
				t.Errorf("request body %s", f.lastBody)
			}
		})
	}
}

func TestRqliteClient(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name     string
		body     string
		call     func(q Rqlite) error
		wantErr  string
		wantPath string
		wantBody string
	}{
		{"insert ok", `{"results":[{"last_insert_id":1,"rows_affected":1}]}`,
			func(q Rqlite) error { return q.AddUser(ctx, "zoe") }, "", "/db/execute?",
			`[["INSERT INTO users (name, password) VALUES (?, ?)","zoe","`},
		{"insert failed with 200", `{"results":[{"error":"UNIQUE constraint failed: users.name"}]}`,
			func(q Rqlite) error { return q.AddUser(ctx, "zoe") }, "UNIQUE", "/db/execute?", ""},
		{"insert touched nothing", `{"results":[{"rows_affected":0}]}`,
			func(q Rqlite) error { return q.AddUser(ctx, "zoe") }, "0 rows affected", "/db/execute?", ""},
		{"select weak", `{"results":[{"columns":["1"],"types":["integer"],"values":[[1]]}]}`,
			func(q Rqlite) error { return q.UserExists(ctx, LevelWeak, "zoe") }, "", "/db/query?level=weak",
			`[["SELECT 1 FROM users WHERE name = ?","zoe"]]`},
		{"select linearizable, no row", `{"results":[{"columns":["1"],"types":["integer"]}]}`,
			func(q Rqlite) error { return q.UserExists(ctx, LevelLinearizable, "zoe") }, "0 rows", "/db/query?level=linearizable", ""},
		{"top-level error", `{"error":"not leader"}`,
			func(q Rqlite) error { return q.UserExists(ctx, LevelWeak, "zoe") }, "not leader", "/db/query?level=weak", ""},
		{"schema", `{"results":[{}]}`, func(q Rqlite) error { return q.Schema(ctx) }, "", "/db/execute?", `[["CREATE TABLE IF NOT EXISTS users`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServer{answer: func(string, string, []byte) (int, string) { return 200, tt.body }}
			q := Rqlite{URL: f.start(t), Client: NewHTTPClient(1, 5*time.Second)}
			err := tt.call(q)
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if f.lastPath != tt.wantPath {
				t.Errorf("path %q, want %q", f.lastPath, tt.wantPath)
			}
			if !strings.HasPrefix(string(f.lastBody), tt.wantBody) {
				t.Errorf("body %s, want it to start with %s", f.lastBody, tt.wantBody)
			}
		})
	}
}
