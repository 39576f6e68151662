package pluginhost

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rideshare-dbaas/rideshare/worker"
	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
	"github.com/rideshare-dbaas/rideshare/worker/plugins/rideshare"
)

// The real rideshare plugin binary, through pluginhost and a real SQLite,
// answers exactly like the in-process twin, and makes the worker record
// exactly the same statements (what replication ships).
func TestRidesharePlugin_MatchesInProcessTwin(t *testing.T) {
	h, _ := mustHost(t, Config{Dir: mustPluginDir(t, plug{"rideshare", bins.rideshare, "rideshare-plugin"})})
	twin := rideshare.New()
	ctx := context.Background()
	twinInfo, _ := twin.Info(ctx)
	if got := h.Infos(); len(got) != 1 || !reflect.DeepEqual(got[0], twinInfo) {
		t.Fatalf("plugin info %+v\nwant %+v", got, twinInfo)
	}
	stTwin, stPlug := mustStore(t, twinInfo), mustStore(t, twinInfo)

	steps := []struct{ op, params string }{
		{"users.add", `{"username":"zoe","password":"3d4f2bf07dc1be38b20cd6e46949a1071f9d0e3d"}`},
		{"users.add", `{"username":"zoe","password":"x"}`}, // conflict
		{"users.add", `{"username":"ann","password":"y"}`},
		{"users.add", `{"username":"","password":"y"}`},              // invalid
		{"users.add", `{"username":"bob","password":"y","extra":1}`}, // invalid
		{"users.exists", `{"username":"zoe"}`},
		{"users.exists", `{"username":"nobody"}`},
		{"users.list", `{}`},
		{"rides.create", `{"created_by":"zoe","timestamp":1700000000,"source":1,"destination":2}`},
		{"rides.create", `{"created_by":"ann","timestamp":1700000500,"source":1,"destination":2}`},
		{"rides.create", `{"created_by":"nobody","timestamp":1,"source":1,"destination":2}`}, // not found
		{"rides.create", `{"created_by":"zoe","timestamp":1,"source":3,"destination":3}`},    // invalid
		{"rides.join", `{"rideId":1,"username":"ann"}`},
		{"rides.join", `{"rideId":1,"username":"ann"}`},  // conflict
		{"rides.join", `{"rideId":99,"username":"ann"}`}, // not found
		{"rides.get", `{"rideId":1}`},
		{"rides.get", `{"rideId":99}`},
		{"rides.upcoming", `{"source":1,"destination":2,"after":0}`},
		{"rides.count", `{}`},
		{"rides.delete", `{"rideId":2}`},
		{"users.delete", `{"username":"ann"}`},
		{"rides.get", `{"rideId":1}`},
		{"db.clear", `{}`},
		{"rides.create", `{"created_by":"zoe","timestamp":1,"source":1,"destination":2}`}, // not found after clear
		{"users.list", `{}`},
		{"nosuch.op", `{}`},
	}
	for i, s := range steps {
		t.Run(fmt.Sprintf("%02d_%s", i, s.op), func(t *testing.T) {
			var (
				wantRes, gotRes     json.RawMessage
				wantStmts, gotStmts any
				wantErr, gotErr     error
			)
			o, ok := h.Lookup(s.op)
			if !ok {
				o = worker.Op{Handler: mustLookup(t, h, "users.list"), Kind: pluginapi.Read} // unknown ops: the handler refuses
			}
			if o.Kind == pluginapi.Write {
				var ws, gs any
				wantRes, ws, wantErr = writeOp(ctx, stTwin, twin, s.op, s.params)
				gotRes, gs, gotErr = writeOp(ctx, stPlug, o.Handler, s.op, s.params)
				wantStmts, gotStmts = ws, gs
			} else {
				wantRes, wantErr = readOp(ctx, stTwin, twin, s.op, s.params)
				gotRes, gotErr = readOp(ctx, stPlug, o.Handler, s.op, s.params)
			}
			if string(gotRes) != string(wantRes) {
				t.Errorf("result %s, twin %s", gotRes, wantRes)
			}
			if !reflect.DeepEqual(gotStmts, wantStmts) {
				t.Errorf("recorded statements differ:\nplugin %#v\ntwin   %#v", gotStmts, wantStmts)
			}
			we, wok := pluginapi.AsError(wantErr)
			ge, gok := pluginapi.AsError(gotErr)
			switch {
			case wok != gok:
				t.Errorf("error %v (%T), twin %v", gotErr, gotErr, wantErr)
			case wok && *we != *ge:
				t.Errorf("refusal %+v, twin %+v", ge, we)
			case !wok && (wantErr != nil || gotErr != nil):
				t.Errorf("unexpected failure: plugin %v, twin %v", gotErr, wantErr)
			}
		})
	}
}

// A binary whose SHA-256 is not the manifest's never runs: New fails with
// a log line naming the plugin and both hashes; a reload onto such a
// manifest keeps the loaded set.
func TestChecksumMismatchRefused(t *testing.T) {
	dir := mustPluginDir(t, plug{"misbehave", bins.misbehave1, "misbehave"})
	good, _ := FileSHA256(filepath.Join(dir, "misbehave"))
	bad, _ := FileSHA256(bins.rideshare)
	m := Manifest{Plugins: []ManifestEntry{{Name: "misbehave", File: "misbehave", SHA256: bad}}}
	mustWriteManifest(t, m, filepath.Join(dir, ManifestName))
	log, buf := testLogger(t)
	h, err := New(context.Background(), Config{Dir: dir, Logger: log, PublicKey: testPub})
	if err == nil {
		h.Close()
		t.Fatal("New accepted a binary that does not match the manifest")
	}
	if !errors.Is(err, ErrChecksumMismatch) {
		t.Fatalf("err = %v, want ErrChecksumMismatch", err)
	}
	var line map[string]any
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, "does not match its manifest") {
			_ = json.Unmarshal([]byte(l), &line)
		}
	}
	if line["level"] != "ERROR" || line["plugin"] != "misbehave" || line["manifest_sha256"] != bad || line["file_sha256"] != good {
		t.Fatalf("no clear log line for the refusal; log:\n%s", buf)
	}

	t.Run("reload keeps the loaded set", func(t *testing.T) {
		mustInstall(t, dir, plug{"misbehave", bins.misbehave1, "misbehave"})
		h, _ := mustHost(t, Config{Dir: dir})
		before := mustWhoami(t)(readOp(context.Background(), mustStore(t), mustLookup(t, h, "misbehave.ok"), "misbehave.ok", `{}`))
		mustCopy(t, bins.misbehave2, filepath.Join(dir, "misbehave-2"))
		m := Manifest{Plugins: []ManifestEntry{{Name: "misbehave", File: "misbehave-2", SHA256: good}}} // v1's hash
		mustWriteManifest(t, m, filepath.Join(dir, ManifestName))
		if err := h.Reload(context.Background()); !errors.Is(err, ErrChecksumMismatch) {
			t.Fatalf("Reload = %v, want ErrChecksumMismatch", err)
		}
		after := mustWhoami(t)(readOp(context.Background(), mustStore(t), mustLookup(t, h, "misbehave.ok"), "misbehave.ok", `{}`))
		if after != before {
			t.Fatalf("after a failed reload the plugin is %+v, was %+v", after, before)
		}
	})

	t.Run("binary swapped before a restart", func(t *testing.T) {
		dir := mustPluginDir(t, plug{"misbehave", bins.misbehave1, "misbehave"})
		h, _ := mustHost(t, Config{Dir: dir, RestartBackoff: time.Millisecond})
		st := mustStore(t)
		ok := mustLookup(t, h, "misbehave.ok")
		w := mustWhoami(t)(readOp(context.Background(), st, ok, "misbehave.ok", `{}`))
		mustCopy(t, bins.misbehave2, filepath.Join(dir, "misbehave")) // manifest unchanged
		syscall.Kill(w.PID, syscall.SIGKILL)
		waitGone(t, w.PID, 10*time.Second)
		waitFor(t, 10*time.Second, "the host to see the exit", func() bool {
			_, err := readOp(context.Background(), st, ok, "misbehave.ok", `{}`)
			return errors.Is(err, ErrChecksumMismatch)
		})
	})
}

// Each misbehaviour fails only its own call, with an error naming the
// plugin (never a *pluginapi.Error, so the worker answers 502); a dead or
// hung process is replaced and the next call works; the write transaction
// the calls ran in stays intact and commits exactly the good writes.
func TestMisbehavingPluginFailsOnlyItsCall(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	h, _ := mustHost(t, Config{Dir: mustPluginDir(t, plug{"misbehave", bins.misbehave1, "misbehave"}), Metrics: reg})
	st := mustStore(t, h.Infos()...)
	ctx := context.Background()
	b, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Rollback()
	// call runs op inside a savepoint of the one open write transaction.
	call := func(ctx context.Context, op, params string) (json.RawMessage, error) {
		var res json.RawMessage
		_, err := b.Savepoint(ctx, func(db pluginapi.DB) error {
			var err error
			res, err = mustLookup(t, h, op).Execute(ctx, op, json.RawMessage(params), db)
			return err
		})
		return res, err
	}
	// pluginFailure checks err is a CallError naming the plugin.
	pluginFailure := func(t *testing.T, err error, reason string) {
		t.Helper()
		var ce *CallError
		if !errors.As(err, &ce) || ce.Plugin != "misbehave" || !strings.Contains(err.Error(), "plugin misbehave") {
			t.Fatalf("err = %v (%T), want a CallError naming the plugin", err, err)
		}
		if _, refused := pluginapi.AsError(err); refused {
			t.Fatalf("err %v is a refusal", err)
		}
		if !strings.Contains(ce.Reason, reason) {
			t.Fatalf("reason %q, want %q", ce.Reason, reason)
		}
	}
	first := mustWhoami(t)(call(ctx, "misbehave.insert", `{"v":"a"}`))

	t.Run("panic", func(t *testing.T) {
		_, err := call(ctx, "misbehave.panic", `{"v":"panic"}`)
		pluginFailure(t, err, "died")
		next := mustWhoami(t)(call(ctx, "misbehave.insert", `{"v":"b"}`))
		if next.PID == first.PID {
			t.Fatal("the plugin was not restarted")
		}
		waitGone(t, first.PID, 10*time.Second)
	})

	t.Run("hang past the deadline", func(t *testing.T) {
		before := mustWhoami(t)(call(ctx, "misbehave.insert", `{"v":"c"}`))
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		start := time.Now()
		_, err := call(dctx, "misbehave.hang", `{"v":"hang"}`)
		pluginFailure(t, err, "deadline")
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("the hung call took %s", d)
		}
		next := mustWhoami(t)(call(ctx, "misbehave.insert", `{"v":"d"}`))
		if next.PID == before.PID {
			t.Fatal("the hung plugin was not replaced")
		}
		waitGone(t, before.PID, 10*time.Second)
	})

	t.Run("garbage", func(t *testing.T) {
		_, err := call(ctx, "misbehave.garbage", `{}`)
		pluginFailure(t, err, "garbage")
		if !errors.Is(err, pluginapi.ErrInvalidResult) {
			t.Fatalf("err = %v, want ErrInvalidResult", err)
		}
		mustWhoami(t)(call(ctx, "misbehave.insert", `{"v":"e"}`))
	})

	t.Run("handler failure", func(t *testing.T) {
		_, err := call(ctx, "misbehave.fail", `{}`)
		pluginFailure(t, err, "handler failed")
		if !strings.Contains(err.Error(), "deliberate failure") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("refusal passes through", func(t *testing.T) {
		_, err := call(ctx, "misbehave.refuse", `{}`)
		if !errors.Is(err, pluginapi.ErrConflict) {
			t.Fatalf("err = %v, want a conflict refusal", err)
		}
	})

	t.Run("deadline crosses the boundary", func(t *testing.T) {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		res, err := call(dctx, "misbehave.deadline", `{}`)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			HasDeadline bool  `json:"has_deadline"`
			Remaining   int64 `json:"remaining_ms"`
		}
		if json.Unmarshal(res, &got) != nil || !got.HasDeadline || got.Remaining <= 0 || got.Remaining > 2000 {
			t.Fatalf("plugin saw %s", res)
		}
	})

	t.Run("db used after the call", func(t *testing.T) {
		mustWhoami(t)(call(ctx, "misbehave.late", `{"v":"late"}`))
		var got struct {
			Done bool   `json:"done"`
			Err  string `json:"err"`
		}
		waitFor(t, 10*time.Second, "the late statement", func() bool {
			res, err := call(ctx, "misbehave.late_result", `{}`)
			return err == nil && json.Unmarshal(res, &got) == nil && got.Done
		})
		if !strings.Contains(got.Err, pluginapi.ErrCallNotOpen.Error()) {
			t.Fatalf("late statement: %q, want it refused", got.Err)
		}
	})

	t.Run("process killed between calls", func(t *testing.T) {
		before := mustWhoami(t)(call(ctx, "misbehave.insert", `{"v":"f"}`))
		syscall.Kill(before.PID, syscall.SIGKILL)
		p := mustLookup(t, h, "misbehave.ok").(*pluginHandle)
		waitFor(t, 10*time.Second, "go-plugin to see the exit", func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.inst == nil || p.inst.client.Exited()
		})
		next := mustWhoami(t)(call(ctx, "misbehave.insert", `{"v":"g"}`))
		if next.PID == before.PID {
			t.Fatal("not restarted")
		}
	})

	if err := b.Commit(ctx); err != nil {
		t.Fatalf("commit after the misbehaviour: %v", err)
	}
	db, done, err := st.Reader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	rows, err := db.Query(ctx, `SELECT v FROM misbehave ORDER BY rowid`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows.Values {
		got = append(got, r[0].(string))
	}
	if want := []string{"a", "b", "c", "d", "e", "f", "g"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("committed rows %v, want %v (no row of a failed call)", got, want)
	}

	// What the metrics saw of it all.
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"rideshare_worker_plugin_calls_total", map[string]string{"op": "misbehave.insert", "method": "execute", "outcome": "ok"}, 7},
		{"rideshare_worker_plugin_calls_total", map[string]string{"op": "misbehave.panic", "outcome": "failed"}, 1},
		{"rideshare_worker_plugin_calls_total", map[string]string{"op": "misbehave.hang", "outcome": "timeout"}, 1},
		{"rideshare_worker_plugin_calls_total", map[string]string{"op": "misbehave.garbage", "outcome": "failed"}, 1},
		{"rideshare_worker_plugin_calls_total", map[string]string{"op": "misbehave.refuse", "outcome": "refused"}, 1},
		{"rideshare_worker_plugin_failures_total", map[string]string{"plugin": "misbehave", "reason": "died"}, 1},
		{"rideshare_worker_plugin_failures_total", map[string]string{"plugin": "misbehave", "reason": "overran"}, 1},
		{"rideshare_worker_plugin_failures_total", map[string]string{"plugin": "misbehave", "reason": "exited"}, 1},
		{"rideshare_worker_plugin_restarts_total", map[string]string{"plugin": "misbehave", "outcome": "ok"}, 3},
		{"rideshare_worker_plugin_reloads_total", map[string]string{"outcome": "ok"}, 1},
		{"rideshare_worker_plugin_loaded", map[string]string{"plugin": "misbehave", "version": "1"}, 1},
	} {
		if got := gathered(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// gathered sums the values of the series of family name that carry labels.
func gathered(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// A reload swaps the plugin while a call is in flight: the call finishes on
// the old process, new calls go to the new one, the old process is killed
// once its call returned, and a handler looked up before the swap still
// works.
func TestReloadSwapsWithoutFailingInFlightCall(t *testing.T) {
	dir := mustPluginDir(t, plug{"misbehave", bins.misbehave1, "misbehave-1"})
	h, _ := mustHost(t, Config{Dir: dir})
	st := mustStore(t)
	ctx := context.Background()
	stale := mustLookup(t, h, "misbehave.ok")
	old := mustWhoami(t)(readOp(ctx, st, stale, "misbehave.ok", `{}`))

	started := make(chan struct{})
	type result struct {
		res json.RawMessage
		err error
	}
	inflight := make(chan result, 1)
	go func() {
		db, done, err := st.Reader(ctx)
		if err != nil {
			inflight <- result{nil, err}
			return
		}
		defer done()
		res, err := mustLookup(t, h, "misbehave.slow").Execute(ctx, "misbehave.slow", json.RawMessage(`{"ms":1500}`), &notifyDB{DB: db, first: started})
		inflight <- result{res, err}
	}()
	<-started

	mustInstall(t, dir, plug{"misbehave", bins.misbehave2, "misbehave-2"})
	if err := h.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inflight:
		t.Fatal("Reload waited for the call in flight")
	default:
	}
	now := mustWhoami(t)(readOp(ctx, st, mustLookup(t, h, "misbehave.ok"), "misbehave.ok", `{}`))
	if now.Version != "2" || now.PID == old.PID {
		t.Fatalf("after reload: %+v (old %+v)", now, old)
	}
	if got := mustWhoami(t)(readOp(ctx, st, stale, "misbehave.ok", `{}`)); got.Version != "2" {
		t.Fatalf("a handler looked up before the reload answered %+v", got)
	}
	if processGone(old.PID) {
		t.Fatal("the old process was killed while its call was in flight")
	}
	r := <-inflight
	if w := mustWhoami(t)(r.res, r.err); w.PID != old.PID || w.Version != "1" {
		t.Fatalf("in-flight call answered by %+v", w)
	}
	waitGone(t, old.PID, 10*time.Second)
	if infos := h.Infos(); len(infos) != 1 || infos[0].Version != "2" {
		t.Fatalf("infos after reload: %+v", infos)
	}
}

// notifyDB closes first on its first statement.
type notifyDB struct {
	pluginapi.DB
	first chan struct{}
	once  sync.Once
}

func (d *notifyDB) Query(ctx context.Context, q string, args ...any) (pluginapi.Rows, error) {
	d.once.Do(func() { close(d.first) })
	return d.DB.Query(ctx, q, args...)
}

// Run reloads when the manifest changes and on SIGHUP.
func TestRunReloadsOnManifestChangeAndSIGHUP(t *testing.T) {
	// Our own registration first: a SIGHUP reaching this process before
	// Run's signal.Notify must not kill it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	version := func(h *Host) string {
		infos := h.Infos()
		if len(infos) != 1 {
			return ""
		}
		return infos[0].Version
	}
	t.Run("manifest watch", func(t *testing.T) {
		dir := mustPluginDir(t, plug{"misbehave", bins.misbehave1, "misbehave-1"})
		h, _ := mustHost(t, Config{Dir: dir, WatchInterval: 20 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go h.Run(ctx)
		mustInstall(t, dir, plug{"misbehave", bins.misbehave2, "misbehave-2"})
		waitFor(t, 15*time.Second, "the watch to load version 2", func() bool { return version(h) == "2" })
	})
	t.Run("SIGHUP", func(t *testing.T) {
		dir := mustPluginDir(t, plug{"misbehave", bins.misbehave1, "misbehave-1"})
		h, _ := mustHost(t, Config{Dir: dir, WatchInterval: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go h.Run(ctx)
		mustInstall(t, dir, plug{"misbehave", bins.misbehave2, "misbehave-2"})
		waitFor(t, 15*time.Second, "SIGHUP to load version 2", func() bool {
			syscall.Kill(os.Getpid(), syscall.SIGHUP)
			time.Sleep(100 * time.Millisecond)
			return version(h) == "2"
		})
	})
}

// A plugin's hclog lines land in the worker's structured log, as records
// with their level and keys, tagged with the plugin's name.
func TestPluginLogsReachWorkerLog(t *testing.T) {
	h, buf := mustHost(t, Config{Dir: mustPluginDir(t, plug{"misbehave", bins.misbehave1, "misbehave"})})
	w := mustWhoami(t)(readOp(context.Background(), mustStore(t), mustLookup(t, h, "misbehave.ok"), "misbehave.ok", `{}`))
	waitFor(t, 10*time.Second, "the plugin's log line", func() bool {
		for _, l := range strings.Split(buf.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == "misbehave answering" {
				return rec["level"] == "INFO" && rec["plugin"] == "misbehave" && rec["op"] == "misbehave.ok" &&
					rec["answer_pid"] == float64(w.PID)
			}
		}
		return false
	})
	if strings.Contains(buf.String(), `"plugin":"misbehave","plugin"`) {
		t.Errorf("duplicate plugin key in the log:\n%s", buf)
	}
}

// ---- no orphans ----

const envHelper = "GO_WANT_HELPER_PROCESS"

// TestHelperProcess is not a test: run as a child by
// TestNoOrphansWhenHostIsKilled, it loads a plugin, prints its pid and
// waits to be SIGKILLed.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(envHelper) != "1" {
		t.Skip("helper process")
	}
	h, err := New(context.Background(), Config{Dir: os.Getenv("PLUGINHOST_HELPER_DIR"), PublicKey: testPub, noPdeathsig: os.Getenv("PLUGINHOST_HELPER_NOPDEATHSIG") == "1"})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	st, err := worker.OpenStore(filepath.Join(os.Getenv("PLUGINHOST_HELPER_DIR"), "db.sqlite"))
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	o, _ := h.Lookup("misbehave.ok")
	res, err := readOp(context.Background(), st, o.Handler, "misbehave.ok", `{}`)
	var w whoami
	if err != nil || json.Unmarshal(res, &w) != nil {
		fmt.Println("ERROR", err, string(res))
		os.Exit(1)
	}
	fmt.Printf("PLUGIN_PID %d\n", w.PID)
	time.Sleep(time.Hour)
}

// A host SIGKILLed (no Close, no CleanupClients) leaves no plugin process:
// the kernel's Pdeathsig kills it, and without Pdeathsig the plugin's own
// parent watchdog does.
func TestNoOrphansWhenHostIsKilled(t *testing.T) {
	for _, tc := range []struct {
		name        string
		noPdeathsig bool
	}{
		{"pdeathsig", false},
		{"watchdog only", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := mustPluginDir(t, plug{"misbehave", bins.misbehave1, "misbehave"})
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), envHelper+"=1", "PLUGINHOST_HELPER_DIR="+dir,
				"PLUGINHOST_HELPER_NOPDEATHSIG="+map[bool]string{true: "1", false: "0"}[tc.noPdeathsig])
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			lines := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					if strings.HasPrefix(sc.Text(), "PLUGIN_PID ") || strings.HasPrefix(sc.Text(), "ERROR") {
						lines <- sc.Text()
						return
					}
				}
				close(lines)
			}()
			var pid int
			select {
			case l := <-lines:
				pid, err = strconv.Atoi(strings.TrimPrefix(l, "PLUGIN_PID "))
				if err != nil {
					t.Fatalf("helper said %q", l)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the helper never reported its plugin")
			}
			if processGone(pid) {
				t.Fatalf("plugin %d not running before the kill", pid)
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			waitGone(t, pid, 10*time.Second)
		})
	}
}
