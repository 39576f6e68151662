package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rideshare-dbaas/rideshare/internal/cmdutil"
	"github.com/rideshare-dbaas/rideshare/internal/reqid"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

// The master's write path is a pipeline of three stages, so that the
// transaction of one group commit runs while the previous one is being
// published and fenced:
//
//	intake     decodes each delivery (one write, or a batch of them) and
//	           asks the plugins for the writes' plans, outside any
//	           transaction; a delivery is ready once it is planned
//	committer  takes every ready delivery, runs their writes in one
//	           transaction (plans in process, interactive handlers within
//	           the batch budget) and commits it: one fsync
//	finisher   publishes the batches in order (confirmUpTo), checks the
//	           fence once for every batch confirmed before the check, then
//	           acks and answers
//
// Nothing is acked or answered before the finisher: a reply of 200 still
// means committed, fsynced, confirmed into every slave's queue, and this
// worker still master after that.

// write is one write of a delivery, with its plan and, once done, its reply.
type write struct {
	req     wire.WriteRequest
	op      Op
	invalid *wire.Reply // the answer to a write that cannot run (unknown op, no id)
	plan    *pluginapi.Plan
	perr    error // the planner's answer when there is no plan
	reply   *wire.Reply
	dup     bool // answered from _writes (metrics: a duplicate)
}

// inbound is one delivery and its writes.
type inbound struct {
	d        amqp.Delivery
	batch    bool // a WriteBatch (answered with a ReplyBatch), else one write
	writes   []*write
	next     int  // first write not yet run
	drop     bool // a write of it was dropped: dead-letter the delivery, not ack it
	requeued bool // sent back to the queue: neither acked nor answered here
}

func (in *inbound) done() bool { return in.next == len(in.writes) }

// committed is a group commit waiting for the finisher.
type committed struct {
	inbounds []*inbound // every write of each is done
	entries  []wire.Entry
	seq      uint64
}

// masterLoop runs the write pipeline over deliveries until ctx ends, the
// deliveries end, or a stage fails. Deliveries are acked and nacked
// through their own Acknowledger (the channel they came on); one that is
// never settled goes back to the queue when the channel closes.
func (w *Worker) masterLoop(ctx context.Context, epoch uint64, deliveries <-chan amqp.Delivery, replies Replier) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ready := make(chan *inbound, w.opts.BatchMax)
	done := make(chan committed, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := w.intake(ctx, deliveries, ready, replies); err != nil {
			cancel(err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := w.finisher(ctx, epoch, done, replies); err != nil {
			cancel(err)
		}
	}()
	err := w.committer(ctx, epoch, ready, done, replies)
	if err != nil {
		cancel(err)
	}
	close(done)
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// intake decodes deliveries and plans their writes, several deliveries
// at once: a planner that hangs holds back only its own delivery.
func (w *Worker) intake(ctx context.Context, deliveries <-chan amqp.Delivery, ready chan<- *inbound, replies Replier) error {
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var d amqp.Delivery
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case d, ok = <-deliveries:
			if !ok {
				return errors.New("write consumer closed")
			}
		}
		in, bad := w.decodeWrites(d)
		if bad != nil {
			// A malformed message is answered, not retried: no write of it
			// can be applied.
			replies.Reply(ctx, d, mustJSON(bad))
			_ = d.Ack(false)
			w.met.writes[writeRefused].Inc()
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			w.planWrites(ctx, in.writes)
			select {
			case ready <- in:
			case <-ctx.Done():
			}
		}()
	}
}

// decodeWrites reads a delivery: a WriteBatch or one WriteRequest.
func (w *Worker) decodeWrites(d amqp.Delivery) (*inbound, *wire.Reply) {
	in := &inbound{d: d}
	var reqs []wire.WriteRequest
	switch d.Type {
	case wire.TypeWrites:
		var b wire.WriteBatch
		if err := json.Unmarshal(d.Body, &b); err != nil || len(b.Writes) == 0 {
			return nil, &wire.Reply{Status: 400, Error: "malformed write batch", Worker: w.opts.ID}
		}
		in.batch, reqs = true, b.Writes
	case wire.TypeWrite:
		var req wire.WriteRequest
		if err := json.Unmarshal(d.Body, &req); err != nil {
			return nil, &wire.Reply{Status: 400, Error: "malformed write request", Worker: w.opts.ID}
		}
		reqs = []wire.WriteRequest{req}
	default:
		return nil, &wire.Reply{Status: 400, Error: fmt.Sprintf("unknown message type %q", d.Type), Worker: w.opts.ID}
	}
	for _, r := range reqs {
		if !reqid.Valid(r.RID) {
			// The orchestrator checks ids; anything else on the queue is
			// not logged or sent on to a plugin as it is.
			r.RID = ""
		}
		wr := &write{req: r}
		if r.ID == "" || r.Op == "" {
			wr.invalid = &wire.Reply{Status: 400, Error: "malformed write request: id and op are required", Worker: w.opts.ID}
		} else if op, ok := w.reg.Lookup(r.Op); !ok || op.Kind != pluginapi.Write {
			wr.invalid = &wire.Reply{Status: 400, Error: fmt.Sprintf("unknown write operation %q", r.Op), Worker: w.opts.ID}
		} else {
			wr.op = op
		}
		in.writes = append(in.writes, wr)
	}
	return in, nil
}

// planWrites asks for the plans of writes, outside any transaction.
func (w *Worker) planWrites(ctx context.Context, writes []*write) {
	var ops []Op
	var calls []pluginapi.Call
	var which []*write
	for _, wr := range writes {
		if wr.invalid == nil {
			ops = append(ops, wr.op)
			calls = append(calls, pluginapi.Call{Op: wr.req.Op, Params: wr.req.Params, RequestID: wr.req.RID})
			which = append(which, wr)
		}
	}
	for i, p := range w.plan(ctx, w.opts.WriteOpTimeout, ops, calls) {
		which[i].plan, which[i].perr = p.Plan, p.Err
	}
}

// plan asks each handler that can plan for the plans of its calls (ops[i]
// serves calls[i]), one request per handler, within timeout. A handler
// that cannot plan answers ErrInteractive for each of its calls.
func (w *Worker) plan(ctx context.Context, timeout time.Duration, ops []Op, calls []pluginapi.Call) []pluginapi.PlanResult {
	out := make([]pluginapi.PlanResult, len(calls))
	byHandler := map[pluginapi.Planner][]int{}
	for i, op := range ops {
		if pl, ok := op.Handler.(pluginapi.Planner); ok {
			byHandler[pl] = append(byHandler[pl], i)
		} else {
			out[i].Err = pluginapi.ErrInteractive
		}
	}
	for pl, idx := range byHandler {
		cs := make([]pluginapi.Call, len(idx))
		for k, i := range idx {
			cs[k] = calls[i]
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		res := pl.Plan(pctx, cs)
		cancel()
		for k, i := range idx {
			if k < len(res) {
				out[i] = res[k]
			} else {
				out[i].Err = fmt.Errorf("the handler answered %d plans for %d calls", len(res), len(cs))
			}
		}
	}
	return out
}

// committer runs group commits over ready deliveries until ctx ends.
func (w *Worker) committer(ctx context.Context, epoch uint64, ready <-chan *inbound, done chan<- committed, replies Replier) error {
	var carried []*inbound // partly run by the last batch: they go first
	for {
		batch := carried
		carried = nil
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case in := <-ready:
				batch = append(batch, in)
			}
		}
		batch = w.gather(batch, ready)
		c, rest, err := w.groupCommit(ctx, epoch, batch, replies)
		if err != nil {
			return err
		}
		carried = rest
		if len(c.inbounds) == 0 && len(c.entries) == 0 {
			continue
		}
		select {
		case done <- c:
		case <-ctx.Done():
			return nil
		}
	}
}

// gather adds whatever else is ready, up to BatchMax writes. amqp091 and
// the planners hand deliveries over from other goroutines: an empty
// receive may only mean they have not run yet, so it yields a few times
// before calling the batch complete.
func (w *Worker) gather(batch []*inbound, ready <-chan *inbound) []*inbound {
	n := 0
	for _, in := range batch {
		n += len(in.writes) - in.next
	}
	for idle := 0; idle < 3 && n < w.opts.BatchMax; {
		select {
		case in := <-ready:
			batch = append(batch, in)
			n += len(in.writes)
			idle = 0
		default:
			idle++
			runtime.Gosched()
		}
	}
	return batch
}

// groupCommit runs the writes of batch in one transaction, in order,
// until the handlers have used BatchBudget (the rest is returned, for the
// next batch), and commits. A batch that fails while applying its writes
// is redone one write per transaction, so that a poison write fails alone.
func (w *Worker) groupCommit(ctx context.Context, epoch uint64, batch []*inbound, replies Replier) (committed, []*inbound, error) {
	if err := w.holdUntilMaster(ctx, epoch); err != nil {
		return committed{}, nil, err
	}
	c, rest, err := w.runBatch(ctx, epoch, batch, 0)
	if !errors.Is(err, errPoison) {
		return c, rest, err
	}
	w.log.Warn("a batch failed while applying its writes; redoing them one by one", "deliveries", len(batch), "err", err)
	var all committed
	for _, in := range batch {
		for !in.done() && !in.requeued {
			c, _, err := w.runBatch(ctx, epoch, []*inbound{in}, 1)
			if err == nil {
				all.entries = append(all.entries, c.entries...)
				all.seq = max(all.seq, c.seq)
				continue
			}
			if !errors.Is(err, errPoison) {
				return committed{}, nil, err
			}
			w.poisoned(ctx, in, err)
		}
		if in.done() && !in.requeued {
			all.inbounds = append(all.inbounds, in)
		}
	}
	return all, nil, nil
}

// poisoned handles a write of in that failed alone: in goes back to the
// queue, or, on its last allowed delivery, the write is answered with an
// error and in is dead-lettered (by the finisher, once every write of it
// is answered and confirmed).
func (w *Worker) poisoned(ctx context.Context, in *inbound, cause error) {
	attempt := attempts(in.d) + 1
	wr := in.writes[in.next]
	if attempt < w.opts.DeliveryLimit {
		w.log.Warn("write failed; its delivery goes back to the queue", pluginapi.LogRequestID, wr.req.RID, "op", wr.req.Op,
			"write_id", wr.req.ID, "attempt", attempt, "limit", w.opts.DeliveryLimit, "err", cause)
		if err := w.requeue.Requeue(ctx, in.d, attempt); err != nil {
			w.log.Warn("requeueing with the attempt count failed; returning the delivery as it is", "err", err)
			_ = in.d.Nack(false, true)
		}
		in.requeued = true
		w.met.poisonRetries.Inc()
		return
	}
	w.log.Error("write failed on its last allowed delivery; answering an error and dead-lettering it",
		pluginapi.LogRequestID, wr.req.RID, "op", wr.req.Op, "write_id", wr.req.ID, "attempts", attempt, "dead_letter_queue", w.names.DeadQ, "err", cause)
	wr.reply = &wire.Reply{Status: 500, Worker: w.opts.ID,
		Error: fmt.Sprintf("write %q failed on %d tries and was dropped (kept in queue %s for inspection): %v",
			wr.req.ID, attempt, w.names.DeadQ, cause)}
	in.next++
	in.drop = true
}

// holdUntilMaster blocks while this worker cannot tell it is still master
// (ZooKeeper unreachable) and fails with ErrFenced once it knows it is not.
func (w *Worker) holdUntilMaster(ctx context.Context, epoch uint64) error {
	for {
		err := w.fenceBeforeCommit(ctx, epoch)
		if err == nil || errors.Is(err, ErrFenced) {
			return err
		}
		w.log.Warn("cannot confirm mastership; holding writes", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// runBatch is one transaction over batch's writes; limit > 0 runs at most
// that many.
func (w *Worker) runBatch(ctx context.Context, epoch uint64, batch []*inbound, limit int) (committed, []*inbound, error) {
	st := w.store.Load()
	b, err := st.Begin(ctx)
	if err != nil {
		return committed{}, nil, err
	}
	defer b.Rollback()
	b.StatementTimeout = 2 * w.opts.WriteOpTimeout
	start := time.Now()
	marks := make([]int, len(batch)) // where each delivery stood, to undo a lost batch
	for i, in := range batch {
		marks[i] = in.next
	}
	undo := func() {
		for i, in := range batch {
			for k := marks[i]; k < in.next; k++ {
				in.writes[k].reply, in.writes[k].dup = nil, false
			}
			in.next = marks[i]
		}
	}
	var entries []wire.Entry
	ran := 0
	cut := -1
outer:
	for i, in := range batch {
		for !in.done() {
			if (limit > 0 && ran == limit) || (ran > 0 && time.Since(start) > w.opts.BatchBudget) {
				cut = i
				break outer
			}
			e, err := w.applyWrite(ctx, b, epoch, in.writes[in.next])
			if err != nil {
				undo()
				if ctx.Err() != nil {
					return committed{}, nil, ctx.Err()
				}
				return committed{}, nil, fmt.Errorf("%w: %w", errPoison, err)
			}
			if e != nil {
				entries = append(entries, *e)
			}
			in.next++
			ran++
		}
	}
	if err := b.Commit(ctx); err != nil {
		undo()
		return committed{}, nil, fmt.Errorf("%w: %w", errPoison, err)
	}
	c := committed{entries: entries, seq: b.Seq()}
	var rest []*inbound
	for _, in := range batch {
		if in.done() {
			c.inbounds = append(c.inbounds, in)
		} else if limit == 0 {
			rest = append(rest, in)
		}
	}
	if cut >= 0 && limit == 0 {
		w.log.Warn("handlers used the batch's time budget; the rest waits for the next batch",
			"ran", ran, "deferred_deliveries", len(rest), "budget", w.opts.BatchBudget)
	}
	took := time.Since(start)
	w.met.batchWrites.Observe(float64(ran))
	w.met.commitSeconds.Observe(took.Seconds())
	w.log.Debug("batch committed", "writes", ran, "seq", c.seq, "took", took)
	return c, rest, nil
}

// applyWrite runs one write in its own savepoint and returns its log entry
// (nil when nothing is logged: an invalid write, a duplicate, or a handler
// failure, which may succeed when retried). Its reply is set on wr.
func (w *Worker) applyWrite(ctx context.Context, b *Batch, epoch uint64, wr *write) (*wire.Entry, error) {
	if wr.invalid != nil {
		wr.reply = wr.invalid
		return nil, nil
	}
	req := wr.req
	if f := w.faults.apply; f != nil {
		if err := f(req.ID); err != nil {
			return nil, err
		}
	}
	if r, ok, err := b.Lookup(ctx, req.ID); err != nil {
		return nil, err
	} else if ok {
		wr.reply, wr.dup = r, true // exactly once: a redelivered write gets its first reply
		return nil, nil
	}
	op := wr.op
	var result json.RawMessage
	var stmts []wire.Stmt
	var err error
	switch {
	case wr.plan != nil:
		stmts, err = b.Savepoint(ctx, func(db pluginapi.DB) error {
			res, err := pluginapi.RunPlan(ctx, db, wr.plan)
			result = res
			return err
		})
	case errors.Is(wr.perr, pluginapi.ErrInteractive):
		stmts, err = b.Savepoint(ctx, func(db pluginapi.DB) error {
			octx, cancel := context.WithTimeout(ctx, w.opts.WriteOpTimeout)
			defer cancel()
			res, err := op.Handler.Execute(pluginapi.WithRequestID(octx, req.RID), req.Op, req.Params, db)
			if err != nil {
				return overran(octx, w.opts.WriteOpTimeout, err)
			}
			if !json.Valid(res) {
				return fmt.Errorf("handler returned invalid JSON")
			}
			result = res
			return nil
		})
	default:
		err = wr.perr // refused or failed while planning
	}
	reply := &wire.Reply{Status: 200, Result: result, Worker: w.opts.ID}
	if errors.Is(err, errTxLost) {
		return nil, err // the batch is gone: it is rolled back and redone
	}
	if err != nil {
		if pe, ok := pluginapi.AsError(err); ok {
			reply = refusal(pe, w.opts.ID)
			stmts = nil
		} else {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			w.log.Error("handler failed", pluginapi.LogRequestID, req.RID, "op", req.Op, "handler", op.HandlerName, "err", err)
			wr.reply = &wire.Reply{Status: 502, Error: fmt.Sprintf("handler %s failed on %s: %v", op.HandlerName, req.Op, err), Handler: op.HandlerName, Worker: w.opts.ID}
			return nil, nil
		}
	}
	next := b.Next(wire.KindWrite, epoch)
	e := &next
	e.WriteID, e.Stmts, e.Reply = req.ID, stmts, reply
	reply.Seq, reply.Epoch = e.Seq, e.Epoch
	if err := b.Append(ctx, *e); err != nil {
		return nil, err
	}
	wr.reply = reply
	return e, nil
}

// finisher publishes committed batches in order, fences, acks and
// answers. It takes every batch already waiting, so that one fence check
// serves them all.
func (w *Worker) finisher(ctx context.Context, epoch uint64, done <-chan committed, replies Replier) error {
	for {
		var cs []committed
		c, ok := <-done
		if !ok {
			return nil
		}
		cs = append(cs, c)
	more:
		for {
			select {
			case c, ok := <-done:
				if !ok {
					break more
				}
				cs = append(cs, c)
			default:
				break more
			}
		}
		start := time.Now()
		for _, c := range cs {
			// Every entry up to what this batch answers — its own, and
			// those of writes answered from _writes, which a failed
			// publish may have left off the stream — must be confirmed on
			// the sync stream before anything is acked.
			if err := w.confirmUpTo(ctx, epoch, c.entries); err != nil {
				// Committed but not confirmed: not acked. The writes are
				// redelivered and answered from _writes, and the next
				// batch republishes what is missing.
				return fmt.Errorf("publish sync: %w", err)
			}
		}
		// Now that the entries are on the sync stream: if this worker is
		// still named, any new master's barrier comes after them, so it
		// has them; if not, it may not, and the writes must be redone.
		// While ZooKeeper only does not answer, the answers wait (a new
		// session, or its expiry, decides: the ZooKeeper loop makes this
		// worker exit when its session expired while it was master).
		for {
			err := w.fenceAfterConfirm(ctx, epoch)
			if err == nil {
				break
			}
			if errors.Is(err, ErrFenced) {
				for _, c := range cs {
					for _, in := range c.inbounds {
						_ = in.d.Nack(false, true)
					}
				}
				return err
			}
			w.log.Warn("cannot confirm mastership after the commit; holding the answers", "err", err)
			select {
			case <-ctx.Done():
				return fmt.Errorf("fence check after commit: %w", err)
			case <-time.After(100 * time.Millisecond):
			}
		}
		w.met.confirmSeconds.Observe(time.Since(start).Seconds())
		for _, c := range cs {
			for _, in := range c.inbounds {
				if err := w.settle(ctx, in, replies); err != nil {
					return err
				}
			}
		}
	}
}

// settle acks in (or, when a write of it was dropped, dead-letters it)
// and answers it.
// A failed ack means the channel is gone: the session ends, and the
// delivery comes again, to be answered from _writes. An acked delivery is
// always answered, even if the pipeline is stopping meanwhile.
func (w *Worker) settle(ctx context.Context, in *inbound, replies Replier) error {
	ctx = context.WithoutCancel(ctx)
	var err error
	if in.drop {
		err = in.d.Nack(false, false) // the queue dead-letters it
	} else {
		err = in.d.Ack(false)
	}
	if err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	for _, wr := range in.writes {
		w.met.writes[writeOutcome(wr)].Inc()
		w.logOutcome("write", wr.req.RID, wr.req.Op, wr.reply)
	}
	if in.batch {
		out := wire.ReplyBatch{Replies: make([]wire.Reply, len(in.writes))}
		for i, wr := range in.writes {
			out.Replies[i] = *wr.reply
		}
		replies.Reply(ctx, in.d, mustJSON(out))
		return nil
	}
	replies.Reply(ctx, in.d, mustJSON(in.writes[0].reply))
	return nil
}

// logOutcome logs one answered read or write (what) at trace level, with
// its request id: "write applied" (committed, confirmed on the sync
// stream and answered), "read served", or "... refused" / "... failed"
// with the status and the error.
func (w *Worker) logOutcome(what, rid, op string, r *wire.Reply) {
	if !w.log.Enabled(context.Background(), cmdutil.LevelTrace) {
		return
	}
	switch {
	case r.Status == 200 && what == "write":
		w.log.Log(context.Background(), cmdutil.LevelTrace, "write applied", pluginapi.LogRequestID, rid, "op", op, "seq", r.Seq)
	case r.Status == 200:
		w.log.Log(context.Background(), cmdutil.LevelTrace, "read served", pluginapi.LogRequestID, rid, "op", op, "seq", r.Seq)
	case r.Status < 500:
		w.log.Log(context.Background(), cmdutil.LevelTrace, what+" refused", pluginapi.LogRequestID, rid, "op", op, "seq", r.Seq, "status", r.Status, "code", r.Code, "error", r.Error)
	default:
		w.log.Log(context.Background(), cmdutil.LevelTrace, what+" failed", pluginapi.LogRequestID, rid, "op", op, "status", r.Status, "error", r.Error)
	}
}
