package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// CPUProfile fetches a CPU profile of seconds from a Go process's pprof
// server (addr is host:port; the orchestrator's and the worker's --pprof
// flag) and writes it to path.
func CPUProfile(ctx context.Context, addr string, seconds int, path string) error {
	u := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds)*time.Second+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("profile %s: %d %s", addr, resp.StatusCode, bytes.TrimSpace(b))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile %s: %w", addr, err)
	}
	return f.Close()
}

// PprofTop is `go tool pprof -top` of a profile: its header and the n
// functions with the most flat CPU time. It needs the go command (the one
// that built the binaries); the binary is read from the profile's mapping.
func PprofTop(ctx context.Context, profile string, n int) (string, error) {
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", n), profile)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go tool pprof -top %s: %w: %s", filepath.Base(profile), err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

// Categories of CPU time in a profile, in report order. Each sample goes to
// the category of the frame nearest its leaf that belongs to one of the
// libraries below (a write(2) under gRPC is plugin RPC, an allocation
// under encoding/json is JSON); a sample with none of them goes to our own
// code, or else to the Go runtime (scheduler, GC) or a bare syscall.
var Categories = []string{CatPlugin, CatSQLite, CatJSON, CatAMQP, CatZK, CatHTTP, CatLog, CatOwn, CatGC, CatRuntime, CatSyscall, CatOther}

// The categories.
const (
	CatPlugin  = "plugin RPC"
	CatSQLite  = "SQLite"
	CatJSON    = "JSON"
	CatAMQP    = "RabbitMQ client"
	CatZK      = "ZooKeeper client"
	CatHTTP    = "HTTP"
	CatLog     = "logging"
	CatOwn     = "own code"
	CatGC      = "GC"
	CatRuntime = "runtime"
	CatSyscall = "syscalls"
	CatOther   = "other"
)

// libraryPrefixes maps function-name prefixes to categories, in the order
// they are tried on each frame.
var libraryPrefixes = []struct{ prefix, cat string }{
	{"google.golang.org/grpc", CatPlugin},
	{"google.golang.org/protobuf", CatPlugin},
	{"golang.org/x/net/http2", CatPlugin},
	{"github.com/hashicorp/yamux", CatPlugin},
	{"github.com/hashicorp/go-plugin", CatPlugin},
	{"github.com/rideshare-dbaas/rideshare/worker/pluginapi", CatPlugin},
	{"github.com/rideshare-dbaas/rideshare/worker/pluginhost", CatPlugin},
	{"modernc.org/", CatSQLite},
	{"database/sql", CatSQLite},
	{"encoding/json", CatJSON},
	{"github.com/rabbitmq/amqp091-go", CatAMQP},
	{"github.com/go-zookeeper/zk", CatZK},
	{"net/http", CatHTTP},
	{"github.com/go-chi/", CatHTTP},
	{"log/slog", CatLog},
	{"github.com/rideshare-dbaas/rideshare/", CatOwn},
}

// categorize picks the category of one sample's stack (leaf first).
func categorize(stack []string) string {
	for _, fn := range stack {
		for _, lp := range libraryPrefixes {
			if strings.HasPrefix(fn, lp.prefix) {
				return lp.cat
			}
		}
	}
	if len(stack) == 0 {
		return CatOther
	}
	root, leaf := stack[len(stack)-1], stack[0]
	switch {
	case strings.HasPrefix(root, "runtime.gcBgMarkWorker") || strings.HasPrefix(root, "runtime.bgsweep") ||
		strings.HasPrefix(root, "runtime.bgscavenge") || strings.Contains(strings.Join(stack, " "), "runtime.gcAssistAlloc"):
		return CatGC
	case strings.Contains(leaf, "syscall"):
		return CatSyscall
	case strings.HasPrefix(leaf, "runtime.") || strings.HasPrefix(leaf, "internal/runtime") || strings.HasPrefix(root, "runtime."):
		return CatRuntime
	}
	return CatOther
}

// Breakdown is a profile's CPU time by category.
type Breakdown struct {
	Total time.Duration            `json:"total_ns"`
	By    map[string]time.Duration `json:"by_category_ns"`
}

// Share is the fraction of the total in cat.
func (b Breakdown) Share(cat string) float64 {
	if b.Total == 0 {
		return 0
	}
	return float64(b.By[cat]) / float64(b.Total)
}

// ProfileBreakdown reads a CPU profile through `go tool pprof -traces` and
// sums its samples by category.
func ProfileBreakdown(ctx context.Context, profile string) (Breakdown, error) {
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "tool", "pprof", "-traces", profile)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return Breakdown{}, fmt.Errorf("go tool pprof -traces %s: %w: %s", filepath.Base(profile), err, strings.TrimSpace(stderr.String()))
	}
	return parseTraces(out.String())
}

// parseTraces sums `go tool pprof -traces` output by category. A trace is
// a separator line, then "VALUE FUNC" for the leaf, then one function a
// line to the root.
func parseTraces(s string) (Breakdown, error) {
	b := Breakdown{By: map[string]time.Duration{}}
	var val time.Duration
	var stack []string
	flush := func() {
		if len(stack) > 0 {
			b.By[categorize(stack)] += val
			b.Total += val
		}
		stack, val = nil, 0
	}
	inTraces := false
	for line := range strings.Lines(s) {
		line = strings.TrimRight(line, "\n")
		if strings.HasPrefix(line, "-----------+") {
			flush()
			inTraces = true
			continue
		}
		if !inTraces || strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		if stack == nil && len(f) >= 2 {
			d, err := time.ParseDuration(f[0])
			if err != nil {
				return b, fmt.Errorf("pprof trace value %q: %w", f[0], err)
			}
			val, stack = d, []string{f[1]}
			continue
		}
		if len(f) >= 1 && stack != nil {
			stack = append(stack, f[0])
		}
	}
	flush()
	return b, nil
}
