package chaos

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/testenv"
)

// TestChaosShort is the short chaos run against a real stack: an
// orchestrator binary with the process runtime, on the shared RabbitMQ and
// ZooKeeper under names of its own. Masters and slaves are SIGKILLed and a
// slave's and a master's ZooKeeper sessions expire while 16 clients write
// and read; it fails on any violated guarantee. RabbitMQ is not restarted
// here: other packages' tests use the same broker at the same time (the
// long `make chaos` run does it). The unavailability targets are reported,
// not enforced: under `go test ./...` the two cores are shared with every
// other test.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run skipped in -short mode")
	}
	testenv.RequireServers(t)
	testChaosShort(t, Options{Runtime: "process"})
}

// TestChaosShortDocker is the same run with the workers as containers
// (docker runtime): the kills go through the Docker API, the ZooKeeper
// expiries SIGSTOP the containers' processes by their host pids, and the
// replicas are checked in the bind-mounted data folders. At the end no
// container of the run is left.
func TestChaosShortDocker(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run skipped in -short mode")
	}
	testenv.RequireServers(t)
	cli := testenv.RequireDocker(t)
	o := Options{Runtime: "docker", WorkerImage: testenv.WorkerImage(t, cli)}
	c := testChaosShort(t, o)
	if c != nil {
		if left := testenv.StackContainers(t, cli, "chaos-"+c.RunID()); len(left) > 0 {
			t.Errorf("containers left behind: %v", left)
		}
	}
}

// testChaosShort runs the short variant with o's runtime settings.
func testChaosShort(t *testing.T, o Options) *Chaos {
	var logs bytes.Buffer
	o.OrchestratorBin = testenv.Bin(t, "orchestrator")
	o.WorkerBin = testenv.Bin(t, "worker")
	o.DataDir = t.TempDir()
	o.AMQPURL = testenv.AMQPURL()
	o.ZKServers = testenv.ZKServers()
	o.Logger = slog.New(slog.NewTextHandler(&syncWriter{buf: &logs}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	Short(&o)
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Duration+2*time.Minute)
	defer cancel()
	rep, err := c.Run(ctx)
	var sum bytes.Buffer
	if rep != nil {
		rep.Summary(&sum)
		t.Log("\n" + sum.String())
		if p := os.Getenv("CHAOS_REPORT"); p != "" {
			_ = rep.WriteJSON(p)
		}
	}
	if err != nil || rep.Failed() {
		t.Log("chaos log:\n" + logs.String())
		dumpStackLogs(t, o.DataDir)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Violations) > 0 {
		t.Errorf("%d violations (see the summary above)", len(rep.Violations))
	}
	// The run must have done all it planned: every kill and both session
	// expiries, each recovered from (the load stretches past 45 s on a
	// loaded machine rather than skip a fault).
	if len(rep.Incomplete) > 0 {
		t.Errorf("run incomplete: %s", strings.Join(rep.Incomplete, "; "))
	}
	for kind, want := range map[string]int{FaultMasterKill: o.MasterKills, FaultSlaveKill: o.SlaveKills,
		FaultZKExpirySlave: 1, FaultZKExpiryMaster: 1} {
		if got := rep.Counts[kind]; got != want {
			t.Errorf("%s: %d made, %d planned", kind, got, want)
		}
	}
	if rep.Writes.Acked == 0 {
		t.Error("no write was acknowledged during the run")
	}
	return c
}

func dumpStackLogs(t *testing.T, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	more, _ := filepath.Glob(filepath.Join(dir, "workers", "*.log"))
	for _, f := range append(files, more...) {
		t.Logf("---- %s (last 30 lines)\n%s", filepath.Base(f), tail(f, 30))
	}
}
