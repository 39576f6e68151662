package orchestrator

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/testenv"
)

// The test binary plays both parts (go-plugin's helper-process pattern):
// with helperEnv=runtime it runs a process runtime that starts two
// "workers" (the test binary again, with helperEnv=worker, which just
// waits) and writes their pids to helperPIDs; the test then SIGKILLs it.
const (
	helperEnv  = "RIDESHARE_PROCESS_HELPER"
	helperPIDs = "RIDESHARE_PROCESS_HELPER_PIDS"
	helperDie  = "RIDESHARE_PROCESS_HELPER_DIE"
)

func TestHelperProcess(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "worker":
		select {} // a worker that lives until it is killed
	case "runtime":
	default:
		return
	}
	os.Setenv(helperEnv, "worker") // what the workers inherit
	rt, err := NewProcess(ProcessOptions{
		Binary:        os.Args[0],
		Args:          []string{"-test.run=^TestHelperProcess$", "--"}, // Start's --id and --data-dir go after "--"
		DataDir:       t.TempDir(),
		DieWithParent: os.Getenv(helperDie) == "1",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var pids []string
	for i := range 2 {
		in, err := rt.Start(context.Background(), fmt.Sprintf("w%d", i))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		pids = append(pids, strconv.Itoa(in.PID))
	}
	// From a goroutine other than the spawner, after a while: Pdeathsig
	// must not depend on which thread is running.
	if err := os.WriteFile(os.Getenv(helperPIDs), []byte(strings.Join(pids, " ")), 0o644); err != nil {
		os.Exit(2)
	}
	select {}
}

// livePID reports whether pid runs (a zombie waiting for its reaper does
// not count).
func livePID(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// startHelperRuntime runs the helper runtime in a child process and
// returns it and its workers' pids.
func startHelperRuntime(t *testing.T, die bool) (*exec.Cmd, []int) {
	t.Helper()
	pidFile := filepath.Join(t.TempDir(), "pids")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"=runtime", helperPIDs+"="+pidFile, helperDie+"="+map[bool]string{true: "1", false: "0"}[die])
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	testenv.Eventually(t, 30*time.Second, "the helper runtime started its workers", func() (bool, string) {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false, err.Error()
		}
		pids = pids[:0]
		for _, f := range strings.Fields(string(b)) {
			n, _ := strconv.Atoi(f)
			pids = append(pids, n)
		}
		return len(pids) == 2, string(b)
	})
	return cmd, pids
}

// A test's workers die with the test process however it dies (here:
// SIGKILL of the process that runs the runtime), so an interrupted
// `make test` leaves nothing attached to the shared servers. Without
// DieWithParent (production) they outlive it, on purpose: they hold the
// data, and a restarted orchestrator adopts them.
func TestProcessRuntime_WorkersDieWithTheirParent(t *testing.T) {
	tests := []struct {
		name    string
		die     bool
		survive bool
	}{
		{"tests: workers die with the runtime's process", true, false},
		{"production: workers outlive it", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, pids := startHelperRuntime(t, tt.die)
			t.Cleanup(func() {
				for _, p := range pids {
					_ = syscall.Kill(p, syscall.SIGKILL)
				}
			})
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if tt.survive {
				// They must still run a good while after their parent died.
				deadline := time.Now().Add(time.Second)
				for time.Now().Before(deadline) {
					for _, p := range pids {
						if !livePID(p) {
							t.Fatalf("worker %d died with its parent without DieWithParent", p)
						}
					}
					time.Sleep(50 * time.Millisecond)
				}
				return
			}
			testenv.Eventually(t, 10*time.Second, "the workers died with their parent", func() (bool, string) {
				for _, p := range pids {
					if livePID(p) {
						return false, fmt.Sprintf("worker %d still runs", p)
					}
				}
				return true, ""
			})
		})
	}
}
