package bench

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunExactlyNClients(t *testing.T) {
	const clients = 5
	const warmup = 50 * time.Millisecond
	var inFlight, most, calls, warmCalls atomic.Int64
	var mu sync.Mutex
	seen := map[int]bool{}
	// Each client's first call waits until all are in flight at once: the
	// load then had (at least) clients goroutines, whatever the machine's
	// speed; most checks it never had more.
	all := make(chan struct{})
	var arrived atomic.Int64
	testStart := time.Now()
	op := func(ctx context.Context, client int, seq int64) error {
		if time.Now().Before(testStart.Add(warmup)) {
			warmCalls.Add(1) // surely in Run's warm-up, which starts later
		}
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		calls.Add(1)
		mu.Lock()
		seen[client] = true
		mu.Unlock()
		if seq == 0 {
			if arrived.Add(1) == clients {
				close(all)
			}
			select {
			case <-all:
			case <-time.After(30 * time.Second):
				return errors.New("the other clients never came")
			}
		}
		time.Sleep(2 * time.Millisecond) // a request's latency
		if seq%4 == 3 {
			return errors.New("refused")
		}
		return nil
	}
	res, err := Run(context.Background(), Spec{Clients: clients, Warmup: warmup, Duration: 300 * time.Millisecond}, op)
	if err != nil {
		t.Fatal(err)
	}
	if got := most.Load(); got != clients {
		t.Errorf("at most %d calls in flight, want exactly %d", got, clients)
	}
	if len(seen) != clients {
		t.Errorf("%d clients called, want %d", len(seen), clients)
	}
	if res.Requests == 0 || res.Errors == 0 {
		t.Fatalf("requests %d, errors %d: want both counted", res.Requests, res.Errors)
	}
	// Warm-up calls are not counted.
	if res.Requests+res.Errors > calls.Load()-warmCalls.Load() {
		t.Errorf("counted %d of %d calls, %d of them in the warm-up", res.Requests+res.Errors, calls.Load(), warmCalls.Load())
	}
	if res.FirstError != "refused" {
		t.Errorf("first error %q", res.FirstError)
	}
	if res.Latency.P50 < 2 || res.Latency.Max < res.Latency.P99 {
		t.Errorf("latency %+v: want p50 ≥ 2 ms (each call sleeps 2 ms) and max ≥ p99", res.Latency)
	}
	if want := float64(res.Requests) / 0.3; res.Throughput != want {
		t.Errorf("throughput %v, want requests / duration = %v", res.Throughput, want)
	}
}

func TestRunOnMeasure(t *testing.T) {
	var mu sync.Mutex
	var events []bool
	var at []time.Time
	start := time.Now()
	_, err := Run(context.Background(), Spec{Clients: 2, Warmup: 100 * time.Millisecond, Duration: 100 * time.Millisecond,
		OnMeasure: func(begin bool) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, begin)
			at = append(at, time.Now())
		}}, func(ctx context.Context, client int, seq int64) error {
		time.Sleep(time.Millisecond)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 2 || !events[0] || events[1] {
		t.Fatalf("OnMeasure calls %v, want [true false]", events)
	}
	if at[0].Sub(start) < 100*time.Millisecond || at[1].Sub(start) < 200*time.Millisecond {
		t.Errorf("OnMeasure at %v and %v after the start: want after the warm-up, then after the duration", at[0].Sub(start), at[1].Sub(start))
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Spec{Clients: 3, Duration: time.Hour}, func(ctx context.Context, client int, seq int64) error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Millisecond):
				return nil
			}
		})
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

func TestRunRejectsBadSpecs(t *testing.T) {
	op := func(context.Context, int, int64) error { return nil }
	for _, tt := range []struct {
		name string
		spec Spec
	}{
		{"no clients", Spec{Clients: 0, Duration: time.Second}},
		{"no duration", Spec{Clients: 1}},
		{"negative duration", Spec{Clients: 1, Duration: -time.Second}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Run(context.Background(), tt.spec, op); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestRunMinRequestsExtendsTheWindow(t *testing.T) {
	// Every call takes longer than the window: without MinRequests the
	// load would serve nothing.
	slow := func(ctx context.Context, client int, seq int64) error {
		time.Sleep(150 * time.Millisecond)
		return nil
	}
	spec := Spec{Clients: 2, Duration: 50 * time.Millisecond}
	res, err := Run(context.Background(), spec, slow)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 0 || res.Elapsed != 0.05 {
		t.Fatalf("without MinRequests: %d requests over %vs, want 0 over 0.05s", res.Requests, res.Elapsed)
	}
	var ended atomic.Bool
	spec.MinRequests = 3
	spec.OnMeasure = func(begin bool) {
		if !begin {
			ended.Store(true)
		}
	}
	res, err = Run(context.Background(), spec, slow)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests < 3 || res.Elapsed < 0.15 || !ended.Load() {
		t.Fatalf("with MinRequests 3: %d requests over %vs (OnMeasure(false) called: %v)", res.Requests, res.Elapsed, ended.Load())
	}
	if want := float64(res.Requests) / res.Elapsed; res.Throughput != want {
		t.Errorf("throughput %v, want %v", res.Throughput, want)
	}
}
