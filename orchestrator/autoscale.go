package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// autoscaler implements guarantee 8: the timer starts at the first db/read;
// at the end of every window the number of slaves becomes
// clamp(ceil(reads_in_window / ReadsPerSlave), MinSlaves, MaxSlaves) and the
// count starts again. Only db/read calls count.
//
// An operator can pin the slave count (PUT /api/v1/scale): windows go on
// being counted and their decisions recorded, but the pinned count is what
// the cluster keeps until it is handed back (DELETE /api/v1/scale), which
// restores the autoscaler's latest decision.
type autoscaler struct {
	opts    ScaleOptions
	reads   atomic.Int64
	once    sync.Once
	started chan struct{}

	mu          sync.Mutex
	set         func(int) // the cluster's setDesired
	onDecision  func(d ScaleDecision, prev int)
	windowStart time.Time // zero until the first read
	auto        int       // the autoscaler's own latest choice
	current     int       // what the cluster was told to keep
	pinned      int       // 0: not pinned
	last        *ScaleDecision
}

// Reasons of a scaling decision.
const (
	ReasonAutoscaler = "autoscaler" // a window ended
	ReasonPinned     = "pinned"     // an operator pinned the count
	ReasonReleased   = "released"   // an operator handed it back
)

// ScaleDecision is one decision, as the API, the page and the CLI show it.
type ScaleDecision struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
	Reads  int64     `json:"reads"` // reads in the window that ended (autoscaler decisions)
	Slaves int       `json:"slaves"`
	Why    string    `json:"why"`
}

// ScaleState is the autoscaler's state (GET /api/v1/scale).
type ScaleState struct {
	Window        string         `json:"window"`
	WindowSeconds float64        `json:"window_seconds"`
	ReadsPerSlave int            `json:"reads_per_slave"`
	MinSlaves     int            `json:"min_slaves"`
	MaxSlaves     int            `json:"max_slaves"`
	Reads         int64          `json:"reads"`                    // in the current window
	WindowStarted *time.Time     `json:"window_started,omitempty"` // nil until the first read
	NextDecision  *time.Time     `json:"next_decision,omitempty"`  // end of the current window
	Slaves        int            `json:"slaves"`                   // what the cluster keeps now
	Autoscaled    int            `json:"autoscaled"`               // the autoscaler's own choice
	Pinned        *int           `json:"pinned"`                   // null: the autoscaler decides
	Last          *ScaleDecision `json:"last_decision,omitempty"`  // the latest decision
}

// ErrPinRange: a pinned count outside [1, MaxSlaves].
var ErrPinRange = errors.New("slave count out of range")

func newAutoscaler(opts ScaleOptions) *autoscaler {
	start := max(opts.MinSlaves, 1)
	return &autoscaler{opts: opts, started: make(chan struct{}), auto: start, current: start}
}

func (a *autoscaler) countRead() {
	a.reads.Add(1)
	a.once.Do(func() {
		a.mu.Lock()
		a.windowStart = time.Now()
		a.mu.Unlock()
		close(a.started)
	})
}

// desiredFor is the scaling rule.
func (a *autoscaler) desiredFor(reads int64) int {
	rps := int64(a.opts.ReadsPerSlave)
	n := int((reads + rps - 1) / rps)
	return min(max(n, a.opts.MinSlaves, 1), a.opts.MaxSlaves)
}

// bind gives the autoscaler the function that changes the cluster's
// desired slave count.
func (a *autoscaler) bind(set func(int)) {
	a.mu.Lock()
	a.set = set
	a.mu.Unlock()
}

func (a *autoscaler) run(ctx context.Context, set func(int)) {
	a.bind(set)
	select {
	case <-ctx.Done():
		return
	case <-a.started:
	}
	t := time.NewTicker(a.opts.Window)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			a.windowEnded(now, a.reads.Swap(0))
		}
	}
}

func (a *autoscaler) windowEnded(now time.Time, reads int64) {
	n := a.desiredFor(reads)
	why := fmt.Sprintf("%d reads in the %s window at %d per slave", reads, a.opts.Window, a.opts.ReadsPerSlave)
	if raw := int((reads + int64(a.opts.ReadsPerSlave) - 1) / int64(a.opts.ReadsPerSlave)); raw != n {
		why += fmt.Sprintf(" (%d, clamped to %d..%d)", raw, max(a.opts.MinSlaves, 1), a.opts.MaxSlaves)
	}
	a.mu.Lock()
	a.windowStart = now
	a.auto = n
	if a.pinned != 0 {
		why += fmt.Sprintf("; pinned at %d by an operator", a.pinned)
		n = a.pinned
	}
	a.decideLocked(ScaleDecision{At: now, Reason: ReasonAutoscaler, Reads: reads, Slaves: n, Why: why})
	a.mu.Unlock()
}

// decideLocked applies d; a.mu is held. The cluster's setDesired only
// takes its own lock and pokes the reconciler, so calling it here is safe.
func (a *autoscaler) decideLocked(d ScaleDecision) {
	prev := a.current
	a.current = d.Slaves
	a.last = &d
	if a.set != nil {
		a.set(d.Slaves)
	}
	if a.onDecision != nil {
		a.onDecision(d, prev)
	}
}

// pin makes the cluster keep n slaves until release.
func (a *autoscaler) pin(n int) (ScaleDecision, error) {
	if n < 1 || n > a.opts.MaxSlaves {
		return ScaleDecision{}, fmt.Errorf("%w: %d is not in 1..%d (--max-slaves)", ErrPinRange, n, a.opts.MaxSlaves)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pinned = n
	d := ScaleDecision{At: time.Now(), Reason: ReasonPinned, Slaves: n, Why: fmt.Sprintf("pinned at %d by an operator", n)}
	a.decideLocked(d)
	return d, nil
}

// release hands the count back to the autoscaler, whose latest choice
// applies at once.
func (a *autoscaler) release() ScaleDecision {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pinned = 0
	d := ScaleDecision{At: time.Now(), Reason: ReasonReleased, Slaves: a.auto,
		Why: fmt.Sprintf("handed back to the autoscaler, whose latest choice is %d", a.auto)}
	a.decideLocked(d)
	return d
}

func (a *autoscaler) state() ScaleState {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := ScaleState{
		Window: a.opts.Window.String(), WindowSeconds: a.opts.Window.Seconds(),
		ReadsPerSlave: a.opts.ReadsPerSlave, MinSlaves: a.opts.MinSlaves, MaxSlaves: a.opts.MaxSlaves,
		Reads: a.reads.Load(), Slaves: a.current, Autoscaled: a.auto,
	}
	if !a.windowStart.IsZero() {
		ws, next := a.windowStart, a.windowStart.Add(a.opts.Window)
		s.WindowStarted, s.NextDecision = &ws, &next
	}
	if a.pinned != 0 {
		p := a.pinned
		s.Pinned = &p
	}
	if a.last != nil {
		d := *a.last
		s.Last = &d
	}
	return s
}
