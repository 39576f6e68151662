package pluginhost

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/wire"
	"github.com/rideshare-dbaas/rideshare/worker"
	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

// Plugin binaries built once by TestMain (real `go build`, no mocks).
var bins struct {
	rideshare  string // worker/plugins/rideshare/cmd/rideshare-plugin
	misbehave1 string // testdata/misbehave, version "1"
	misbehave2 string // testdata/misbehave, version "2"
}

const envBinDir = "PLUGINHOST_TEST_BINDIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(envBinDir); dir != "" { // a helper process: reuse the parent's binaries
		setBins(dir)
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "pluginhost-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	setBins(dir)
	err = buildAll()
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "build test plugins:", err)
	} else {
		os.Setenv(envBinDir, dir)
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func setBins(dir string) {
	bins.rideshare = filepath.Join(dir, "rideshare-plugin")
	bins.misbehave1 = filepath.Join(dir, "misbehave-1")
	bins.misbehave2 = filepath.Join(dir, "misbehave-2")
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func buildAll() error {
	builds := [][]string{
		{"-o", bins.rideshare, "../plugins/rideshare/cmd/rideshare-plugin"},
		{"-o", bins.misbehave1, "./testdata/misbehave"},
		{"-ldflags", "-X main.version=2", "-o", bins.misbehave2, "./testdata/misbehave"},
	}
	errs := make([]error, len(builds))
	var wg sync.WaitGroup
	for i, args := range builds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(goTool(), append([]string{"build"}, args...)...)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("go build %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// ---- helpers ----

type plug struct {
	name string // manifest (handler) name
	src  string // built binary
	file string // name in the plugin directory
}

// mustPluginDir copies the binaries into a fresh plugin directory and
// writes its manifest.
func mustPluginDir(t testing.TB, plugs ...plug) string {
	t.Helper()
	dir := t.TempDir()
	mustInstall(t, dir, plugs...)
	return dir
}

// mustInstall copies plugs into dir and rewrites the manifest to list
// exactly them.
func mustInstall(t testing.TB, dir string, plugs ...plug) {
	t.Helper()
	var m Manifest
	for _, p := range plugs {
		dst := filepath.Join(dir, p.file)
		if _, err := os.Stat(dst); err != nil {
			mustCopy(t, p.src, dst)
		}
		sum, err := FileSHA256(dst)
		if err != nil {
			t.Fatal(err)
		}
		m.Plugins = append(m.Plugins, ManifestEntry{Name: p.name, File: p.file, SHA256: sum})
	}
	mustWriteManifest(t, m, filepath.Join(dir, ManifestName))
}

func mustCopy(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// logBuf collects the host's JSON log; a failing test prints it.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testLogger(t testing.TB) (*slog.Logger, *logBuf) {
	buf := &logBuf{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("host log:\n%s", buf)
		}
	})
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func mustHost(t testing.TB, cfg Config) (*Host, *logBuf) {
	t.Helper()
	log, buf := testLogger(t)
	cfg.Logger = log
	if cfg.PublicKey == nil {
		cfg.PublicKey = testPub
	}
	h, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("pluginhost.New: %v\n%s", err, buf)
	}
	t.Cleanup(func() { h.Close() })
	return h, buf
}

// mustStore opens a worker store and applies infos' migrations.
func mustStore(t testing.TB, infos ...pluginapi.Info) *worker.Store {
	t.Helper()
	st, err := worker.OpenStore(filepath.Join(t.TempDir(), "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	for _, info := range infos {
		for _, m := range info.Migrations {
			b, err := st.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.Savepoint(ctx, func(db pluginapi.DB) error {
				for _, s := range m.Statements {
					if _, err := db.Exec(ctx, s); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatalf("migration %s v%d: %v", info.Name, m.Version, err)
			}
			if err := b.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	return st
}

// writeOp runs a write op in its own committed batch, as the master does,
// and returns the statements the worker recorded for replication.
func writeOp(ctx context.Context, st *worker.Store, h pluginapi.Handler, op string, params string) (json.RawMessage, []wire.Stmt, error) {
	b, err := st.Begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer b.Rollback()
	var res json.RawMessage
	stmts, err := b.Savepoint(ctx, func(db pluginapi.DB) error {
		var err error
		res, err = h.Execute(ctx, op, json.RawMessage(params), db)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return res, stmts, b.Commit(ctx)
}

// readOp runs a read op on a read-only snapshot, as a slave does.
func readOp(ctx context.Context, st *worker.Store, h pluginapi.Handler, op string, params string) (json.RawMessage, error) {
	db, done, err := st.Reader(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	return h.Execute(ctx, op, json.RawMessage(params), db)
}

// mustLookup resolves op in the host.
func mustLookup(t testing.TB, h *Host, op string) pluginapi.Handler {
	t.Helper()
	o, ok := h.Lookup(op)
	if !ok {
		t.Fatalf("no handler for %s", op)
	}
	return o.Handler
}

// whoami is misbehave's answer.
type whoami struct {
	Version string `json:"version"`
	PID     int    `json:"pid"`
}

// mustWhoami(t)(call(...)) decodes a misbehave answer or fails t.
func mustWhoami(t testing.TB) func(res json.RawMessage, err error) whoami {
	return func(res json.RawMessage, err error) whoami {
		t.Helper()
		if err != nil {
			t.Fatalf("call failed: %v", err)
		}
		var w whoami
		if err := json.Unmarshal(res, &w); err != nil || w.PID == 0 {
			t.Fatalf("bad answer %s: %v", res, err)
		}
		return w
	}
}

// processGone reports whether pid has exited (absent, or a zombie nobody
// reaped yet).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) state ...; comm may hold spaces, so read after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] == 'Z'
}

// waitGone waits (polling, with a deadline) until pid has exited.
func waitGone(t testing.TB, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive after %s", pid, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
