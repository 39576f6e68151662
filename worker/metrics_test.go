package worker

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
)

// Every write outcome is counted once, when the write is answered: a
// write applied, the same id again (a duplicate), an unknown operation
// (refused), a poison write sent back to the queue, then dead-lettered on
// its last allowed delivery.
func TestMetrics_WriteOutcomes(t *testing.T) {
	n := mustNode(t, "m1")
	n.mustBeMaster(1)
	n.failApplying("poison")
	unknown := n.write("bad", "k", "v", false)
	unknown.Body, _ = json.Marshal(wire.WriteRequest{ID: "bad", Op: "no.such.op"})
	last := n.write("poison", "p", "x", true)
	last.Headers = amqp.Table{HeaderAttempts: int64(n.w.opts.DeliveryLimit - 1)}
	steps := []amqp.Delivery{
		n.write("w1", "a", "1", false),
		n.write("w1", "a", "1", true),
		unknown,
		n.write("poison", "p", "x", false),
		last,
	}
	for _, d := range steps {
		if err := n.session(1, d); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		outcome int
		want    float64
	}{
		{writeApplied, 1}, {writeDuplicate, 1}, {writeRefused, 1}, {writeFailed, 0}, {writeDeadLettered, 1},
	} {
		if got := counterValue(t, n.w.met.writes[c.outcome]); got != c.want {
			t.Errorf("writes{outcome=%s} = %v, want %v", writeOutcomeNames[c.outcome], got, c.want)
		}
	}
	if got := counterValue(t, n.w.met.poisonRetries); got != 1 {
		t.Errorf("poison retries = %v, want 1", got)
	}
}

// Read outcomes on a slave: one answered, one that waited past its
// deadline for a min_seq the slave never reached, one unknown operation.
func TestMetrics_ReadOutcomes(t *testing.T) {
	s, top := mustSlaveAfterOneWrite(t)
	dl := time.Now().Add(300 * time.Millisecond).UnixMilli()
	batch := wire.ReadBatch{Reads: []wire.ReadRequest{
		{Op: "kv.get", Params: json.RawMessage(`{"k":"a"}`), MinSeq: top},
		{Op: "kv.get", Params: json.RawMessage(`{"k":"a"}`), MinSeq: top + 100, Deadline: dl},
		{Op: "no.such.op"},
	}}
	if _, ok := s.w.serveReads(context.Background(), amqp.Delivery{Type: wire.TypeReads, Body: mustJSON(batch)}); !ok {
		t.Fatal("no answer")
	}
	for _, c := range []struct {
		outcome int
		want    float64
	}{
		{readOK, 1}, {readMinSeq, 1}, {readRefused, 1}, {readFailed, 0}, {readTimeout, 0}, {readUnavailable, 0},
	} {
		if got := counterValue(t, s.w.met.reads[c.outcome]); got != c.want {
			t.Errorf("reads{outcome=%s} = %v, want %v", readOutcomeNames[c.outcome], got, c.want)
		}
	}
}

// counterValue reads one counter (prometheus/testutil would add a module).
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gather: %v %v", mfs, err)
	}
	return mfs[0].GetMetric()[0].GetCounter().GetValue()
}

// A delivery the worker gives back (it stops while a read of the batch
// still waits) is not counted: whoever serves it later counts its reads.
func TestMetrics_ReadsGivenBackAreNotCounted(t *testing.T) {
	s, top := mustSlaveAfterOneWrite(t)
	batch := wire.ReadBatch{Reads: []wire.ReadRequest{
		{Op: "kv.get", Params: json.RawMessage(`{"k":"a"}`), MinSeq: top},
		{Op: "kv.get", Params: json.RawMessage(`{"k":"a"}`), MinSeq: top + 100},
		{Op: "no.such.op"},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	stop := time.AfterFunc(300*time.Millisecond, cancel)
	defer stop.Stop()
	if _, ok := s.w.serveReads(ctx, amqp.Delivery{Type: wire.TypeReads, Body: mustJSON(batch)}); ok {
		t.Fatal("answered a batch whose second read could not be served before the worker stopped")
	}
	for o := range nReadOutcomes {
		if got := counterValue(t, s.w.met.reads[o]); got != 0 {
			t.Errorf("reads{outcome=%s} = %v, want 0: the delivery was given back", readOutcomeNames[o], got)
		}
	}
}
