package orchestrator_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/testenv"
	"github.com/rideshare-dbaas/rideshare/orchestrator"
)

// The orchestrator's election, self-healing and autoscaling tests against
// the nomad runtime: real workers on the real RabbitMQ and ZooKeeper, run
// as the allocations of the Nomad double's worker job. A crash is a
// SIGKILL through the allocation signal API; Nomad (the double) restarts
// the task in place, under the same worker id, on its data.

func TestNomadE2E_WorkerListAndCrashMasterAnswers(t *testing.T) {
	testWorkerListAndCrashMaster(t, runtimeNomad)
}

func TestNomadE2E_CrashSlaveRestartsInPlace(t *testing.T) {
	testCrashSlave(t, runtimeNomad)
}

func TestNomadE2E_CrashMasterLosesNothing(t *testing.T) {
	testCrashMasterLosesNothing(t, runtimeNomad)
}

func TestNomadE2E_OrchestratorRestartFindsWorkers(t *testing.T) {
	testOrchestratorRestart(t, runtimeNomad)
}

func TestE2E_AutoscaleOutAndIn(t *testing.T)      { testAutoscale(t, runtimeProcess) }
func TestNomadE2E_AutoscaleOutAndIn(t *testing.T) { testAutoscale(t, runtimeNomad) }

// testAutoscale: reads at a steady rate make the autoscaler ask for more
// slaves than one (capped at MaxSlaves); once reads stop, a quiet window
// brings the count back to MinSlaves. Under Nomad the count is the worker
// group's, set with scale requests (the second of which may meet the
// first one's deployment and be retried).
func testAutoscale(t *testing.T, kind string) {
	s := mustStartStackOn(t, kind, func(o *orchestrator.Options) {
		o.Scale = orchestrator.ScaleOptions{Window: 4 * time.Second, ReadsPerSlave: 5, MinSlaves: 1, MaxSlaves: 3}
	})
	if st, m := s.write("users.add", map[string]any{"username": "ann", "password": "p"}); st != 200 {
		t.Fatalf("write: %d %v", st, m)
	}
	s.waitShape(1, 30*time.Second)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	wg.Add(1)
	go func() { // ~4 reads a second: 16 a window, 4 slaves' worth, capped at 3
		defer wg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if st, m := s.read("users.list", nil); st != 200 {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("%d %v", st, m))
				mu.Unlock()
			}
		}
	}()
	s.waitShape(3, 90*time.Second)
	if s.nomad != nil && s.nomad.Count() != 4 {
		t.Errorf("nomad group count %d, want 4 (1 master, 3 slaves)", s.nomad.Count())
	}
	close(stop)
	wg.Wait()
	if len(failed) > 0 {
		t.Errorf("%d reads failed while scaling out, e.g. %s", len(failed), failed[0])
	}
	s.waitShape(1, 90*time.Second)
	if s.nomad != nil {
		testenv.Eventually(t, 30*time.Second, "nomad group count back to 2", func() (bool, string) {
			return s.nomad.Count() == 2, fmt.Sprint(s.nomad.Count())
		})
		var counts []string
		for _, r := range s.nomad.ScaleRequests() {
			counts = append(counts, fmt.Sprint(*r.Count))
		}
		t.Logf("scale requests sent to nomad: %s", strings.Join(counts, ", "))
	}
	if st, m := s.read("users.list", nil); st != 200 || fmt.Sprint(m["result"]) != "map[users:[ann]]" {
		t.Fatalf("read after scaling in: %d %v", st, m)
	}
}
