package chaos

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Violation is one broken guarantee.
type Violation struct {
	Kind   string    `json:"kind"`
	Detail string    `json:"detail"`
	At     time.Time `json:"at"`
}

// writeRec is one logical write: one idempotency id, however many HTTP
// attempts it took.
type writeRec struct {
	ID       string `json:"id"`
	Op       string `json:"op"`
	Client   int    `json:"client"`
	Username string `json:"username,omitempty"` // users.add: the user; rides.create: created_by; rides.join: the joiner
	TS       int64  `json:"timestamp,omitempty"`
	Source   int    `json:"source,omitempty"`
	Dest     int    `json:"destination,omitempty"`
	RideID   int64  `json:"ride_id,omitempty"` // rides.create: from the reply; rides.join: the ride joined

	Attempts int       `json:"attempts"`
	First    time.Time `json:"first_sent"`
	Acked    bool      `json:"acked"`
	AckedAt  time.Time `json:"acked_at,omitzero"`
	Seq      uint64    `json:"seq,omitempty"`
	Status   int       `json:"status,omitempty"`
}

// ack is one acknowledged attempt: when it was sent and answered.
type ack struct {
	sent, at time.Time
	seq      uint64
}

// recorder is what the clients and the injector share.
type recorder struct {
	mu         sync.Mutex
	writes     []*writeRec
	acks       []ack // in the order they were answered
	advanced   chan struct{}
	violations []Violation
	rideIDs    map[int64]string // rideId → write id that got it
	maxAcked   uint64

	attempts, retries        int
	reads, readRetries       int
	rywChecked, rywUncertain int
	rywCut                   int
	status                   map[string]int // "write 503", "read 200", ...
}

func newRecorder() *recorder {
	return &recorder{advanced: make(chan struct{}), rideIDs: map[int64]string{}, status: map[string]int{}}
}

func (r *recorder) violation(kind, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.violations = append(r.violations, Violation{Kind: kind, Detail: fmt.Sprintf(format, args...), At: time.Now()})
}

func (r *recorder) add(w *writeRec) {
	r.mu.Lock()
	r.writes = append(r.writes, w)
	r.mu.Unlock()
}

func (r *recorder) count(key string) {
	r.mu.Lock()
	r.status[key]++
	r.mu.Unlock()
}

// attempt records that w is being sent (again).
func (r *recorder) attempt(w *writeRec, sent time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w.Attempts == 0 {
		w.First = sent
	} else {
		r.retries++
	}
	w.Attempts++
	r.attempts++
}

// acked records the acknowledgement of w by the attempt sent at sent
// (rideID: what a rides.create answered).
func (r *recorder) acked(w *writeRec, sent time.Time, rep reply, rideID int64) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	w.Acked, w.AckedAt, w.Seq, w.Status = true, now, rep.Seq, rep.Status
	if w.Op == opCreate {
		w.RideID = rideID
	}
	r.acks = append(r.acks, ack{sent: sent, at: now, seq: rep.Seq})
	r.maxAcked = max(r.maxAcked, rep.Seq)
	if w.Op == opCreate && rep.Status == 200 {
		if prev, dup := r.rideIDs[w.RideID]; dup {
			r.violations = append(r.violations, Violation{Kind: "duplicate-ride-id", At: now,
				Detail: fmt.Sprintf("rideId %d acknowledged to write %s and to write %s", w.RideID, prev, w.ID)})
		}
		r.rideIDs[w.RideID] = w.ID
	}
	close(r.advanced)
	r.advanced = make(chan struct{})
}

func (r *recorder) ackedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.acks)
}

func (r *recorder) latestSeq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxAcked
}

// waitAckAfter waits for the first acknowledgement of an attempt sent at or
// after t (so it was answered by a master alive after t) and returns when
// it was answered.
func (r *recorder) waitAckAfter(ctx context.Context, t time.Time) (time.Time, bool) {
	for {
		r.mu.Lock()
		ch := r.advanced
		i := sort.Search(len(r.acks), func(i int) bool { return !r.acks[i].at.Before(t) })
		for ; i < len(r.acks); i++ {
			if !r.acks[i].sent.Before(t) {
				at := r.acks[i].at
				r.mu.Unlock()
				return at, true
			}
		}
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return time.Time{}, false
		}
	}
}

func (r *recorder) snapshotWrites() []writeRec {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]writeRec, len(r.writes))
	for i, w := range r.writes {
		out[i] = *w
	}
	return out
}

func (r *recorder) snapshotViolations() []Violation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Violation(nil), r.violations...)
}
