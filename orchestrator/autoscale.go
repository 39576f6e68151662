package orchestrator

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// autoscaler implements guarantee 8: the timer starts at the first db/read;
// at the end of every window the number of slaves becomes
// clamp(ceil(reads_in_window / ReadsPerSlave), MinSlaves, MaxSlaves) and the
// count starts again. Only db/read calls count.
type autoscaler struct {
	opts    ScaleOptions
	reads   atomic.Int64
	once    sync.Once
	started chan struct{}
}

func newAutoscaler(opts ScaleOptions) *autoscaler {
	return &autoscaler{opts: opts, started: make(chan struct{})}
}

func (a *autoscaler) countRead() {
	a.reads.Add(1)
	a.once.Do(func() { close(a.started) })
}

// desiredFor is the scaling rule.
func (a *autoscaler) desiredFor(reads int64) int {
	rps := int64(a.opts.ReadsPerSlave)
	n := int((reads + rps - 1) / rps)
	return min(max(n, a.opts.MinSlaves, 1), a.opts.MaxSlaves)
}

func (a *autoscaler) run(ctx context.Context, set func(int)) {
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
		case <-t.C:
			set(a.desiredFor(a.reads.Swap(0)))
		}
	}
}
