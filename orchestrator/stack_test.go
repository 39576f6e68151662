package orchestrator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rideshare-dbaas/rideshare/internal/mq"
	"github.com/rideshare-dbaas/rideshare/internal/nomadfake"
	"github.com/rideshare-dbaas/rideshare/internal/testenv"
	"github.com/rideshare-dbaas/rideshare/orchestrator"
)

// stack is a real DBaaS for one test: an in-process orchestrator running
// the built worker binary, on the real RabbitMQ and ZooKeeper, under names
// of its own. Its runtime is the process runtime, or the nomad runtime
// against the Nomad double (internal/nomadfake), which runs the same
// workers as allocations of a fake job.
type stack struct {
	t       testing.TB
	url     string
	dataDir string
	name    string
	bin     string
	log     *slog.Logger
	tweak   []func(*orchestrator.Options)
	kind    string // runtimeProcess or runtimeNomad
	rt      orchestrator.Runtime
	nomad   *nomadfake.Server // the Nomad double (nomad runtime only)
	cancel  context.CancelFunc
	done    chan error
}

// The runtimes the stack tests run against.
const (
	runtimeProcess = "process"
	runtimeNomad   = "nomad"
)

func mustStartStack(t testing.TB, tweak ...func(*orchestrator.Options)) *stack {
	t.Helper()
	return mustStartStackOn(t, runtimeProcess, tweak...)
}

func mustStartStackOn(t testing.TB, kind string, tweak ...func(*orchestrator.Options)) *stack {
	t.Helper()
	testenv.RequireServers(t)
	bin := testenv.Bin(t, "worker")
	name := testenv.Name(t)
	dataDir := t.TempDir()
	logf, err := os.Create(filepath.Join(dataDir, "orchestrator.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	s := &stack{t: t, dataDir: dataDir, name: name, bin: bin, tweak: tweak, kind: kind,
		log: slog.New(slog.NewJSONHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	s.startOrchestrator()
	t.Cleanup(func() {
		s.stopOrchestrator(false)
		if s.nomad != nil {
			s.nomad.Close() // the job's workers
		}
		cleanupBroker(t, s.prefix())
		cleanupZK(t, s.root())
		if t.Failed() {
			s.dumpLogs()
		}
	})
	s.waitReady(60 * time.Second)
	return s
}

func (s *stack) root() string   { return "/test-" + s.name }
func (s *stack) prefix() string { return s.name + "." }

// startOrchestrator starts an orchestrator (and with it a process runtime,
// or the one a tweak sets) on the stack's names and data directory; a
// second one adopts the workers the first left running.
func (s *stack) startOrchestrator() {
	t := s.t
	t.Helper()
	// The broker URL (the test run's user and password) goes through the
	// environment, never a command line.
	args := []string{"--zk-servers", strings.Join(testenv.ZKServers(), ","),
		"--zk-root", s.root(), "--queue-prefix", s.prefix(), "--zk-timeout", "2s", "--log-level", "debug"}
	var (
		rt  orchestrator.Runtime
		err error
	)
	switch s.kind {
	case runtimeNomad:
		if s.nomad == nil {
			// The worker job as jobs/worker.nomad.hcl has it: count 2
			// (scaling min 2), the worker id and data directory from the
			// allocation, restarts in place; a later orchestrator finds the
			// same job.
			s.nomad, err = nomadfake.Start(nomadfake.Options{
				Command: s.bin, Dir: filepath.Join(s.dataDir, "workers"), Count: 2, Min: 2, Max: 10,
				Env:          testenv.AMQPEnv(),
				Args:         append(args, "--id", orchestrator.NomadWorkerIDArg, "--data-dir", "${NOMAD_ALLOC_DIR}/data"),
				RestartDelay: time.Second, MinHealthyTime: 2 * time.Second, KillTimeout: 5 * time.Second,
				Logger: s.log.With("subsystem", "nomad-double"),
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		rt, err = orchestrator.NewNomad(orchestrator.NomadOptions{Address: s.nomad.URL(), Logger: s.log,
			RetryInterval: 500 * time.Millisecond, WaitTime: 5 * time.Second})
	default:
		rt, err = orchestrator.NewProcess(orchestrator.ProcessOptions{
			Binary:  s.bin,
			DataDir: filepath.Join(s.dataDir, "workers"),
			Logger:  s.log,
			// Nothing this test starts outlives it, however it dies.
			DieWithParent: true,
			Env:           testenv.AMQPEnv(),
			Args:          args,
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	opts := orchestrator.Options{
		Listen: "127.0.0.1:0", AMQPURL: testenv.AMQPURL(), ZKServers: testenv.ZKServers(),
		ZKRoot: s.root(), QueuePrefix: s.prefix(), Runtime: rt, Logger: s.log,
		// The orchestrator's own session: long, so that a loaded machine
		// does not make it reconnect (go-zookeeper v1.0.4 has a data race
		// on reconnect that -race reports: go-zookeeper/zk#35, unfixed).
		// Failure detection is the workers' sessions (2 s, their flags).
		ZKTimeout: 8 * time.Second, Dev: true,
	}
	for _, f := range s.tweak {
		f(&opts)
	}
	s.rt = opts.Runtime
	o, err := orchestrator.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := o.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.url, s.cancel, s.done = "http://"+addr.String(), cancel, make(chan error, 1)
	go func() { s.done <- o.Run(ctx) }()
}

// stopOrchestrator stops the orchestrator; with keepWorkers the workers
// stay up, as after an orchestrator crash.
func (s *stack) stopOrchestrator(keepWorkers bool) {
	if s.cancel == nil {
		return
	}
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.t.Error("orchestrator did not stop within 30 s")
	}
	_ = s.rt.Close(!keepWorkers)
	s.cancel = nil
}

// dumpLogs prints the tail of every log of the stack (on failure).
func (s *stack) dumpLogs() {
	files, _ := filepath.Glob(filepath.Join(s.dataDir, "*.log"))
	more, _ := filepath.Glob(filepath.Join(s.dataDir, "workers", "*.log"))
	for _, f := range append(files, more...) {
		b, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		s.t.Logf("---- %s (last %d lines)\n%s", filepath.Base(f), len(lines), strings.Join(lines, "\n"))
	}
}

func cleanupBroker(t testing.TB, prefix string) {
	conn, err := amqp.Dial(testenv.AMQPURL())
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	n := mq.NewNames(prefix)
	for _, q := range []string{n.WriteQ, n.DeadQ, n.ReadQ, n.RepairQ} {
		_, _ = ch.QueueDelete(q, false, false, false)
	}
	_ = ch.ExchangeDelete(n.SyncX, false, false)
}

func cleanupZK(t testing.TB, root string) {
	conn, _, err := zk.Connect(testenv.ZKServers(), 2*time.Second, zk.WithLogInfo(false), zk.WithLogger(quietZK{}))
	if err != nil {
		return
	}
	defer conn.Close()
	var del func(p string)
	del = func(p string) {
		kids, _, _ := conn.Children(p)
		for _, k := range kids {
			del(path.Join(p, k))
		}
		_ = conn.Delete(p, -1)
	}
	del(root)
}

type quietZK struct{}

func (quietZK) Printf(string, ...any) {}

// call sends a JSON request and decodes the JSON answer (nil for none).
func (s *stack) call(method, p string, body any) (int, map[string]any, []byte) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		default:
			j, _ := json.Marshal(b)
			rd = bytes.NewReader(j)
		}
	}
	req, _ := http.NewRequest(method, s.url+p, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, p, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m, raw
}

func (s *stack) write(op string, params any) (int, map[string]any) {
	st, m, _ := s.call("POST", "/api/v1/db/write", map[string]any{"op": op, "params": params})
	return st, m
}

func (s *stack) read(op string, params any) (int, map[string]any) {
	st, m, _ := s.call("POST", "/api/v1/db/read", map[string]any{"op": op, "params": params})
	return st, m
}

func (s *stack) workers() []orchestrator.WorkerView {
	s.t.Helper()
	resp, err := http.Get(s.url + "/api/v1/workers")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var v []orchestrator.WorkerView
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return v
}

func (s *stack) waitReady(timeout time.Duration) {
	s.t.Helper()
	testenv.Eventually(s.t, timeout, "stack ready", func() (bool, string) {
		resp, err := http.Get(s.url + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200, string(b)
	})
}

// waitShape waits for one ready master and n ready slaves, all at the same
// applied sequence number as the master, none of them with a pid in gone.
func (s *stack) waitShape(slaves int, timeout time.Duration, gone ...int) []orchestrator.WorkerView {
	s.t.Helper()
	var got []orchestrator.WorkerView
	testenv.Eventually(s.t, timeout, fmt.Sprintf("1 master and %d caught-up slaves", slaves), func() (bool, string) {
		got = s.workers()
		var m *orchestrator.WorkerView
		for i := range got {
			if got[i].Role == "master" {
				m = &got[i]
			}
		}
		if m == nil || len(got) != slaves+1 {
			return false, fmt.Sprintf("%+v", got)
		}
		for _, w := range got {
			if slices.Contains(gone, w.PID) {
				return false, fmt.Sprintf("pid %d still listed: %+v", w.PID, got)
			}
			if w.State != "ready" || w.Applied != m.Applied || w.Epoch != m.Epoch {
				return false, fmt.Sprintf("%+v", got)
			}
		}
		return true, ""
	})
	return got
}

func asInt(v any) int64 {
	f, _ := v.(float64)
	return int64(f)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// runInBackground runs o and returns a function that stops it and waits.
func runInBackground(t testing.TB, o *orchestrator.Orchestrator) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	return func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("orchestrator did not stop within 30 s")
		}
	}
}

func decodeJSON(t testing.TB, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("decode %s: %v", resp.Request.URL, err)
	}
}
