package orchestrator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rideshare-dbaas/rideshare/internal/httpx"
	"github.com/rideshare-dbaas/rideshare/internal/opscli"
	"github.com/rideshare-dbaas/rideshare/internal/testenv"
	"github.com/rideshare-dbaas/rideshare/orchestrator"
	"github.com/rideshare-dbaas/rideshare/services/rides"
	"github.com/rideshare-dbaas/rideshare/services/users"
	"github.com/rideshare-dbaas/rideshare/traefik"
)

// opsStack is a whole stack as operators see it: the DBaaS (in-process
// orchestrator, worker processes), the real users and rides services and
// a real Traefik in front of them, whose API the orchestrator proxies.
type opsStack struct {
	*stack
	lbURL, apiURL string
}

func mustStartOpsStack(t *testing.T, tweak ...func(*orchestrator.Options)) *opsStack {
	t.Helper()
	traefikBin := testenv.Traefik(t)
	lbPort, apiPort := testenv.FreePort(t), testenv.FreePort(t)
	o := &opsStack{lbURL: fmt.Sprintf("http://127.0.0.1:%d", lbPort), apiURL: fmt.Sprintf("http://127.0.0.1:%d", apiPort)}
	o.stack = mustStartStack(t, append([]func(*orchestrator.Options){func(opts *orchestrator.Options) {
		opts.TraefikAPI = o.apiURL
	}}, tweak...)...)

	cfg := httpx.Config{DBaaSURL: o.url, Logger: testLogger(t)}
	us, err := users.New(users.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	usrv := httptest.NewServer(us.Handler())
	t.Cleanup(usrv.Close)
	rs, err := rides.New(rides.Options{Config: cfg, UsersURL: o.lbURL, PublicURL: "http://rides.test"})
	if err != nil {
		t.Fatal(err)
	}
	rsrv := httptest.NewServer(rs.Handler())
	t.Cleanup(rsrv.Close)

	runTraefik(t, traefikBin, lbPort, apiPort, map[string][]string{"users": {usrv.URL}, "rides": {rsrv.URL}})
	return o
}

// runTraefik runs bin Traefik with the stack's configuration (package
// traefik) on lbPort and apiPort in front of servers, until the test ends;
// it returns once Traefik's API answers, and the directory holding its
// logs (access.log).
func runTraefik(t *testing.T, bin string, lbPort, apiPort int, servers map[string][]string) string {
	t.Helper()
	dir := t.TempDir()
	static, err := traefik.Render(dir, lbPort, apiPort, servers)
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--configFile="+static)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited); logf.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	api := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	testenv.Eventually(t, 60*time.Second, "Traefik's API answers", func() (bool, string) {
		resp, err := http.Get(api + "/api/rawdata")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
	return dir
}

// chromium returns Debian's chromium (make test installs it), skipping or,
// under RIDESHARE_REQUIRE_CHROMIUM, failing when it is missing.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "the cluster page test needs Chromium: run `make chromium` (scripts/chromium.sh)"
	if os.Getenv("RIDESHARE_REQUIRE_CHROMIUM") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// TestOps_ClusterPageAndCLI drives the live cluster page in a real headless
// Chromium (load it, see the workers, press crash slave, see the
// replacement appear, see Traefik's routers), then the rideshare CLI
// against the same stack.
func TestOps_ClusterPageAndCLI(t *testing.T) {
	browser := chromium(t)
	s := mustStartOpsStack(t)
	s.waitShape(1, 90*time.Second)

	t.Run("page", func(t *testing.T) { testClusterPage(t, s, browser) })
	t.Run("cli", func(t *testing.T) { testCLI(t, s) })
}

func testClusterPage(t *testing.T, s *opsStack, browser string) {
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(browser),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 1100),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	defer cancelCtx()
	// The first action starts the browser; it must not run under a
	// timeout (that would stop the browser), the later ones do.
	if err := chromedp.Do(bctx, chromedp.Navigate(s.url+"/")); err != nil {
		t.Fatalf("load the page: %v", err)
	}
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(what, expr string, out any) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](expr))
		if err == nil {
			err = json.Unmarshal(v, out)
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	type worker struct {
		ID, Role, State, Metrics string
		PID                      int
	}
	workers := func() []worker {
		var ws []worker
		eval("read the workers table", `Array.from(document.querySelectorAll("#workers tr.worker")).map(r => ({
			ID: r.dataset.id, Role: r.dataset.role, State: r.dataset.state, Metrics: r.dataset.metrics, PID: Number(r.dataset.pid)}))`, &ws)
		return ws
	}
	do("see the workers table", chromedp.WaitVisible(chromedp.CSS("#workers tr.worker")))

	// The page shows what the API says: one master and one slave.
	var before []worker
	testenv.Eventually(t, 30*time.Second, "the page shows a ready master and a ready slave", func() (bool, string) {
		before = workers()
		roles := map[string]int{}
		for _, w := range before {
			if w.State == "ready" {
				roles[w.Role]++
			}
		}
		return len(before) == 2 && roles["master"] == 1 && roles["slave"] == 1, fmt.Sprintf("%+v", before)
	})
	var slavePID int
	for _, w := range before {
		if w.Role == "slave" {
			slavePID = w.PID
		}
	}
	api := s.workers()
	if len(api) != 2 || !slices.ContainsFunc(api, func(v orchestrator.WorkerView) bool { return v.PID == slavePID }) {
		t.Fatalf("page shows %+v, the API %+v", before, api)
	}
	// Each row shows the metrics address the API lists for that worker.
	for _, w := range before {
		if w.Metrics == "" || !slices.ContainsFunc(api, func(v orchestrator.WorkerView) bool { return v.ID == w.ID && v.Metrics == w.Metrics }) {
			t.Errorf("page row %+v: metrics address missing or not the API's %+v", w, api)
		}
	}
	var plugins string
	eval("read the plugins", `document.querySelector("#plugins tbody").textContent`, &plugins)
	if !strings.Contains(plugins, "rideshare") {
		t.Errorf("plugins panel %q does not list rideshare", plugins)
	}

	// Dev mode: the crash buttons are there. Press crash slave.
	do("press crash slave", chromedp.WaitVisible(chromedp.ID("crash-slave")), chromedp.Click(chromedp.ID("crash-slave")))
	var result string
	testenv.Eventually(t, 30*time.Second, "the page says which pid it killed", func() (bool, string) {
		eval("read the action result", `document.getElementById("action-result").textContent`, &result)
		return result == "killed pid "+strconv.Itoa(slavePID), result
	})
	// The replacement appears: a new ready slave, the killed pid gone.
	testenv.Eventually(t, 90*time.Second, "the page shows the replacement slave", func() (bool, string) {
		ws := workers()
		fresh := false
		for _, w := range ws {
			if w.PID == slavePID {
				return false, fmt.Sprintf("killed pid %d still shown: %+v", slavePID, ws)
			}
			if w.Role == "slave" && w.State == "ready" && !slices.ContainsFunc(before, func(b worker) bool { return b.PID == w.PID }) {
				fresh = true
			}
		}
		return fresh && len(ws) == 2, fmt.Sprintf("%+v", ws)
	})
	testenv.Eventually(t, 30*time.Second, "the events show the crash and the respawn", func() (bool, string) {
		var kinds []string
		eval("read the events", `Array.from(document.querySelectorAll("#events li")).map(li => li.dataset.kind)`, &kinds)
		return slices.Contains(kinds, "crash") && slices.Contains(kinds, "respawn"), fmt.Sprint(kinds)
	})

	// The routing view, from Traefik's API through the orchestrator.
	testenv.Eventually(t, 30*time.Second, "the page shows Traefik's routers and services", func() (bool, string) {
		var routers, services []string
		eval("read the routers", `Array.from(document.querySelectorAll("#routers tr.router")).map(r => r.dataset.name)`, &routers)
		eval("read the services", `Array.from(document.querySelectorAll("#services tr.service")).map(r => r.dataset.name)`, &services)
		return slices.Contains(routers, "users@file") && slices.Contains(routers, "rides@file") &&
			slices.Contains(services, "users@file") && slices.Contains(services, "rides@file"), fmt.Sprint(routers, services)
	})

	// docs/cluster-page.png is made by this test: RIDESHARE_SCREENSHOT=path.
	if path := os.Getenv("RIDESHARE_SCREENSHOT"); path != "" {
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot in %s", path)
	}
}

// rideshareCLI runs the CLI in-process and returns its exit code and output.
func rideshareCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := opscli.Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func testCLI(t *testing.T, s *opsStack) {
	u := "--url=" + s.url
	code, out, errOut := rideshareCLI(t, u, "status")
	if code != opscli.ExitOK || !strings.Contains(out, "DBaaS ready") || !strings.Contains(out, "dev mode") {
		t.Fatalf("status: %d %q %q", code, out, errOut)
	}
	code, out, _ = rideshareCLI(t, u, "workers", "--json")
	var ws []orchestrator.WorkerView
	if code != 0 || json.Unmarshal([]byte(out), &ws) != nil || len(ws) != 2 || ws[0].Metrics == "" || ws[1].Metrics == "" {
		t.Fatalf("workers --json (each with its metrics address): %d %q", code, out)
	}
	code, out, _ = rideshareCLI(t, u, "workers")
	if code != 0 || !strings.HasPrefix(out, "ID") || strings.Count(out, "\n") != 3 || !strings.Contains(out, "METRICS") || !strings.Contains(out, ws[0].Metrics) {
		t.Fatalf("workers table (with a METRICS column): %d %q", code, out)
	}

	// plugins: what the workers loaded, with the manifest's checksums.
	manifest, err := os.ReadFile(filepath.Join(filepath.Dir(s.bin), "plugins", "plugins.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Plugins []struct{ Name, SHA256 string }
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		t.Fatal(err)
	}
	code, out, _ = rideshareCLI(t, u, "plugins", "--json")
	var ps []orchestrator.LoadedPlugin
	if code != 0 || json.Unmarshal([]byte(out), &ps) != nil || len(ps) != len(m.Plugins) {
		t.Fatalf("plugins --json: %d %q, manifest %s", code, out, manifest)
	}
	for i, p := range ps {
		if p.Name != m.Plugins[i].Name || p.SHA256 != m.Plugins[i].SHA256 || p.Version == "" || len(p.Workers) != 2 {
			t.Errorf("plugin %+v, manifest entry %+v", p, m.Plugins[i])
		}
	}

	// scale: pin 2 slaves, see a third worker, hand back to the autoscaler.
	code, out, _ = rideshareCLI(t, u, "scale", "2", "--json")
	var st orchestrator.ScaleState
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Pinned == nil || *st.Pinned != 2 || st.Slaves != 2 {
		t.Fatalf("scale 2: %d %q", code, out)
	}
	s.waitShape(2, 90*time.Second)
	code, out, _ = rideshareCLI(t, u, "scale", "auto")
	if code != 0 || !strings.Contains(out, "pinned") || !strings.Contains(out, "no (the autoscaler decides)") {
		t.Fatalf("scale auto: %d %q", code, out)
	}
	s.waitShape(1, 90*time.Second)
	code, out, _ = rideshareCLI(t, u, "events", "--json")
	var evs []orchestrator.Event
	if code != 0 || json.Unmarshal([]byte(out), &evs) != nil {
		t.Fatalf("events: %d %q", code, out)
	}
	if !slices.ContainsFunc(evs, func(e orchestrator.Event) bool {
		return e.Kind == "scale" && strings.Contains(e.Message, "pinned at 2")
	}) ||
		!slices.ContainsFunc(evs, func(e orchestrator.Event) bool { return e.Kind == "stop" }) {
		t.Errorf("events lack the pin and the scale-in: %+v", evs)
	}

	// Exit codes that mean something.
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"unknown command", []string{u, "explode"}, opscli.ExitUsage},
		{"crash what", []string{u, "crash", "everything"}, opscli.ExitUsage},
		{"scale garbage", []string{u, "scale", "lots"}, opscli.ExitUsage},
		{"scale out of range", []string{u, "scale", "1000"}, opscli.ExitRefused},
		{"unreachable", []string{"--url=http://127.0.0.1:1", "status"}, opscli.ExitUnreachable},
	}
	for _, tt := range tests {
		if code, out, errOut := rideshareCLI(t, tt.args...); code != tt.code {
			t.Errorf("%s: exit %d, want %d (%q %q)", tt.name, code, tt.code, out, errOut)
		}
	}
	code, out, _ = rideshareCLI(t, u, "watch", "--count", "2", "--interval", "200ms")
	if code != 0 || strings.Count(out, "DBaaS ready") != 2 || !strings.Contains(out, "APPLIED") {
		t.Fatalf("watch: %d %q", code, out)
	}
	code, out, _ = rideshareCLI(t, u, "crash", "slave")
	if code != 0 || !strings.HasPrefix(out, "killed the slave, pid ") {
		t.Fatalf("crash slave: %d %q", code, out)
	}
}
