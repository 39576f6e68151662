package orchestrator

import (
	"context"
	"testing"
	"time"
)

func TestAutoscalerRule(t *testing.T) {
	a := newAutoscaler(ScaleOptions{ReadsPerSlave: 20, MinSlaves: 1, MaxSlaves: 5})
	tests := []struct {
		name  string
		reads int64
		want  int
	}{
		{"no reads keeps one slave", 0, 1},
		{"one read", 1, 1},
		{"exactly one slave's worth", 20, 1},
		{"one more read", 21, 2},
		{"45 reads", 45, 3},
		{"capped at max", 1000, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := a.desiredFor(tt.reads); got != tt.want {
				t.Fatalf("desiredFor(%d) = %d, want %d", tt.reads, got, tt.want)
			}
		})
	}
	b := newAutoscaler(ScaleOptions{ReadsPerSlave: 10, MinSlaves: 2, MaxSlaves: 4})
	if got := b.desiredFor(0); got != 2 {
		t.Fatalf("min slaves not honoured: %d", got)
	}
}

// The window starts at the first read, and each window's count is reset.
func TestAutoscalerWindows(t *testing.T) {
	a := newAutoscaler(ScaleOptions{Window: 300 * time.Millisecond, ReadsPerSlave: 2, MinSlaves: 1, MaxSlaves: 10})
	got := make(chan int, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.run(ctx, func(n int) { got <- n })
	select {
	case n := <-got:
		t.Fatalf("scaled to %d before any read", n)
	case <-time.After(400 * time.Millisecond):
	}
	for range 7 {
		a.countRead()
	}
	if n := <-got; n != 4 {
		t.Fatalf("7 reads at 2 per slave: got %d slaves, want 4", n)
	}
	if n := <-got; n != 1 {
		t.Fatalf("a quiet window: got %d slaves, want 1", n)
	}
}
