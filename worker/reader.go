package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rideshare-dbaas/rideshare/internal/reqid"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

// HeaderDeadline carries a read's deadline (Unix milliseconds).
const HeaderDeadline = "x-deadline-ms"

// runReads consumes readQ with ReadConcurrency deliveries (each one read,
// or a batch of them) in hand at once, and as many goroutines serving
// them: SQLite in WAL mode serves many readers beside the applier. A
// delivery is acked after its reply is published; a slave that dies with
// reads in hand leaves them unacked, and RabbitMQ gives them to another
// slave.
func (w *Worker) runReads(ctx context.Context, conn *amqp.Connection, replies Replier) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open read channel: %w", err)
	}
	defer ch.Close()
	if err := ch.Qos(w.opts.ReadConcurrency, 0, false); err != nil {
		return fmt.Errorf("qos: %w", err)
	}
	deliveries, err := ch.Consume(w.names.ReadQ, "read-"+w.opts.ID, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %s: %w", w.names.ReadQ, err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range w.opts.ReadConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case d, ok := <-deliveries:
					if !ok {
						cancel(errors.New("read consumer closed"))
						return
					}
					body, ok := w.serveReads(ctx, d)
					if !ok { // stopping: let another slave answer
						_ = d.Nack(false, true)
						cancel(nil)
						return
					}
					// A read taken is answered even if we are stopping
					// meanwhile (scale-in): it must not be dropped.
					replies.Reply(context.WithoutCancel(ctx), d, body)
					if err := d.Ack(false); err != nil {
						cancel(fmt.Errorf("ack read: %w", err))
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// read is one read of a delivery.
type read struct {
	req     wire.ReadRequest
	op      Op
	reply   *wire.Reply // set when answered without running (invalid)
	plan    pluginapi.PlanResult
	outcome int // what serveRead's answer counts as (metrics), once the delivery is answered
}

// serveReads answers a delivery: one read (a Reply) or a batch (a
// ReplyBatch). ok is false when the worker stops before it could answer
// (the delivery goes back to the queue).
func (w *Worker) serveReads(ctx context.Context, d amqp.Delivery) (body []byte, ok bool) {
	var reqs []wire.ReadRequest
	batch := false
	switch d.Type {
	case wire.TypeReads:
		var b wire.ReadBatch
		if err := json.Unmarshal(d.Body, &b); err != nil || len(b.Reads) == 0 {
			return mustJSON(w.readDone(readRefused, &wire.Reply{Status: 400, Error: "malformed read batch", Worker: w.opts.ID})), true
		}
		reqs, batch = b.Reads, true
	case wire.TypeRead:
		var r wire.ReadRequest
		if err := json.Unmarshal(d.Body, &r); err != nil {
			return mustJSON(w.readDone(readRefused, &wire.Reply{Status: 400, Error: "malformed read request", Worker: w.opts.ID})), true
		}
		reqs = []wire.ReadRequest{r}
	default:
		return mustJSON(w.readDone(readRefused, &wire.Reply{Status: 400, Error: fmt.Sprintf("unknown message type %q", d.Type), Worker: w.opts.ID})), true
	}
	deadline := time.Now().Add(10 * time.Second)
	if v, ok := d.Headers[HeaderDeadline]; ok {
		if ms, err := toInt64(v); err == nil {
			deadline = time.UnixMilli(ms)
		}
	}
	reads := make([]*read, len(reqs))
	var ops []Op
	var calls []pluginapi.Call
	var which []*read
	for i, r := range reqs {
		if !reqid.Valid(r.RID) {
			// The orchestrator checks ids; anything else on the queue is
			// not logged or sent on to a plugin as it is.
			r.RID = ""
		}
		rd := &read{req: r, outcome: readRefused}
		reads[i] = rd
		op, known := w.reg.Lookup(r.Op)
		switch {
		case r.Op == "":
			rd.reply = &wire.Reply{Status: 400, Error: "malformed read request: op is required", Worker: w.opts.ID}
		case !known || op.Kind != pluginapi.Read:
			rd.reply = &wire.Reply{Status: 400, Error: fmt.Sprintf("unknown read operation %q", r.Op), Worker: w.opts.ID}
		default:
			rd.op = op
			ops, calls, which = append(ops, op), append(calls, pluginapi.Call{Op: r.Op, Params: r.Params, RequestID: r.RID}), append(which, rd)
		}
	}
	if len(which) > 0 {
		for i, p := range w.plan(ctx, min(w.opts.OpTimeout, time.Until(deadline)), ops, calls) {
			which[i].plan = p
		}
	}
	// The reads of a batch come from different clients: each is served on
	// its own, until its own deadline, so one waiting for a min_seq this
	// slave has not reached holds back nobody else.
	out := make([]wire.Reply, len(reads))
	stopped := false
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, rd := range reads {
		if rd.reply != nil {
			out[i] = *rd.reply
			continue
		}
		dl := deadline
		if rd.req.Deadline > 0 {
			dl = time.UnixMilli(rd.req.Deadline)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := w.serveRead(ctx, rd, dl)
			mu.Lock()
			defer mu.Unlock()
			if r == nil {
				stopped = true
				return
			}
			out[i] = *r
		}()
	}
	wg.Wait()
	if stopped {
		return nil, false
	}
	// Counted and logged only now: a delivery the worker gives back is
	// answered later, by whoever serves it then.
	for i, rd := range reads {
		w.met.reads[rd.outcome].Inc()
		w.logOutcome("read", rd.req.RID, rd.req.Op, &out[i])
	}
	if batch {
		return mustJSON(wire.ReplyBatch{Replies: out}), true
	}
	return mustJSON(&out[0]), true
}

// waitReadable waits until this slave can answer a read that needs
// minSeq: it has applied that much, and its log has reached the epoch of
// the master it knows (after a failover, until it applies the new
// master's epoch entry, what it holds beyond the old master's
// acknowledged writes may still be undone). It returns the store to read,
// or nil and why not.
func (w *Worker) waitReadable(ctx context.Context, minSeq uint64) (*Store, error) {
	nudge := time.AfterFunc(150*time.Millisecond, func() { signalChan(w.kick) })
	defer nudge.Stop()
	for {
		st := w.store.Load()
		ch := st.Advanced()
		seq, ep := st.Applied()
		w.mu.Lock()
		known := w.knownEpoch
		w.mu.Unlock()
		if seq >= minSeq && ep >= known {
			return st, nil
		}
		// The write is committed on the master; normally it is in flight
		// on our sync queue. If it does not show up soon, the nudge asks
		// the master.
		select {
		case <-ch: // applied more, or replaced by a snapshot
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond): // a new epoch became known
		}
	}
}

// serveRead runs one read once this slave has applied its min_seq; nil
// means the worker stops before that.
func (w *Worker) serveRead(ctx context.Context, rd *read, deadline time.Time) *wire.Reply {
	req, op := rd.req, rd.op
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if _, err := w.waitReadable(rctx, req.MinSeq); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		seq, ep := w.store.Load().Applied()
		return rd.done(readMinSeq, &wire.Reply{Status: 503, Error: fmt.Sprintf("slave has applied %d (epoch %d), read needs %d", seq, ep, req.MinSeq), Worker: w.opts.ID})
	}
	w.readMu.RLock()
	defer w.readMu.RUnlock()
	st := w.store.Load()
	seq, _ := st.Applied()
	if seq < req.MinSeq {
		// A snapshot was installed meanwhile and it is older than the read.
		return rd.done(readMinSeq, &wire.Reply{Status: 503, Error: fmt.Sprintf("slave has applied %d, read needs %d", seq, req.MinSeq), Worker: w.opts.ID})
	}
	// From here the read runs to its end even if the worker is stopping:
	// only its own deadline bounds it.
	ectx, ecancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer ecancel()
	var res json.RawMessage
	err := rd.plan.Err
	if rd.plan.Plan != nil || errors.Is(err, pluginapi.ErrInteractive) {
		db, done, rerr := st.Reader(ectx)
		if rerr != nil {
			return rd.done(readUnavailable, &wire.Reply{Status: 503, Error: rerr.Error(), Worker: w.opts.ID})
		}
		if rd.plan.Plan != nil {
			res, err = pluginapi.RunPlan(ectx, db, rd.plan.Plan)
		} else {
			octx, ocancel := context.WithTimeout(ectx, w.opts.OpTimeout)
			res, err = op.Handler.Execute(pluginapi.WithRequestID(octx, req.RID), req.Op, req.Params, db)
			if err != nil {
				err = overran(octx, w.opts.OpTimeout, err)
			}
			ocancel()
		}
		done()
	}
	if err != nil {
		if pe, ok := pluginapi.AsError(err); ok {
			r := refusal(pe, w.opts.ID)
			r.Seq = seq
			return rd.done(readRefused, r)
		}
		w.log.Error("handler failed", pluginapi.LogRequestID, req.RID, "op", req.Op, "handler", op.HandlerName, "err", err)
		outcome := readFailed
		if errors.Is(err, context.DeadlineExceeded) {
			outcome = readTimeout
		}
		return rd.done(outcome, &wire.Reply{Status: 502, Error: fmt.Sprintf("handler %s failed on %s: %v", op.HandlerName, req.Op, err), Handler: op.HandlerName, Worker: w.opts.ID})
	}
	if !json.Valid(res) {
		return rd.done(readFailed, &wire.Reply{Status: 502, Error: fmt.Sprintf("handler %s returned invalid JSON for %s", op.HandlerName, req.Op), Handler: op.HandlerName, Worker: w.opts.ID})
	}
	return rd.done(readOK, &wire.Reply{Status: 200, Seq: seq, Result: res, Worker: w.opts.ID})
}

// done notes what r, the read's answer, counts as.
func (rd *read) done(outcome int, r *wire.Reply) *wire.Reply {
	rd.outcome = outcome
	return r
}

// readDone counts the answer to a delivery answered as a whole (a
// malformed one).
func (w *Worker) readDone(outcome int, r *wire.Reply) *wire.Reply {
	w.met.reads[outcome].Inc()
	return r
}

// overran names a handler call that failed because it ran past its
// deadline (its own error then depends on where gRPC noticed: "context
// deadline exceeded", "RST_STREAM ... CANCEL", ...), so that the reply
// says what happened in the same words every time.
func overran(octx context.Context, limit time.Duration, err error) error {
	if _, refused := pluginapi.AsError(err); !refused && errors.Is(octx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no answer within %s: %w", limit, context.DeadlineExceeded)
	}
	return err
}
