package orchestrator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/moby/moby/client"
	"github.com/rideshare-dbaas/rideshare/internal/testenv"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
	"github.com/rideshare-dbaas/rideshare/orchestrator"
)

// dockerStack is what a docker-runtime test stack needs besides the stack.
type dockerStack struct {
	cli     *client.Client
	image   string
	dataDir string // the runtime's DataDir (host side)
	stack   string // the rideshare.stack label
}

// mustStartDockerStack starts a stack whose workers are containers of a
// worker image built for this test, and checks at the end that nothing of
// it is left: no container of its stack, no dangling image of ours.
func mustStartDockerStack(t testing.TB, tweak ...func(*orchestrator.Options, *orchestrator.DockerOptions)) (*stack, *dockerStack) {
	t.Helper()
	testenv.RequireServers(t)
	began := time.Now()
	d := &dockerStack{cli: testenv.RequireDocker(t), dataDir: t.TempDir()}
	d.image = testenv.WorkerImage(t, d.cli)
	// Registered before the stack's own cleanup, so it runs after it.
	t.Cleanup(func() {
		if left := testenv.StackContainers(t, d.cli, d.stack); len(left) > 0 {
			t.Errorf("containers left behind by stack %s: %v", d.stack, left)
		}
		if left := testenv.DanglingImages(t, d.cli, began, testenv.ImageVersion(t)); len(left) > 0 {
			t.Errorf("dangling images of ours left behind: %v", left)
		}
	})
	s := mustStartStack(t, func(o *orchestrator.Options) {
		d.stack = strings.TrimPrefix(o.ZKRoot, "/")
		opts := orchestrator.DockerOptions{
			Stack: d.stack, Image: d.image, DataDir: d.dataDir, Logger: o.Logger, Client: d.cli,
			Args: []string{"--amqp-url", o.AMQPURL, "--zk-servers", strings.Join(o.ZKServers, ","),
				"--zk-root", o.ZKRoot, "--queue-prefix", o.QueuePrefix, "--zk-timeout", "2s", "--log-level", "debug"},
		}
		for _, f := range tweak {
			f(o, &opts)
		}
		rt, err := orchestrator.NewDocker(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		o.Runtime = rt
	})
	t.Cleanup(func() {
		if t.Failed() {
			dumpWorkerLogs(t, d.dataDir)
		}
	})
	return s, d
}

// containers returns the stack's worker containers by worker id.
func (d *dockerStack) containers(t *testing.T, all bool) map[string]struct {
	Name, State string
	PID         int
} {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: all,
		Filters: client.Filters{}.Add("label", orchestrator.LabelStack+"="+d.stack)})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]struct {
		Name, State string
		PID         int
	}{}
	for _, c := range res.Items {
		in, err := d.cli.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
		if err != nil {
			continue
		}
		out[c.Labels[orchestrator.LabelWorker]] = struct {
			Name, State string
			PID         int
		}{strings.TrimPrefix(in.Container.Name, "/"), string(in.Container.State.Status), in.Container.State.Pid}
	}
	return out
}

// znodePIDs reads the pid every worker registered in ZooKeeper.
func znodePIDs(t *testing.T, root string) map[string]int {
	t.Helper()
	conn, _, err := zk.Connect(testenv.ZKServers(), 2*time.Second, zk.WithLogInfo(false), zk.WithLogger(quietZK{}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p := wire.WorkersPath(root)
	names, _, err := conn.Children(p)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, n := range names {
		data, _, err := conn.Get(p + "/" + n)
		if err != nil {
			continue
		}
		var info wire.WorkerInfo
		if json.Unmarshal(data, &info) == nil {
			out[n] = info.PID
		}
	}
	return out
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestDocker_WorkersAsContainers runs the DBaaS with its workers as
// containers and goes through what the runtime must do: pids as the host
// sees them everywhere, a container killed from outside (docker kill)
// replaced while its data is kept, crash/master, an orchestrator restart
// that adopts the live containers and removes a dead one, scale-in that
// removes a slave's container and data, and a cold restart that revives the
// last master on its own data. The cleanups check nothing is left behind.
func TestDocker_WorkersAsContainers(t *testing.T) {
	s, d := mustStartDockerStack(t, func(o *orchestrator.Options, _ *orchestrator.DockerOptions) {
		o.Scale.Window, o.Scale.MinSlaves, o.Scale.MaxSlaves = 5*time.Second, 1, 2
	})
	for i := range 5 {
		if st, m := s.write("users.add", map[string]any{"username": fmt.Sprintf("u%d", i), "password": "p"}); st != 200 {
			t.Fatalf("write: %d %v", st, m)
		}
	}
	before := s.waitShape(1, 60*time.Second)

	// The pids: worker/list, the orchestrator's view, State.Pid and the
	// worker's own znode agree, and each is a live host process.
	cs := d.containers(t, false)
	zp := znodePIDs(t, s.root())
	_, _, raw := s.call("GET", "/api/v1/worker/list", nil)
	var listed []int
	if err := json.Unmarshal(raw, &listed); err != nil {
		t.Fatalf("worker/list: %s", raw)
	}
	if fmt.Sprint(listed) != fmt.Sprint(pidsOf(before)) {
		t.Fatalf("worker/list %v, view %v", listed, pidsOf(before))
	}
	for _, w := range before {
		c, ok := cs[w.ID]
		if !ok || c.PID != w.PID || zp[w.ID] != w.PID || w.Runtime != "docker" {
			t.Fatalf("worker %+v: container %+v, znode pid %d", w, c, zp[w.ID])
		}
		if !exists(fmt.Sprintf("/proc/%d", w.PID)) {
			t.Fatalf("pid %d of worker %s is not a host process", w.PID, w.ID)
		}
		if c.Name != "rideshare-"+d.stack+"-"+w.ID {
			t.Fatalf("container name %q", c.Name)
		}
		// The container's /metrics (host network) answers at the address
		// the worker published.
		if v, ok := metricValue(mustScrape(t, w.Metrics), "rideshare_worker_role", `role="`+w.Role+`"`); !ok || v != 1 {
			t.Fatalf("worker %s's /metrics at %q: role %s = %v (%v)", w.ID, w.Metrics, w.Role, v, ok)
		}
	}
	st, m, raw := s.call("GET", "/readyz", nil)
	if st != 200 || m["runtime"] != "docker" {
		t.Fatalf("readyz: %d %s", st, raw)
	}
	// How the containers run.
	ctx := context.Background()
	in, err := d.cli.ContainerInspect(ctx, cs[before[0].ID].Name, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hc, cfg := in.Container.HostConfig, in.Container.Config
	if cfg.User != "65534:65534" || cfg.Image != d.image || hc.NetworkMode != "host" || hc.PidMode != "host" ||
		!hc.ReadonlyRootfs || !slices.Contains(hc.CapDrop, "ALL") {
		t.Fatalf("container config: user %q image %q network %q pid %q read-only %v capdrop %v",
			cfg.User, cfg.Image, hc.NetworkMode, hc.PidMode, hc.ReadonlyRootfs, hc.CapDrop)
	}

	// docker kill from outside: the slave is replaced; its data stays
	// (kept until the cap), its container goes.
	var slave orchestrator.WorkerView
	for _, w := range before {
		if w.Role == "slave" {
			slave = w
		}
	}
	if out, err := exec.Command("docker", "kill", cs[slave.ID].Name).CombinedOutput(); err != nil {
		t.Fatalf("docker kill: %v: %s", err, out)
	}
	after := s.waitShape(1, 60*time.Second, slave.PID)
	if st, m := s.read("users.list", nil); st != 200 || len(m["result"].(map[string]any)["users"].([]any)) != 5 {
		t.Fatalf("read after the replacement: %d %v", st, m)
	}
	testenv.Eventually(t, 30*time.Second, "the killed worker's container is removed", func() (bool, string) {
		_, ok := d.containers(t, true)[slave.ID]
		return !ok, fmt.Sprint(d.containers(t, true))
	})
	if !exists(filepath.Join(d.dataDir, slave.ID, "db.sqlite")) || !exists(filepath.Join(d.dataDir, slave.ID+".log")) {
		t.Fatalf("the killed slave's data or log is gone")
	}

	// crash/master: another master, nothing lost.
	var master orchestrator.WorkerView
	for _, w := range after {
		if w.Role == "master" {
			master = w
		}
	}
	if st, _, raw := s.call("POST", "/api/v1/crash/master", nil); st != 200 || strings.TrimSpace(string(raw)) != fmt.Sprintf("[%d]", master.PID) {
		t.Fatalf("crash/master: %d %s (master pid %d)", st, raw, master.PID)
	}
	if exists(fmt.Sprintf("/proc/%d/status", master.PID)) && !zombie(master.PID) {
		t.Fatalf("crash/master answered, but pid %d is alive", master.PID)
	}
	if st, m := s.write("users.add", map[string]any{"username": "after-crash", "password": "p"}); st != 200 {
		t.Fatalf("write after crash/master: %d %v", st, m)
	}
	after = s.waitShape(1, 60*time.Second, master.PID)

	// Orchestrator restart: it adopts the live containers (same pids) and
	// removes one that died while it was away (then replaces it).
	s.stopOrchestrator(true)
	var victim orchestrator.WorkerView
	for _, w := range after {
		if w.Role == "slave" {
			victim = w
		}
	}
	if out, err := exec.Command("docker", "kill", d.containers(t, false)[victim.ID].Name).CombinedOutput(); err != nil {
		t.Fatalf("docker kill: %v: %s", err, out)
	}
	s.startOrchestrator()
	s.waitReady(60 * time.Second)
	restarted := s.waitShape(1, 60*time.Second, victim.PID)
	for _, w := range restarted {
		if w.Role == "master" && w.PID != after[slices.IndexFunc(after, func(v orchestrator.WorkerView) bool { return v.Role == "master" })].PID {
			t.Fatalf("the master was not adopted: %+v -> %+v", after, restarted)
		}
	}
	if _, ok := d.containers(t, true)[victim.ID]; ok {
		t.Fatalf("the container that died while the orchestrator was away is still there")
	}

	// Scale-in: reads make the autoscaler add a slave, quiet makes it
	// remove one: that slave's container and data go, its log stays. The
	// reads go at once, so that more than 20 fall in one window even on a
	// loaded machine.
	var wg sync.WaitGroup
	for range 60 {
		wg.Add(1)
		go func() { // not s.read: no t.Fatal off the test's goroutine
			defer wg.Done()
			resp, err := http.Post(s.url+"/api/v1/db/read", "application/json", strings.NewReader(`{"op":"users.list"}`))
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	two := s.waitShape(2, 60*time.Second)
	removed := two[len(two)-1] // scale-in removes the highest pid
	if removed.Role != "slave" {
		removed = two[len(two)-2]
	}
	s.waitShape(1, 60*time.Second, removed.PID)
	testenv.Eventually(t, 30*time.Second, "the scaled-in slave's data is removed", func() (bool, string) {
		_, ok := d.containers(t, true)[removed.ID]
		return !ok && !exists(filepath.Join(d.dataDir, removed.ID)), fmt.Sprintf("container %v, data %v", ok, exists(filepath.Join(d.dataDir, removed.ID)))
	})
	if !exists(filepath.Join(d.dataDir, removed.ID+".log")) {
		t.Fatalf("the scaled-in slave's log is gone too")
	}

	// A cold restart: every container stopped (data kept); the new
	// orchestrator revives the last master on its own database.
	s.stopOrchestrator(false)
	if left := testenv.StackContainers(t, d.cli, d.stack); len(left) > 0 {
		t.Fatalf("containers after the orchestrator stopped its workers: %v", left)
	}
	s.startOrchestrator()
	s.waitReady(60 * time.Second)
	s.waitShape(1, 60*time.Second)
	st, m = s.read("users.list", nil)
	if st != 200 || len(m["result"].(map[string]any)["users"].([]any)) != 6 {
		t.Fatalf("users after a cold restart: %d %v", st, m)
	}
}

// zombie reports whether pid is a zombie (dead, not yet reaped by an
// unrelated parent).
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] == "Z"
}
