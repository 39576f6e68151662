package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"
	"github.com/rideshare-dbaas/rideshare/internal/nomadfake"
	"github.com/rideshare-dbaas/rideshare/internal/testenv"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
)

// These tests drive the nomad runtime against the Nomad double
// (internal/nomadfake), whose allocations are real processes: a shell that
// sleeps, so no server is needed. The DBaaS tests against the same double
// with real workers are in nomad_e2e_test.go.

func mustSleeper(t *testing.T, tweak ...func(*nomadfake.Options)) *nomadfake.Server {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("needs sh")
	}
	opts := nomadfake.Options{
		Command: sh, Args: []string{"-c", "echo alloc ${NOMAD_ALLOC_ID} in ${NOMAD_ALLOC_DIR}; exec sleep 600"},
		Dir: t.TempDir(), Count: 2, Min: 2, Max: 6,
		RestartDelay: 200 * time.Millisecond, RescheduleDelay: 200 * time.Millisecond,
		MinHealthyTime: 300 * time.Millisecond, KillTimeout: 2 * time.Second,
	}
	for _, f := range tweak {
		f(&opts)
	}
	d, err := nomadfake.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func mustNomad(t *testing.T, d *nomadfake.Server, tweak ...func(*NomadOptions)) *Nomad {
	t.Helper()
	opts := NomadOptions{Address: d.URL(), RetryInterval: 200 * time.Millisecond, WaitTime: 2 * time.Second,
		CallTimeout: 3 * time.Second, Logger: slog.New(slog.NewTextHandler(tlog{t}, nil))}
	for _, f := range tweak {
		f(&opts)
	}
	n, err := NewNomad(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close(false) })
	return n
}

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitList waits until List shows n workers.
func waitList(t *testing.T, n *Nomad, want int) []Instance {
	t.Helper()
	var got []Instance
	testenv.Eventually(t, 20*time.Second, fmt.Sprintf("%d workers listed", want), func() (bool, string) {
		var err error
		got, err = n.List(ctxT(t))
		return err == nil && len(got) == want, fmt.Sprint(got, err)
	})
	return got
}

func TestNomadWorkerID(t *testing.T) {
	if got := NomadWorkerID("0a1b2c3d-aaaa-bbbb-cccc-dddddddddddd"); got != "w-0a1b2c3d" {
		t.Fatalf("NomadWorkerID = %q", got)
	}
	if !strings.Contains(NomadWorkerIDArg, "${NOMAD_SHORT_ALLOC_ID}") {
		t.Fatalf("NomadWorkerIDArg %q does not use the short alloc id", NomadWorkerIDArg)
	}
}

// List joins the running allocations with the ZooKeeper registrations: the
// ids come from the allocation ids, the pids from the registrations.
func TestNomad_ListJoinsRegistrations(t *testing.T) {
	d := mustSleeper(t)
	n := mustNomad(t, d)
	running := d.Running()
	if len(running) != 2 {
		t.Fatalf("double runs %v", running)
	}
	regs := map[string]wire.WorkerInfo{}
	for alloc, pid := range running {
		regs[NomadWorkerID(alloc)] = wire.WorkerInfo{PID: pid}
	}
	n.useRegistrations(func() (map[string]wire.WorkerInfo, error) { return regs, nil })
	got := waitList(t, n, 2)
	for _, in := range got {
		if in.PID == 0 || regs[in.ID].PID != in.PID {
			t.Errorf("instance %+v does not carry its registered pid (%v)", in, regs)
		}
	}
	// An unregistered worker is listed with pid 0 (the API's worker/list
	// leaves it out until it registers).
	delete(regs, got[0].ID)
	got, _ = n.List(ctxT(t))
	for _, in := range got {
		if _, ok := regs[in.ID]; !ok && in.PID != 0 {
			t.Errorf("unregistered %s has pid %d", in.ID, in.PID)
		}
	}
	// A registration read failure is the List's failure.
	n.useRegistrations(func() (map[string]wire.WorkerInfo, error) { return nil, errors.New("zk down") })
	if _, err := n.List(ctxT(t)); err == nil || !strings.Contains(err.Error(), "zk down") {
		t.Fatalf("List with a failing registration read: %v", err)
	}
}

// Scale sends the job's modify index as compare-and-set and reaches the count.
func TestNomad_ScaleWithModifyIndex(t *testing.T) {
	d := mustSleeper(t)
	n := mustNomad(t, d)
	before := d.JobModifyIndex()
	if err := n.Scale(ctxT(t), 4); err != nil {
		t.Fatal(err)
	}
	waitList(t, n, 4)
	reqs := d.ScaleRequests()
	if len(reqs) == 0 || reqs[0].JobModifyIndex != before || *reqs[0].Count != 4 || reqs[0].Target["Group"] != "worker" {
		t.Fatalf("scale requests = %+v, want count 4 for group worker at index %d", reqs, before)
	}
	// Scale-in: Nomad stops the highest name indexes; the count sticks.
	testenv.Eventually(t, 10*time.Second, "scale-in accepted", func() (bool, string) {
		_ = n.Scale(ctxT(t), 2)
		return d.Count() == 2, fmt.Sprint(d.Count())
	})
	waitList(t, n, 2)
	// Idempotent: asking again for the same count sends nothing.
	sent := len(d.ScaleRequests())
	_ = n.Scale(ctxT(t), 2)
	_ = n.Scale(ctxT(t), 2)
	if err := n.Scale(ctxT(t), -1); err == nil {
		t.Error("Scale(-1) accepted")
	}
	// Give the scaler the chance to misbehave: a scale-out must be seen
	// after any request it would wrongly have sent.
	_ = n.Scale(ctxT(t), 3)
	waitList(t, n, 3)
	if extra := d.ScaleRequests()[sent:]; len(extra) != 1 || *extra[0].Count != 3 {
		t.Fatalf("after repeated Scale(2) and Scale(3), requests = %+v", extra)
	}
}

// A re-registration that resets the count (nomad job run without
// -preserve-counts, terraform apply) is undone: the runtime follows the
// group's count and scales it back.
func TestNomad_CountResetIsUndone(t *testing.T) {
	d := mustSleeper(t, func(o *nomadfake.Options) { o.MinHealthyTime = 100 * time.Millisecond })
	n := mustNomad(t, d)
	_ = n.Scale(ctxT(t), 4)
	waitList(t, n, 4)
	d.Register(2)
	testenv.Eventually(t, 20*time.Second, "count set back to 4", func() (bool, string) {
		return d.Count() == 4, fmt.Sprint(d.Count())
	})
	waitList(t, n, 4)
}

// A scale request refused while a deployment is active is retried until
// Nomad takes it, not lost.
func TestNomad_ScaleRetriedDuringDeployment(t *testing.T) {
	d := mustSleeper(t, func(o *nomadfake.Options) { o.MinHealthyTime = 3 * time.Second })
	n := mustNomad(t, d)
	_ = n.Scale(ctxT(t), 3)
	testenv.Eventually(t, 10*time.Second, "first scale applied", func() (bool, string) { return d.Count() == 3, fmt.Sprint(d.Count()) })
	// The deployment of the scale-out to 3 is active for 3 s.
	_ = n.Scale(ctxT(t), 5)
	testenv.Eventually(t, 20*time.Second, "second scale applied after the deployment", func() (bool, string) {
		return d.Count() == 5, fmt.Sprint(d.Count())
	})
	waitList(t, n, 5)
	refused := 0
	for _, r := range d.ScaleRequests() {
		if *r.Count == 5 {
			refused++
		}
	}
	if refused < 2 {
		t.Fatalf("the scale to 5 was sent %d times; want a refusal then a retry", refused)
	}
}

// Errors Nomad answers: each is classified, and the scaler recovers.
func TestNomad_Errors(t *testing.T) {
	d := mustSleeper(t)
	tests := []struct {
		name   string
		fault  nomadfake.Fault
		count  int
		expect func(t *testing.T)
	}{
		{"compare-and-set lost", nomadfake.Fault{Method: "PUT", Path: `/scale$`, Status: 500, Times: 1,
			Body: "Enforcing job modify index 11: job exists with conflicting job modify index: 12"}, 3, nil},
		{"nomad unreachable for a while", nomadfake.Fault{Path: `/scale$`, Status: 503, Body: "No cluster leader", Times: 3}, 4, nil},
		{"scale status times out", nomadfake.Fault{Method: "GET", Path: `/scale$`, Delay: 20 * time.Second, Times: 1}, 2, nil},
	}
	n := mustNomad(t, d, func(o *NomadOptions) { o.CallTimeout = 500 * time.Millisecond })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d.Inject(tt.fault)
			defer d.Clear()
			_ = n.Scale(ctxT(t), tt.count)
			testenv.Eventually(t, 20*time.Second, "count reached despite the fault", func() (bool, string) {
				return d.Count() == tt.count, fmt.Sprint(d.Count())
			})
			waitList(t, n, tt.count)
		})
	}
	t.Run("policy maximum is not retried", func(t *testing.T) {
		sent := len(d.ScaleRequests())
		_ = n.Scale(ctxT(t), 7) // max 6
		testenv.Eventually(t, 10*time.Second, "refused request sent", func() (bool, string) {
			return len(d.ScaleRequests()) > sent, ""
		})
		_ = n.Scale(ctxT(t), 7)
		_ = n.Scale(ctxT(t), 3)
		testenv.Eventually(t, 10*time.Second, "next count applied", func() (bool, string) { return d.Count() == 3, fmt.Sprint(d.Count()) })
		var sevens int
		for _, r := range d.ScaleRequests()[sent:] {
			if *r.Count == 7 {
				sevens++
			}
		}
		if sevens != 1 {
			t.Fatalf("a count over the maximum was sent %d times", sevens)
		}
	})
	t.Run("job not found", func(t *testing.T) {
		other := mustNomad(t, d, func(o *NomadOptions) { o.Job = "nosuch" })
		_, err := other.List(ctxT(t))
		if !errors.Is(err, ErrNomadJobNotFound) {
			t.Fatalf("List of a missing job: %v", err)
		}
	})
	t.Run("list times out", func(t *testing.T) {
		d.Inject(nomadfake.Fault{Method: "GET", Path: `/allocations$`, Delay: 20 * time.Second, Times: 1})
		defer d.Clear()
		_, err := n.List(ctxT(t))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("List against a stalled Nomad: %v, want a deadline error", err)
		}
	})
	t.Run("unknown worker", func(t *testing.T) {
		if err := n.Kill(ctxT(t), "w-nosuch"); !errors.Is(err, ErrNoSuchWorker) {
			t.Fatalf("Kill(w-nosuch) = %v", err)
		}
		if _, err := n.Start(ctxT(t), "w-nosuch"); !errors.Is(err, ErrPlacedByNomad) {
			t.Fatalf("Start(w-nosuch) = %v", err)
		}
	})
}

// Kill signals SIGKILL to the task: Nomad restarts it in place (same
// allocation, so the same worker id and data), and Exits reports it.
func TestNomad_KillRestartsInPlace(t *testing.T) {
	d := mustSleeper(t)
	n := mustNomad(t, d)
	list := waitList(t, n, 2)
	victim := list[0].ID
	pidBefore := 0
	for alloc, pid := range d.Running() {
		if NomadWorkerID(alloc) == victim {
			pidBefore = pid
		}
	}
	if err := n.Kill(ctxT(t), victim); err != nil {
		t.Fatal(err)
	}
	if sig := d.Signals(); len(sig) != 1 || !strings.HasSuffix(sig[0], " worker SIGKILL") {
		t.Fatalf("signals = %v", sig)
	}
	select {
	case id := <-n.Exits():
		if id != victim {
			t.Fatalf("Exits reported %s, want %s", id, victim)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Exits did not report the killed worker")
	}
	testenv.Eventually(t, 10*time.Second, "restarted in place", func() (bool, string) {
		for alloc, pid := range d.Running() {
			if NomadWorkerID(alloc) == victim && pid != pidBefore {
				return true, ""
			}
		}
		return false, fmt.Sprint(d.Running())
	})
	got := waitList(t, n, 2)
	if !slices.ContainsFunc(got, func(in Instance) bool { return in.ID == victim }) {
		t.Fatalf("worker %s not back under the same id: %v", victim, got)
	}
	// While the task restarts, CanRevive says Nomad brings it back.
	if n.CanRevive(victim) {
		t.Errorf("CanRevive(%s) while it runs", victim)
	}
}

// Stop stops the allocation and Nomad places a replacement: a new worker.
func TestNomad_StopReschedules(t *testing.T) {
	d := mustSleeper(t)
	n := mustNomad(t, d)
	list := waitList(t, n, 2)
	if err := n.Stop(ctxT(t), list[1].ID); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "replacement placed", func() (bool, string) {
		got, err := n.List(ctxT(t))
		if err != nil || len(got) != 2 {
			return false, fmt.Sprint(got, err)
		}
		return !slices.ContainsFunc(got, func(in Instance) bool { return in.ID == list[1].ID }), fmt.Sprint(got)
	})
	if d.Count() != 2 {
		t.Fatalf("stop changed the count to %d", d.Count())
	}
}

// The double's blocking queries return when the state changes, and after
// the wait with the same index when it does not (what the watch relies on).
func TestNomadDouble_BlockingQuery(t *testing.T) {
	// Allocations turn healthy after an hour: nothing changes by itself.
	d := mustSleeper(t, func(o *nomadfake.Options) { o.MinHealthyTime = time.Hour })
	c, err := nomad.NewClient(&nomad.Config{Address: d.URL()})
	if err != nil {
		t.Fatal(err)
	}
	_, meta, err := c.Jobs().Allocations("rideshare-worker", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	idx := meta.LastIndex
	var ure nomad.UnexpectedResponseError
	// A scale request with a stale job modify index loses its
	// compare-and-set (and changes nothing).
	_, _, err = c.Jobs().ScaleWithRequest("rideshare-worker", &nomad.ScalingRequest{Count: new(int64(3)),
		Target: map[string]string{"Job": "rideshare-worker", "Group": "worker"}, JobModifyIndex: 1}, nil)
	if !errors.As(err, &ure) || ure.StatusCode() != 500 || !strings.Contains(ure.Body(), "conflicting job modify index") {
		t.Fatalf("scale with a stale modify index: %v", err)
	}
	// No change: the query returns after its wait, at the same index.
	_, meta2, err := c.Jobs().Allocations("rideshare-worker", false, &nomad.QueryOptions{WaitIndex: idx, WaitTime: 300 * time.Millisecond})
	if err != nil || meta2.LastIndex != idx {
		t.Fatalf("unchanged blocking query: index %d -> %v, %v", idx, meta2, err)
	}
	// A change wakes it: a scale-out while the query waits for 10 s.
	type res struct {
		idx   uint64
		count int
		err   error
	}
	done := make(chan res, 1)
	go func() {
		stubs, m, err := c.Jobs().Allocations("rideshare-worker", false, &nomad.QueryOptions{WaitIndex: idx, WaitTime: 10 * time.Second})
		if err != nil {
			done <- res{err: err}
			return
		}
		done <- res{idx: m.LastIndex, count: len(stubs)}
	}()
	three := 3
	if _, _, err := c.Jobs().Scale("rideshare-worker", "worker", &three, "test", false, nil, nil); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.idx <= idx || r.count < 3 {
		t.Fatalf("blocking query after a change: %+v (index was %d)", r, idx)
	}
	// Nomad's error answers, through the api client.
	_, _, err = c.Jobs().ScaleStatus("nosuch", nil)
	if !errors.As(err, &ure) || ure.StatusCode() != http.StatusNotFound || !strings.Contains(ure.Body(), `job "nosuch" not found`) {
		t.Fatalf("scale status of a missing job: %v", err)
	}
	err = c.Allocations().Signal(&nomad.Allocation{ID: "00000000-0000-0000-0000-000000000000"}, nil, "worker", "SIGKILL")
	if !errors.As(err, &ure) || ure.StatusCode() != 404 || !strings.Contains(ure.Body(), "Unknown allocation") {
		t.Fatalf("signal to an unknown allocation: %v", err)
	}
}
