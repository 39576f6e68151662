package orchestrator_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/httpx"
	"github.com/rideshare-dbaas/rideshare/internal/reqid"
	"github.com/rideshare-dbaas/rideshare/internal/testenv"
	"github.com/rideshare-dbaas/rideshare/orchestrator"
	"github.com/rideshare-dbaas/rideshare/services/rides"
	"github.com/rideshare-dbaas/rideshare/traefik"
)

// TestTrace_RequestIDEndToEnd follows one request id through a real stack:
// Traefik (bin/traefik, with the stack's configuration), the rides
// service (in process), the orchestrator, RabbitMQ, a slave
// worker (a process) and a handler plugin (a process of its own) that
// fails on purpose (testdata/tracefail, in the stats plugin's place).
// The client's X-Request-ID comes back in the reply's header and error
// body, and is on Traefik's access log line and the service's, the
// orchestrator's, the worker's and the plugin's log lines about the
// request.
func TestTrace_RequestIDEndToEnd(t *testing.T) {
	testenv.RequireServers(t)
	bins := buildPlugins(t, "rideshare")
	pluginDir := t.TempDir()
	installPlugin(t, pluginDir, bins["rideshare"], "rideshare-plugin")
	installPlugin(t, pluginDir, buildTestPlugin(t, "./orchestrator/testdata/tracefail"), "stats-plugin")
	writeManifest(t, pluginDir, "rideshare", "stats")

	workersDir := t.TempDir()
	s := mustStartStack(t, func(o *orchestrator.Options) {
		rt := processWithPlugins(t, o, pluginDir, workersDir)
		t.Cleanup(func() { _ = rt.Close(true) })
		o.Runtime = rt
		o.Scale.MinSlaves, o.Scale.MaxSlaves = 1, 1
	})
	t.Cleanup(func() {
		if t.Failed() {
			dumpWorkerLogs(t, workersDir)
		}
	})
	s.waitShape(1, 60*time.Second)

	// The rides service, logging as its binary does (JSON, info level).
	svcLog := filepath.Join(t.TempDir(), "rides.log")
	logf, err := os.Create(svcLog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	svc, err := rides.New(rides.Options{
		Config:   httpx.Config{DBaaSURL: s.url, Logger: httpx.NewLogger(logf, "rides")},
		UsersURL: "http://127.0.0.1:1", PublicURL: "http://rides.test",
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	lb, accessLog := mustStartTraefik(t, srv.URL)

	// The request, and writes (one applied, then the same refused:
	// username taken) straight to the orchestrator, each with its own id,
	// which comes back in the reply's header and in an error's body.
	id, wid, rid := "t-"+reqid.New()[:12], "t-"+reqid.New()[:12], "t-"+reqid.New()[:12]
	write := `{"op":"users.add","params":{"username":"trace","password":"p"}}`
	for _, c := range []struct {
		id, method, url, body string
		status                int
	}{
		{id, http.MethodGet, lb + "/api/v1/rides/stats", "", http.StatusServiceUnavailable},
		{wid, http.MethodPost, s.url + "/api/v1/db/write", write, http.StatusOK},
		{rid, http.MethodPost, s.url + "/api/v1/db/write", write, http.StatusConflict},
	} {
		req, _ := http.NewRequest(c.method, c.url, strings.NewReader(c.body))
		req.Header.Set(reqid.Header, c.id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		if resp.StatusCode != c.status || resp.Header.Get(reqid.Header) != c.id || (c.status != 200 && m["request_id"] != c.id) {
			t.Fatalf("%s %s with id %s: %d %s (X-Request-ID %q), want %d with the id in the header and an error's body",
				c.method, c.url, c.id, resp.StatusCode, b, resp.Header.Get(reqid.Header), c.status)
		}
	}

	// Every log the request went through has a line with its id.
	type where struct {
		name  string
		lines func() []byte
		msg   string // a line with this message and the id
	}
	fileLines := func(glob string) func() []byte {
		return func() []byte {
			files, _ := filepath.Glob(glob)
			var all []byte
			for _, f := range files {
				b, _ := os.ReadFile(f)
				all = append(all, b...)
			}
			return all
		}
	}
	for _, w := range []where{
		{"Traefik", fileLines(accessLog), ""},
		{"rides service", fileLines(svcLog), "database unavailable"},
		{"orchestrator", fileLines(filepath.Join(s.dataDir, "orchestrator.log")), "worker answered an error"},
		{"worker", fileLines(filepath.Join(workersDir, "*.log")), "handler failed"},
		{"plugin (through the worker's log)", fileLines(filepath.Join(workersDir, "*.log")), "tracefail: failing on purpose"},
		{"worker (write applied)", fileLines(filepath.Join(workersDir, "*.log")), "write applied"},
		{"worker (write refused)", fileLines(filepath.Join(workersDir, "*.log")), "write refused"},
		{"orchestrator (write refused)", fileLines(filepath.Join(s.dataDir, "orchestrator.log")), "worker answered an error"},
	} {
		want := id
		switch {
		case strings.HasSuffix(w.name, "(write applied)"):
			want = wid
		case strings.HasSuffix(w.name, "(write refused)"):
			want = rid
		}
		testenv.Eventually(t, 10*time.Second, w.name+" logs the request id", func() (bool, string) {
			for _, l := range bytes.Split(w.lines(), []byte("\n")) {
				var m map[string]any
				if json.Unmarshal(l, &m) == nil && w.name == "Traefik" {
					if m["request_X-Request-Id"] == want && m["downstream_X-Request-Id"] == want && m["DownstreamStatus"] == 503.0 {
						return true, ""
					}
					continue
				}
				if json.Unmarshal(l, &m) == nil && m["msg"] == w.msg && m["request_id"] == want {
					return true, ""
				}
			}
			return false, fmt.Sprintf("no line %q with request_id %q", w.msg, want)
		})
	}
}

// mustStartTraefik runs bin/traefik (runTraefik) in front of one server
// for every route, until the test ends; it returns the load balancer's
// URL, once a request through it reaches the server, and the access log's
// path.
func mustStartTraefik(t *testing.T, server string) (lb, accessLog string) {
	t.Helper()
	bin := testenv.Traefik(t)
	lbPort, apiPort := testenv.FreePort(t), testenv.FreePort(t)
	for apiPort == lbPort {
		apiPort = testenv.FreePort(t)
	}
	routes, err := traefik.Routes()
	if err != nil {
		t.Fatal(err)
	}
	servers := map[string][]string{}
	for _, r := range routes {
		servers[r.Name] = []string{server}
	}
	dir := runTraefik(t, bin, lbPort, apiPort, servers)
	lb = fmt.Sprintf("http://127.0.0.1:%d", lbPort)
	testenv.Eventually(t, 30*time.Second, "Traefik routes to the service", func() (bool, string) {
		resp, err := http.Get(lb + traefik.HealthCheckPath)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return lb, filepath.Join(dir, "access.log")
}

// buildTestPlugin builds the plugin command pkg (a path from the
// repository's root) into a temporary directory.
func buildTestPlugin(t *testing.T, pkg string) string {
	t.Helper()
	dir := t.TempDir()
	goBuild(t, dir, pkg)
	return filepath.Join(dir, filepath.Base(pkg))
}
