package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rideshare-dbaas/rideshare/internal/mq"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
)

// batcher gathers the requests that arrive while earlier messages are in
// flight into one message: a WriteBatch to writeQ or a ReadBatch to readQ,
// answered by one ReplyBatch. Under one client every request goes alone,
// at once (no timer, no added latency); under many, one publish, one
// delivery, one ack and one reply carry a whole batch, which is what
// RabbitMQ's cost per message makes worth it. Each request keeps its own
// id, deadline and reply.
type batcher[Req any] struct {
	in    chan *pending[Req]
	max   int
	slots chan struct{} // messages in flight
	send  func(ctx context.Context, reqs []Req) ([]wire.Reply, error)
}

type pending[Req any] struct {
	ctx  context.Context
	req  Req
	done chan result
}

type result struct {
	rep wire.Reply
	err error
}

func newBatcher[Req any](max, inflight int, send func(context.Context, []Req) ([]wire.Reply, error)) *batcher[Req] {
	return &batcher[Req]{in: make(chan *pending[Req], max), max: max, slots: make(chan struct{}, inflight), send: send}
}

// do sends req in the next message and waits for its reply.
func (b *batcher[Req]) do(ctx context.Context, req Req) (wire.Reply, error) {
	p := &pending[Req]{ctx: ctx, req: req, done: make(chan result, 1)}
	select {
	case b.in <- p:
	case <-ctx.Done():
		return wire.Reply{}, ctx.Err()
	}
	select {
	case r := <-p.done:
		return r.rep, r.err
	case <-ctx.Done():
		return wire.Reply{}, ctx.Err()
	}
}

// run sends batches until ctx ends. A message is made only when one of
// the in-flight slots is free; the requests that queue up meanwhile form
// the next one.
func (b *batcher[Req]) run(ctx context.Context) {
	for {
		var first *pending[Req]
		select {
		case <-ctx.Done():
			return
		case first = <-b.in:
		}
		select {
		case b.slots <- struct{}{}:
		case <-ctx.Done():
			first.done <- result{err: ctx.Err()}
			return
		}
		batch := []*pending[Req]{first}
	drain:
		for len(batch) < b.max {
			select {
			case p := <-b.in:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		go func() {
			defer func() { <-b.slots }()
			b.flush(ctx, batch)
		}()
	}
}

// flush sends one batch, bounded by the latest deadline among its
// requests (each request also gives up at its own).
func (b *batcher[Req]) flush(ctx context.Context, batch []*pending[Req]) {
	var live []*pending[Req]
	var deadline time.Time
	for _, p := range batch {
		if p.ctx.Err() != nil {
			continue // its caller gave up while it waited
		}
		if dl, ok := p.ctx.Deadline(); ok && dl.After(deadline) {
			deadline = dl
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		return
	}
	bctx, cancel := context.WithCancel(ctx)
	if !deadline.IsZero() {
		bctx, cancel = context.WithDeadline(ctx, deadline)
	}
	defer cancel()
	reqs := make([]Req, len(live))
	for i, p := range live {
		reqs[i] = p.req
	}
	reps, err := b.send(bctx, reqs)
	if err == nil && len(reps) != len(reqs) {
		err = fmt.Errorf("%w: %d replies for %d requests", errBadReply, len(reps), len(reqs))
	}
	for i, p := range live {
		if err != nil {
			p.done <- result{err: err}
		} else {
			p.done <- result{rep: reps[i]}
		}
	}
}

// errBadReply is a worker reply the orchestrator cannot read.
var errBadReply = errors.New("worker sent an unreadable reply")

// sendWrites publishes a WriteBatch (persistent, confirmed) and waits for
// its ReplyBatch.
func (o *Orchestrator) sendWrites(ctx context.Context, reqs []wire.WriteRequest) ([]wire.Reply, error) {
	body, err := json.Marshal(wire.WriteBatch{Writes: reqs})
	if err != nil {
		return nil, err
	}
	var headers amqp.Table
	if ids := joinRIDs(len(reqs), func(i int) string { return reqs[i].RID }); ids != "" {
		headers = amqp.Table{HeaderRequestIDs: ids}
	}
	d, err := o.caller.Call(ctx, mq.Message{Key: o.names.WriteQ, Type: wire.TypeWrites, Body: body, Persistent: true, Headers: headers})
	if err != nil {
		return nil, err
	}
	return decodeReplies(d)
}

// sendReads publishes a ReadBatch whose message expires with its
// deadline, so reads nobody took in time are dropped by RabbitMQ rather
// than answered late. Reads do not wait for the publisher confirm: the
// reply (or the deadline) is the answer, and a read is never resent
// after a reply.
func (o *Orchestrator) sendReads(ctx context.Context, reqs []wire.ReadRequest) ([]wire.Reply, error) {
	body, err := json.Marshal(wire.ReadBatch{Reads: reqs})
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	headers := amqp.Table{headerDeadline: deadline.UnixMilli()}
	if ids := joinRIDs(len(reqs), func(i int) string { return reqs[i].RID }); ids != "" {
		headers[HeaderRequestIDs] = ids
	}
	d, err := o.caller.Call(ctx, mq.Message{Key: o.names.ReadQ, Type: wire.TypeReads, Body: body,
		Expiration: time.Until(deadline), NoConfirm: true, Headers: headers})
	if err != nil {
		return nil, err
	}
	return decodeReplies(d)
}

// HeaderRequestIDs is the AMQP header that lists the request ids of a
// batch's requests, comma-separated, in order, so that they can be seen
// in the broker (the management UI, a dead-letter queue) without decoding
// the body; the workers read each id from its request (wire's rid).
const HeaderRequestIDs = "x-request-ids"

// joinRIDs joins the n request ids rid(i) with commas; "" when none has one.
func joinRIDs(n int, rid func(i int) string) string {
	size := 0
	for i := range n {
		size += len(rid(i)) + 1
	}
	if size == n {
		return ""
	}
	var b strings.Builder
	b.Grow(size)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(rid(i))
	}
	return b.String()
}

// decodeReplies reads a ReplyBatch, or a single Reply (a worker answering
// a malformed batch as a whole).
func decodeReplies(d amqp.Delivery) ([]wire.Reply, error) {
	var rb wire.ReplyBatch
	if err := json.Unmarshal(d.Body, &rb); err == nil && rb.Replies != nil {
		return rb.Replies, nil
	}
	var one wire.Reply
	if err := json.Unmarshal(d.Body, &one); err != nil || one.Status == 0 {
		return nil, errBadReply
	}
	return nil, fmt.Errorf("%w: %d %s", errBadReply, one.Status, one.Error)
}
