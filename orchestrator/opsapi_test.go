package orchestrator_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/testenv"
	"github.com/rideshare-dbaas/rideshare/orchestrator"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The operators' routes that need no cluster: the page, its redirects,
// the Traefik proxy's refusals, the events query, the scale validation.
func TestOpsAPI_WithoutCluster(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // nothing listens there any more
	o, err := orchestrator.New(orchestrator.Options{Listen: "127.0.0.1:0", AMQPURL: "amqp://x:y@127.0.0.1:1/",
		ZKServers: []string{"127.0.0.1:1"}, Runtime: &orchestrator.Process{}, Dev: true, TraefikAPI: deadURL})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(o.Handler())
	defer srv.Close()
	noTraefik, err := orchestrator.New(orchestrator.Options{Listen: "127.0.0.1:0", AMQPURL: "amqp://x:y@127.0.0.1:1/",
		ZKServers: []string{"127.0.0.1:1"}, Runtime: &orchestrator.Process{}, Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(noTraefik.Handler())
	defer srv2.Close()

	tests := []struct {
		name, method, url, body string
		want                    int
		contains                string
	}{
		{"page redirect", "GET", srv.URL + "/", "", 302, ""},
		{"ui redirect", "GET", srv.URL + "/ui", "", 301, ""},
		{"page", "GET", srv.URL + "/ui/", "", 200, `<table id="workers">`},
		{"script", "GET", srv.URL + "/ui/app.js", "", 200, "api/v1/cluster"},
		{"no such file", "GET", srv.URL + "/ui/nope.js", "", 404, ""},
		{"healthz", "GET", srv.URL + "/healthz", "", 200, "ok"},
		{"metrics", "GET", srv.URL + "/metrics", "", 200, "rideshare_dbaas_desired_slaves"},
		{"events", "GET", srv.URL + "/api/v1/events?after=0", "", 200, "[]"},
		{"events bad after", "GET", srv.URL + "/api/v1/events?after=-1", "", 400, "after"},
		{"traefik other kind", "GET", srv.URL + "/api/v1/traefik/http/middlewares", "", 404, "only routers and services"},
		{"traefik down", "GET", srv.URL + "/api/v1/traefik/http/routers", "", 502, "does not answer"},
		{"no traefik configured", "GET", srv2.URL + "/api/v1/traefik/http/services", "", 404, "--traefik-api"},
		{"scale without slaves", "PUT", srv.URL + "/api/v1/scale", `{}`, 400, "slaves"},
		{"scale out of range", "PUT", srv.URL + "/api/v1/scale", `{"slaves": 0}`, 400, "out of range"},
		{"scale not JSON", "PUT", srv.URL + "/api/v1/scale", `{"slaves": "two"}`, 400, "integer"},
		{"scale state", "GET", srv.URL + "/api/v1/scale", "", 200, `"pinned":null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st int
			var body string
			if tt.method == "GET" {
				st, body = get(t, tt.url)
			} else {
				st, body = do(t, tt.method, tt.url, tt.body)
			}
			if st != tt.want || !strings.Contains(body, tt.contains) {
				t.Fatalf("%s %s: %d %q, want %d containing %q", tt.method, tt.url, st, body, tt.want, tt.contains)
			}
		})
	}
}

// A cluster whose workers never come up: nothing to crash (409), writes
// and clears time out (503), not ready (503).
func TestOpsAPI_NoWorkers(t *testing.T) {
	testenv.RequireServers(t)
	name := testenv.Name(t)
	rt, err := orchestrator.NewProcess(orchestrator.ProcessOptions{Binary: "/bin/false", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	o, err := orchestrator.New(orchestrator.Options{
		Listen: "127.0.0.1:0", AMQPURL: testenv.AMQPURL(), ZKServers: testenv.ZKServers(), Dev: true,
		ZKRoot: "/test-" + name, QueuePrefix: name + ".", Runtime: rt,
		WriteTimeout: time.Second, ReadTimeout: time.Second, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := o.Listen()
	done := runInBackground(t, o)
	defer func() { done(); _ = rt.Close(true); cleanupBroker(t, name+"."); cleanupZK(t, "/test-"+name) }()
	url := "http://" + addr.String()
	testenv.Eventually(t, 20*time.Second, "the orchestrator answers and RabbitMQ is connected", func() (bool, string) {
		var c orchestrator.Cluster
		st, body := get(t, url+"/api/v1/cluster")
		_ = json.Unmarshal([]byte(body), &c)
		return st == 200 && c.RabbitMQ, body
	})
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"POST", "/api/v1/crash/master", 409},
		{"POST", "/api/v1/crash/slave", 409},
		{"POST", "/api/v1/db/clear", 503},
		{"GET", "/readyz", 503},
	} {
		if st, body := do(t, c.method, url+c.path, ""); st != c.want {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, st, body, c.want)
		}
	}
	if st, body := do(t, "POST", url+"/api/v1/db/read", `{"op":"users.list"}`); st != 503 || !strings.Contains(body, "no slave answered") {
		t.Errorf("read without a slave: %d %s, want 503", st, body)
	}
	st, body := do(t, "POST", url+"/api/v1/db/write", `{"op":"users.add","params":{},"id":"x"}`)
	if st != 503 || !strings.Contains(body, "may have been applied") || !strings.Contains(body, "retrying it with the same") {
		t.Errorf("write without a master: %d %s, want 503 saying a retry with the same id is safe", st, body)
	}
}

// Refusals and failures through a real stack: not_found on reads and
// writes (404), an oversized read (413), and handlers that fail (502:
// workers whose handler deadline is 1 ns).
func TestOpsAPI_RefusalsAndFailures(t *testing.T) {
	t.Run("refusals", func(t *testing.T) {
		s := mustStartStack(t, func(o *orchestrator.Options) { o.MaxBody = 4096 })
		for _, c := range []struct {
			path, body string
			want       int
		}{
			{"/api/v1/db/read", `{"op":"rides.get","params":{"rideId":424242}}`, 404},
			{"/api/v1/db/write", `{"op":"users.delete","params":{"username":"nobody"}}`, 404},
			{"/api/v1/db/read", `{"op":"users.list","params":{"pad":"` + strings.Repeat("x", 5000) + `"}}`, 413},
			{"/api/v1/db/clear", `{"id":"` + strings.Repeat("x", 5000) + `"}`, 413},
		} {
			if st, _, raw := s.call("POST", c.path, c.body); st != c.want {
				t.Errorf("%s %.60s: %d %s, want %d", c.path, c.body, st, raw, c.want)
			}
		}
	})
	t.Run("handler failures", func(t *testing.T) {
		dir := t.TempDir()
		var rt *orchestrator.Process
		s := mustStartStack(t, func(o *orchestrator.Options) {
			var err error
			rt, err = orchestrator.NewProcess(orchestrator.ProcessOptions{
				Binary: testenv.Bin(t, "worker"), DataDir: dir, Logger: o.Logger, Env: testenv.AMQPEnv(),
				Args: []string{"--zk-servers", strings.Join(o.ZKServers, ","), "--zk-root", o.ZKRoot,
					"--queue-prefix", o.QueuePrefix, "--zk-timeout", "2s", "--op-timeout", "1ns", "--write-op-timeout", "1ns"},
			})
			if err != nil {
				t.Fatal(err)
			}
			o.Runtime = rt
		})
		s.rt = rt
		for _, c := range []struct{ path, body string }{
			{"/api/v1/db/write", `{"op":"users.add","params":{"username":"u","password":"p"}}`},
			{"/api/v1/db/read", `{"op":"users.list"}`},
		} {
			st, m, raw := s.call("POST", c.path, c.body)
			if st != 502 || m["handler"] != "rideshare" {
				t.Errorf("%s with a 1 ns handler deadline: %d %s, want 502 naming the handler", c.path, st, raw)
			}
		}
	})
}
