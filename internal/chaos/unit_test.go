package chaos

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// syncWriter makes a bytes.Buffer safe for concurrent log writes.
type syncWriter struct {
	mu  sync.Mutex
	buf *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func TestStatsNearestRank(t *testing.T) {
	tests := []struct {
		name          string
		in            []float64
		p50, p99, max float64
	}{
		{"empty", nil, 0, 0, 0},
		{"one", []float64{1.5}, 1.5, 1.5, 1.5},
		{"twenty", []float64{20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}, 10, 20, 20},
		{"hundred+1 keeps the max out of p99", func() []float64 {
			var x []float64
			for i := 1; i <= 101; i++ {
				x = append(x, float64(i))
			}
			return x
		}(), 51, 100, 101},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := statsOf(tc.in)
			if s.P50 != tc.p50 || s.P99 != tc.p99 || s.Max != tc.max || s.N != len(tc.in) {
				t.Fatalf("statsOf(%v) = %+v, want p50 %v p99 %v max %v", tc.in, s, tc.p50, tc.p99, tc.max)
			}
		})
	}
}

func TestCanonicalSumIgnoresRowOrderButNotTypes(t *testing.T) {
	a := [][]any{{int64(1), "ann"}, {int64(2), "bob"}}
	b := [][]any{{int64(2), "bob"}, {int64(1), "ann"}}
	if canonicalSum("users", a) != canonicalSum("users", b) {
		t.Fatal("row order changed the checksum")
	}
	c := [][]any{{"1", "ann"}, {int64(2), "bob"}}
	if canonicalSum("users", a) == canonicalSum("users", c) {
		t.Fatal("an integer and a string with the same digits gave the same checksum")
	}
	if canonicalSum("users", a) == canonicalSum("rides", a) {
		t.Fatal("the table name is not part of the checksum")
	}
	if canonicalSum("t", nil) == canonicalSum("t", [][]any{{nil}}) {
		t.Fatal("an empty table and a table with one NULL row gave the same checksum")
	}
}

// The unavailability measurement counts only acknowledgements of attempts
// sent after the fault: an attempt sent before and answered after might
// have been committed by the old master.
func TestWaitAckAfterIgnoresAttemptsSentBefore(t *testing.T) {
	rec := newRecorder()
	t0 := time.Now()
	w := &writeRec{ID: "a", Op: opAddUser}
	rec.acked(w, t0.Add(-time.Second), reply{Status: 200, Seq: 1}, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, ok := rec.waitAckAfter(ctx, t0); ok {
		t.Fatal("an attempt sent before the fault counted as recovery")
	}
	done := make(chan time.Time, 1)
	go func() {
		at, _ := rec.waitAckAfter(context.Background(), t0)
		done <- at
	}()
	rec.acked(&writeRec{ID: "b", Op: opAddUser}, t0.Add(time.Millisecond), reply{Status: 200, Seq: 2}, 0)
	select {
	case at := <-done:
		if at.Before(t0) {
			t.Fatalf("recovery at %v, before the fault", at)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitAckAfter did not see the acknowledgement")
	}
}

func TestAMQPHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"amqp://127.0.0.1:5672/":             "127.0.0.1:5672",
		"amqp://guest:guest@localhost:5673/": "localhost:5673",
		"amqp://rabbit/vhost":                "rabbit:5672",
	} {
		if got := amqpHostPort(in); got != want {
			t.Errorf("amqpHostPort(%q) = %q, want %q", in, got, want)
		}
	}
}
