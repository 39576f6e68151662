package traefik

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/reqid"
	"github.com/rideshare-dbaas/rideshare/internal/testenv"
)

func traefikBinary(t *testing.T) string { return testenv.Traefik(t) }

func mustFreePort(t *testing.T) int { return testenv.FreePort(t) }

// backend is a stand-in for a service: /healthz answers 200 while healthy
// (503 otherwise), every other path echoes "<name> <path> host=<Host>".
type backend struct {
	name    string
	srv     *httptest.Server
	healthy atomic.Bool
}

func mustBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	b.healthy.Store(true)
	// reqid.Middleware, as the services have: the reply carries the
	// client's X-Request-ID, or one the backend made.
	b.srv = httptest.NewServer(reqid.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == HealthCheckPath {
			if !b.healthy.Load() {
				http.Error(w, "unhealthy", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok")
			return
		}
		w.Header().Set("X-Backend", name)
		fmt.Fprintf(w, "%s %s host=%s", name, r.URL.Path, r.Host)
	})))
	t.Cleanup(b.srv.Close)
	return b
}

// traefikProc is a running bin/traefik, stopped by t.Cleanup.
type traefikProc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	err    error         // Wait's result, valid after exited is closed
}

func mustStartTraefik(t *testing.T, bin, static, stateDir string) *traefikProc {
	t.Helper()
	out, err := os.Create(filepath.Join(stateDir, "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		out.Close()
		if t.Failed() {
			for _, f := range []string{"stdout.log", "traefik.log"} {
				b, _ := os.ReadFile(filepath.Join(stateDir, f))
				t.Logf("---- %s ----\n%s", f, b)
			}
		}
	})
	p := &traefikProc{exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "--configFile="+static)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("traefik did not stop within 10s of SIGTERM; killing it")
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// waitFor polls cond every 50ms until it reports true, Traefik exits, or the
// deadline passes; cond's string explains the last failed attempt.
func (p *traefikProc) waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last: %s", timeout, what, detail)
		}
		select {
		case <-p.exited:
			t.Fatalf("traefik exited (%v) while waiting for %s", p.err, what)
		case <-tick.C:
		}
	}
}

var client = &http.Client{Timeout: 2 * time.Second}

// get returns status and body of a GET, or an error description in body.
func get(url string) (int, string) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// rawData is the part of Traefik's GET /api/rawdata the test looks at.
type rawData struct {
	Routers map[string]struct {
		Rule        string   `json:"rule"`
		Priority    int      `json:"priority"`
		Service     string   `json:"service"`
		EntryPoints []string `json:"entryPoints"`
		Status      string   `json:"status"`
	} `json:"routers"`
	Services map[string]struct {
		Status       string            `json:"status"`
		ServerStatus map[string]string `json:"serverStatus"`
	} `json:"services"`
}

func getRawData(apiBase string) (*rawData, string) {
	code, body := get(apiBase + "/api/rawdata")
	if code != http.StatusOK {
		return nil, fmt.Sprintf("GET /api/rawdata: %d %s", code, body)
	}
	var rd rawData
	if err := json.Unmarshal([]byte(body), &rd); err != nil {
		return nil, fmt.Sprintf("decode /api/rawdata: %v", err)
	}
	return &rd, body
}

// serverStatus reports the health status Traefik holds for one server URL.
func serverStatus(apiBase, service, url string) (string, string) {
	rd, detail := getRawData(apiBase)
	if rd == nil {
		return "", detail
	}
	return rd.Services[service+"@file"].ServerStatus[url], detail
}

func countLines(path string) (int, string) {
	f, err := os.Open(path)
	if err != nil {
		return 0, ""
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	n := 0
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		n++
	}
	return n, string(b)
}

// TestTraefik_RoutesThroughRealBinary renders the config with render.sh and
// drives the real bin/traefik with it between two fake backends.
func TestTraefik_RoutesThroughRealBinary(t *testing.T) {
	bin := traefikBinary(t)
	routes := mustRoutes(t)
	users, rides := mustBackend(t, "users"), mustBackend(t, "rides")

	stateDir := t.TempDir()
	lbPort, apiPort := mustFreePort(t), mustFreePort(t)
	for apiPort == lbPort {
		apiPort = mustFreePort(t)
	}
	static := mustRender(t, stateDir, lbPort, apiPort, users.srv.URL, rides.srv.URL)
	p := mustStartTraefik(t, bin, static, stateDir)

	lb := "http://127.0.0.1:" + strconv.Itoa(lbPort)
	api := "http://127.0.0.1:" + strconv.Itoa(apiPort)

	p.waitFor(t, 30*time.Second, "GET /ping on the API entrypoint", func() (bool, string) {
		code, body := get(api + "/ping")
		return code == http.StatusOK, fmt.Sprintf("%d %s", code, body)
	})

	t.Run("api lists both routers", func(t *testing.T) {
		p.waitFor(t, 15*time.Second, "both routers and healthy servers in /api/rawdata", func() (bool, string) {
			rd, detail := getRawData(api)
			if rd == nil {
				return false, detail
			}
			for _, r := range routes {
				rt, ok := rd.Routers[r.Name+"@file"]
				if !ok || rt.Status != "enabled" {
					return false, "router " + r.Name + "@file missing or not enabled: " + detail
				}
				if s := rd.Services[r.Name+"@file"].ServerStatus; len(s) == 0 {
					return false, "service " + r.Name + "@file has no server status yet: " + detail
				}
			}
			return true, ""
		})
		rd, _ := getRawData(api)
		for _, r := range routes {
			rt := rd.Routers[r.Name+"@file"]
			if rt.Rule != r.Rule || rt.Priority != r.Priority || rt.Service != r.Name ||
				len(rt.EntryPoints) != 1 || rt.EntryPoints[0] != EntryPoint {
				t.Errorf("router %s@file = %+v, want rule %q priority %d service %s on [%s]",
					r.Name, rt, r.Rule, r.Priority, r.Name, EntryPoint)
			}
		}
		for name, url := range map[string]string{"users": users.srv.URL, "rides": rides.srv.URL} {
			if st := rd.Services[name+"@file"].ServerStatus[url]; st != "UP" {
				t.Errorf("service %s@file server %s status %q, want UP", name, url, st)
			}
		}
	})

	// Routing: once the users route answers, every path must land right on the first try.
	p.waitFor(t, 15*time.Second, "/api/v1/users to reach the users backend", func() (bool, string) {
		code, body := get(lb + "/api/v1/users")
		return code == http.StatusOK && strings.HasPrefix(body, "users "), fmt.Sprintf("%d %s", code, body)
	})
	requests := 1
	t.Run("paths", func(t *testing.T) {
		for _, tt := range []struct{ path, want string }{
			{"/api/v1/users", "users"},
			{"/api/v1/users/x", "users"},
			{"/api/v1/rides", "rides"},
			{"/api/v1/rides/3", "rides"},
			{"/api/v1/_count", "rides"},
			{"/anything", "rides"},
		} {
			requests++
			code, body := get(lb + tt.path)
			want := fmt.Sprintf("%s %s host=127.0.0.1:%d", tt.want, tt.path, lbPort) // passHostHeader
			if code != http.StatusOK || body != want {
				t.Errorf("GET %s = %d %q, want 200 %q", tt.path, code, body, want)
			}
		}
	})

	t.Run("access log", func(t *testing.T) {
		accessLog := filepath.Join(stateDir, "access.log")
		p.waitFor(t, 10*time.Second, "access.log lines for every request", func() (bool, string) {
			n, content := countLines(accessLog)
			ok := n >= requests && strings.Contains(content, `"users@file"`) && strings.Contains(content, `"rides@file"`)
			return ok, fmt.Sprintf("%d lines (want >= %d):\n%s", n, requests, content)
		})
	})

	// The access log is JSON and keeps the request id: the one the client
	// sent (request_ and downstream_X-Request-Id), or, when it sent none,
	// the one the service made (downstream_ only).
	t.Run("access log has the request id", func(t *testing.T) {
		sent := fmt.Sprintf("t-%d", time.Now().UnixNano())
		got := map[string]string{} // what the client sent ("" for none) -> the reply's id
		for _, id := range []string{sent, ""} {
			req, _ := http.NewRequest(http.MethodGet, lb+"/api/v1/users/trace", nil)
			if id != "" {
				req.Header.Set(reqid.Header, id)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got[id] = resp.Header.Get(reqid.Header)
		}
		if got[sent] != sent || got[""] == "" || got[""] == sent {
			t.Fatalf("reply ids %q: want the client's, then a new one", got)
		}
		accessLog := filepath.Join(stateDir, "access.log")
		p.waitFor(t, 10*time.Second, "access log lines with both ids", func() (bool, string) {
			b, _ := os.ReadFile(accessLog)
			found := 0
			for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					return false, fmt.Sprintf("access log line is not JSON (%v): %s", err, l)
				}
				if _, ok := m["request_User-Agent"]; ok {
					return false, "a header other than X-Request-Id is logged: " + l
				}
				if m["downstream_X-Request-Id"] == sent && m["request_X-Request-Id"] == sent ||
					m["downstream_X-Request-Id"] == got[""] && m["request_X-Request-Id"] == nil {
					found++
				}
			}
			return found == 2, fmt.Sprintf("%d of 2 lines found:\n%s", found, b)
		})
	})

	t.Run("health check takes a failing server out", func(t *testing.T) {
		rides.healthy.Store(false)
		p.waitFor(t, 10*time.Second, "rides server DOWN", func() (bool, string) {
			st, detail := serverStatus(api, "rides", rides.srv.URL)
			return st == "DOWN", detail
		})
		if code, body := get(lb + "/anything"); code != http.StatusServiceUnavailable {
			t.Errorf("GET /anything with rides down = %d %q, want 503", code, body)
		}
		rides.healthy.Store(true)
		p.waitFor(t, 10*time.Second, "rides server UP again", func() (bool, string) {
			st, detail := serverStatus(api, "rides", rides.srv.URL)
			return st == "UP", detail
		})
		p.waitFor(t, 5*time.Second, "/anything served by rides again", func() (bool, string) {
			code, body := get(lb + "/anything")
			return code == http.StatusOK && strings.HasPrefix(body, "rides "), fmt.Sprintf("%d %s", code, body)
		})
	})

	t.Run("re-render is picked up without restart", func(t *testing.T) {
		rides2 := mustBackend(t, "rides2")
		mustRender(t, stateDir, lbPort, apiPort, users.srv.URL, rides2.srv.URL)
		p.waitFor(t, 15*time.Second, "/anything served by the new rides backend", func() (bool, string) {
			code, body := get(lb + "/anything")
			return code == http.StatusOK && strings.HasPrefix(body, "rides2 "), fmt.Sprintf("%d %s", code, body)
		})
		if code, body := get(lb + "/api/v1/users/7"); code != http.StatusOK || !strings.HasPrefix(body, "users ") {
			t.Errorf("GET /api/v1/users/7 after reload = %d %q", code, body)
		}
	})
}
