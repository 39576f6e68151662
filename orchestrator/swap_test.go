package orchestrator_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/httpx"
	"github.com/rideshare-dbaas/rideshare/internal/pluginsig"
	"github.com/rideshare-dbaas/rideshare/internal/testenv"
	"github.com/rideshare-dbaas/rideshare/orchestrator"
	"github.com/rideshare-dbaas/rideshare/services/rides"
	"github.com/rideshare-dbaas/rideshare/worker/pluginhost"
	_ "modernc.org/sqlite"
)

// TestSwap_StatsPluginAddedWithoutRestart is the plugin swap of
// docs/plugins.md ("Ship a new operation: the stats example"), end to end
// with real processes: a DBaaS whose workers load only the rideshare
// plugin gets the stats plugin by its binary and a manifest entry, under a
// load of reads and writes. No request fails, no worker restarts, every
// worker serves the new operations, and the master applies the plugin's
// migration, which reaches the slaves by replication.
func TestSwap_StatsPluginAddedWithoutRestart(t *testing.T) {
	testenv.RequireServers(t)
	testSwap(t, func(o *orchestrator.Options, pluginDir, workersDir string) orchestrator.Runtime {
		return processWithPlugins(t, o, pluginDir, workersDir)
	})
}

// processWithPlugins is a process runtime for o's stack whose workers
// (logging at trace level: every request's line) load their plugins from pluginDir, signed with
// swapKey, and keep their data and logs in workersDir.
func processWithPlugins(t *testing.T, o *orchestrator.Options, pluginDir, workersDir string) orchestrator.Runtime {
	t.Helper()
	rt, err := orchestrator.NewProcess(orchestrator.ProcessOptions{
		Binary:        testenv.Bin(t, "worker"),
		DataDir:       workersDir,
		Logger:        o.Logger,
		DieWithParent: true,
		Env:           []string{"RIDESHARE_AMQP_URL=" + o.AMQPURL, "RIDESHARE_AMQP_URL_FILE=", swapKeyEnv(), pluginsig.EnvPublicKeyFile + "="},
		Args: []string{"--zk-servers", strings.Join(o.ZKServers, ","),
			"--zk-root", o.ZKRoot, "--queue-prefix", o.QueuePrefix, "--zk-timeout", "2s",
			"--log-level", "trace", "--plugin-dir", pluginDir},
	})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// TestSwap_DockerStatsPluginAddedWithoutRestart is the same swap with the
// workers in containers: the plugin folder is bind-mounted (read-only)
// over the image's /plugins, and the workers load and swap the plugins
// inside their containers (go-plugin's sockets in the tmpfs /tmp) exactly
// as processes do.
func TestSwap_DockerStatsPluginAddedWithoutRestart(t *testing.T) {
	testenv.RequireServers(t)
	cli := testenv.RequireDocker(t)
	image := testenv.WorkerImage(t, cli)
	testSwap(t, func(o *orchestrator.Options, pluginDir, workersDir string) orchestrator.Runtime {
		stack := strings.TrimPrefix(o.ZKRoot, "/")
		t.Cleanup(func() {
			if left := testenv.StackContainers(t, cli, stack); len(left) > 0 {
				t.Errorf("containers left behind: %v", left)
			}
		})
		rt, err := orchestrator.NewDocker(context.Background(), orchestrator.DockerOptions{
			Stack: stack, Image: image, DataDir: workersDir, PluginDir: pluginDir, Logger: o.Logger, Client: cli,
			Env: []string{swapKeyEnv()}, // the image's own key signs bin/plugins, not the test's manifests
			Args: []string{"--amqp-url", o.AMQPURL, "--zk-servers", strings.Join(o.ZKServers, ","),
				"--zk-root", o.ZKRoot, "--queue-prefix", o.QueuePrefix, "--zk-timeout", "2s", "--log-level", "debug"},
		})
		if err != nil {
			t.Fatal(err)
		}
		return rt
	})
}

// testSwap runs the swap with the runtime newRuntime makes, whose workers
// load their plugins from pluginDir and keep their data in workersDir.
func testSwap(t *testing.T, newRuntime func(o *orchestrator.Options, pluginDir, workersDir string) orchestrator.Runtime) {
	bins := buildPlugins(t, "rideshare", "stats")

	// A plugin directory with rideshare only, readable by every worker
	// (containers run them as another user).
	pluginDir := t.TempDir()
	if err := os.Chmod(pluginDir, 0o755); err != nil {
		t.Fatal(err)
	}
	installPlugin(t, pluginDir, bins["rideshare"], "rideshare-plugin")
	writeManifest(t, pluginDir, "rideshare")

	// The stack's workers use that directory; two slaves, fixed, so the
	// autoscaler starts or stops no worker during the test.
	workersDir := t.TempDir()
	s := mustStartStack(t, func(o *orchestrator.Options) {
		rt := newRuntime(o, pluginDir, workersDir)
		t.Cleanup(func() { _ = rt.Close(true) }) // if the stack never comes up
		o.Runtime = rt
		o.Scale.MinSlaves, o.Scale.MaxSlaves = 2, 2
	})
	t.Cleanup(func() {
		if t.Failed() {
			dumpWorkerLogs(t, workersDir)
		}
	})
	before := s.waitShape(2, 60*time.Second)

	// Some data to count: users u0..u3, rides with joins.
	for i := range 4 {
		mustWrite(t, s, "users.add", map[string]any{"username": fmt.Sprintf("u%d", i), "password": "p"})
	}
	for i, r := range [][3]int{{0, 1, 2}, {0, 1, 3}, {1, 2, 1}, {2, 5, 4}} {
		mustWrite(t, s, "rides.create", map[string]any{"created_by": fmt.Sprintf("u%d", r[0]),
			"timestamp": 1000 + i, "source": r[1], "destination": r[2]})
	}
	mustWrite(t, s, "rides.join", map[string]any{"rideId": 1, "username": "u3"})
	mustWrite(t, s, "rides.join", map[string]any{"rideId": 3, "username": "u3"})

	// Without the plugin, stats.top_users is an unknown operation, and the
	// rides service says the plugin is not installed.
	st, m := s.read("stats.top_users", map[string]any{"limit": 3})
	if st != 400 || !strings.Contains(fmt.Sprint(m["error"]), `unknown read operation "stats.top_users"`) || m["code"] != nil {
		t.Fatalf("stats.top_users before the swap: %d %v, want 400 unknown read operation", st, m)
	}
	ridesURL := startRidesService(t, s.url)
	if code, body := httpGet(t, ridesURL+"/api/v1/rides/stats"); code != 501 || !strings.Contains(body, "stats plugin is not installed") {
		t.Fatalf("GET /api/v1/rides/stats before the swap: %d %s, want 501", code, body)
	}

	// A load of writes and reads through the swap.
	load := startLoad(t, s.url, 4)

	load.waitFor(t, 40) // the load runs before the swap
	swapAt := time.Now()
	// The swap: the binary first (renamed into place), then the manifest
	// (pluginhost.Manifest.WriteFile renames too). Nothing else.
	installPlugin(t, pluginDir, bins["stats"], "stats-plugin")
	writeManifest(t, pluginDir, "rideshare", "stats")

	// Every worker logs the reload, having started only the new plugin.
	ids := make([]string, 0, len(before))
	for _, w := range before {
		ids = append(ids, w.ID)
	}
	testenv.Eventually(t, 20*time.Second, "every worker loaded the stats plugin", func() (bool, string) {
		var missing []string
		for _, id := range ids {
			if !loadedStats(t, workersDir, id) {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0, fmt.Sprintf("not yet: %v", missing)
	})
	loadedAt := time.Now()
	// From now on every slave has it: every read of the new operations
	// must succeed (RabbitMQ spreads them over both slaves).
	for i := range 20 {
		st, m := s.read("stats.top_users", map[string]any{"limit": 3})
		if st != 200 {
			t.Fatalf("stats.top_users #%d after every worker reloaded: %d %v", i, st, m)
		}
	}
	st, m = s.read("stats.rides_per_area", map[string]any{"limit": 2})
	if st != 200 {
		t.Fatalf("stats.rides_per_area: %d %v", st, m)
	}
	// The rides service serves its endpoint now, through the same DBaaS.
	code, body := httpGet(t, ridesURL+"/api/v1/rides/stats?limit=2")
	if code != 200 {
		t.Fatalf("GET /api/v1/rides/stats after the swap: %d %s", code, body)
	}
	var got rides.Stats
	if err := json.Unmarshal([]byte(body), &got); err != nil || len(got.Areas) == 0 || len(got.TopUsers) != 2 {
		t.Fatalf("GET /api/v1/rides/stats: %s (%v)", body, err)
	}
	// u0 created 2 rides and u3 joined 2: both beat everyone else (the
	// load's users create one ride each); equal activity, so the one who
	// created more comes first.
	if got.TopUsers[0].Username != "u0" || got.TopUsers[1].Username != "u3" {
		t.Fatalf("top users %+v, want u0 then u3", got.TopUsers)
	}

	load.waitFor(t, 40) // and after it
	res := load.stop()
	t.Logf("load: %d requests, %d in flight across the reload window (%s), 0 failed",
		res.total, res.spanning(swapAt, loadedAt), loadedAt.Sub(swapAt).Round(time.Millisecond))
	if len(res.failures) > 0 {
		t.Fatalf("%d of %d requests failed during the swap, e.g.:\n%s", len(res.failures), res.total,
			strings.Join(res.failures[:min(5, len(res.failures))], "\n"))
	}
	if res.before(swapAt) == 0 || res.after(loadedAt) == 0 {
		t.Fatalf("the load did not run across the swap: %d before, %d after", res.before(swapAt), res.after(loadedAt))
	}

	// No worker restarted: same ids, same pids, and the runtime saw no exit.
	after := s.waitShape(2, 30*time.Second)
	if !slices.Equal(pidMap(before), pidMap(after)) {
		t.Fatalf("workers changed across the swap:\nbefore %+v\nafter  %+v", before, after)
	}
	// The master applied the stats migration once, after the reload; the
	// slaves have its index by replication (all are at the master's seq).
	var master string
	for _, w := range after {
		if w.Role == "master" {
			master = w.ID
		}
	}
	if n := countLogLines(t, workersDir, master, func(l logLine) bool {
		return l.Msg == "migration applied" && l.Handler == "stats"
	}); n != 1 {
		t.Fatalf("master %s logged the stats migration %d times, want 1", master, n)
	}
	for _, id := range ids {
		if !hasIndex(t, filepath.Join(workersDir, id, "db.sqlite"), "stats_rides_destination") {
			t.Errorf("worker %s has no stats_rides_destination index", id)
		}
	}
}

// ---- plugin directory ----

// buildPlugins builds worker/plugins/<name>/cmd/<name>-plugin for each name
// (static, like scripts/build-plugins.sh) into a temporary directory.
func buildPlugins(t *testing.T, names ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	var pkgs []string
	out := map[string]string{}
	for _, n := range names {
		pkgs = append(pkgs, "./worker/plugins/"+n+"/cmd/"+n+"-plugin")
		out[n] = filepath.Join(dir, n+"-plugin")
	}
	goBuild(t, dir, pkgs...)
	return out
}

// goBuild builds the commands pkgs (paths from the repository's root),
// static, into dir.
func goBuild(t *testing.T, dir string, pkgs ...string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	args := append([]string{"build", "-trimpath", "-o", dir + string(filepath.Separator)}, pkgs...)
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		gobin = p
	}
	cmd := exec.Command(gobin, args...)
	cmd.Dir = filepath.Join(filepath.Dir(file), "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
}

// installPlugin copies bin into dir as file: into a temporary name first,
// then renamed, so the directory never holds half a binary.
func installPlugin(t *testing.T, dir, bin, file string) {
	t.Helper()
	src, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "."+file+".tmp")
	if err := os.WriteFile(tmp, src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, file)); err != nil {
		t.Fatal(err)
	}
}

// writeManifest writes dir's manifest listing the plugins names (file
// <name>-plugin, SHA-256 of the installed binary), atomically.
func writeManifest(t *testing.T, dir string, names ...string) {
	t.Helper()
	var m pluginhost.Manifest
	for _, n := range names {
		sum, err := pluginhost.FileSHA256(filepath.Join(dir, n+"-plugin"))
		if err != nil {
			t.Fatal(err)
		}
		m.Plugins = append(m.Plugins, pluginhost.ManifestEntry{Name: n, File: n + "-plugin", SHA256: sum})
	}
	if err := m.WriteSignedFile(filepath.Join(dir, pluginhost.ManifestName), swapKey); err != nil {
		t.Fatal(err)
	}
}

// swapKey signs the swap test's manifests; its workers get the public key
// in their environment.
var swapKey = ed25519.NewKeyFromSeed([]byte("rideshare swap test signing key!"))

func swapKeyEnv() string {
	return pluginsig.EnvPublicKey + "=" + pluginsig.EncodePublicKey(swapKey.Public().(ed25519.PublicKey))
}

// ---- worker logs ----

type logLine struct {
	Msg     string   `json:"msg"`
	Plugins []string `json:"plugins"`
	Started int      `json:"started"`
	Handler string   `json:"handler"`
}

func countLogLines(t *testing.T, dir, id string, match func(logLine) bool) int {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, id+".log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && match(l) {
			n++
		}
	}
	return n
}

// loadedStats reports whether worker id logged a reload that added stats
// and started only it (rideshare kept its process).
func loadedStats(t *testing.T, dir, id string) bool {
	return countLogLines(t, dir, id, func(l logLine) bool {
		return l.Msg == "plugins loaded" && l.Started == 1 &&
			slices.ContainsFunc(l.Plugins, func(p string) bool { return strings.HasPrefix(p, "stats@") })
	}) > 0
}

func dumpWorkerLogs(t testing.TB, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 60 {
			lines = lines[len(lines)-60:]
		}
		t.Logf("---- %s (last %d lines)\n%s", filepath.Base(f), len(lines), strings.Join(lines, "\n"))
	}
}

// hasIndex opens a worker's live database read-only and looks for index.
func hasIndex(t *testing.T, path, index string) bool {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?`, index).Scan(&n); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n == 1
}

func pidMap(v []orchestrator.WorkerView) []string {
	out := make([]string, 0, len(v))
	for _, w := range v {
		out = append(out, fmt.Sprintf("%s=%d", w.ID, w.PID))
	}
	slices.Sort(out)
	return out
}

// ---- requests ----

func mustWrite(t *testing.T, s *stack, op string, params any) {
	t.Helper()
	if st, m := s.write(op, params); st != 200 {
		t.Fatalf("%s %v: %d %v", op, params, st, m)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startRidesService runs the rides service against the DBaaS at dbaasURL
// (users are never checked: the test only calls the stats route).
func startRidesService(t *testing.T, dbaasURL string) string {
	t.Helper()
	svc, err := rides.New(rides.Options{
		Config:   httpx.Config{DBaaSURL: dbaasURL, Logger: testLogger(t)},
		UsersURL: "http://127.0.0.1:1", PublicURL: "http://rides.test",
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// load runs clients that each loop: add a user, create a ride, read it
// back, count rides. Every request must answer 200.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	res    loadResult
}

type loadResult struct {
	total    int
	failures []string
	spans    [][2]time.Time // start, end of every request
}

func (r loadResult) before(t time.Time) (n int) {
	for _, s := range r.spans {
		if s[1].Before(t) {
			n++
		}
	}
	return n
}

func (r loadResult) after(t time.Time) (n int) {
	for _, s := range r.spans {
		if s[0].After(t) {
			n++
		}
	}
	return n
}

// spanning counts requests in flight at some point between from and to.
func (r loadResult) spanning(from, to time.Time) (n int) {
	for _, s := range r.spans {
		if s[0].Before(to) && s[1].After(from) {
			n++
		}
	}
	return n
}

var loadSeq atomic.Int64

func startLoad(t *testing.T, base string, clients int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	hc := &http.Client{Timeout: 30 * time.Second}
	do := func(path string, body map[string]any) (int, map[string]any, error) {
		j, _ := json.Marshal(body)
		start := time.Now()
		resp, err := hc.Post(base+path, "application/json", bytes.NewReader(j))
		var m map[string]any
		st := 0
		if err == nil {
			st = resp.StatusCode
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			_ = json.Unmarshal(raw, &m)
		}
		l.mu.Lock()
		l.res.total++
		l.res.spans = append(l.res.spans, [2]time.Time{start, time.Now()})
		if err != nil || st != 200 {
			l.res.failures = append(l.res.failures, fmt.Sprintf("%s %v: %d %v %v", path, body, st, m, err))
		}
		l.mu.Unlock()
		if err == nil && st != 200 {
			err = errors.New("failed")
		}
		return st, m, err
	}
	for c := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				n := loadSeq.Add(1)
				name := fmt.Sprintf("load%06d", n)
				if _, _, err := do("/api/v1/db/write", map[string]any{"op": "users.add",
					"params": map[string]any{"username": name, "password": "p"}}); err != nil {
					continue
				}
				_, m, err := do("/api/v1/db/write", map[string]any{"op": "rides.create",
					"params": map[string]any{"created_by": name, "timestamp": n, "source": 10 + c, "destination": 20 + c}})
				if err != nil {
					continue
				}
				id := m["result"].(map[string]any)["rideId"]
				_, _, _ = do("/api/v1/db/read", map[string]any{"op": "rides.get", "params": map[string]any{"rideId": id}})
				_, _, _ = do("/api/v1/db/read", map[string]any{"op": "rides.count", "params": map[string]any{}})
			}
		}()
	}
	return l
}

// waitFor waits (with a deadline) until n more requests have completed.
func (l *load) waitFor(t *testing.T, n int) {
	t.Helper()
	l.mu.Lock()
	target := l.res.total + n
	l.mu.Unlock()
	testenv.Eventually(t, 30*time.Second, "load progressing", func() (bool, string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.res.total >= target, fmt.Sprintf("%d of %d requests", l.res.total, target)
	})
}

func (l *load) stop() loadResult {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.res
}
