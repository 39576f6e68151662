package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
)

type amqp091Delivery = amqp.Delivery

// publisher funnels publishes on one channel through a mutex (channels are
// not safe for concurrent use). With confirm set, publish waits for the
// broker's confirm.
type publisher struct {
	mu      sync.Mutex
	ch      *amqp.Channel
	confirm bool
}

func (p *publisher) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	p.mu.Lock()
	var dc *amqp.DeferredConfirmation
	var err error
	if p.confirm {
		dc, err = p.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, msg)
	} else {
		err = p.ch.PublishWithContext(ctx, exchange, key, false, false, msg)
	}
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("publish to %q/%q: %w", exchange, key, err)
	}
	if dc == nil {
		return nil
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("confirm from %q: %w", exchange, err)
	}
	if !ok {
		return fmt.Errorf("broker nacked publish to %q", exchange)
	}
	return nil
}

// replier is the Replier of one AMQP session's reply channel.
type replier struct {
	pub *publisher
	log *slog.Logger
}

var _ Replier = replier{}

func (r replier) Reply(ctx context.Context, d amqp.Delivery, body []byte) {
	if d.ReplyTo == "" {
		return
	}
	err := r.pub.publish(ctx, "", d.ReplyTo, amqp.Publishing{
		ContentType:   "application/json",
		Type:          wire.TypeReply,
		CorrelationId: d.CorrelationId,
		Body:          body,
	})
	if err != nil {
		r.log.Warn("reply failed", "err", err)
	}
}

func (w *Worker) setSyncPub(p *publisher) {
	w.mu.Lock()
	w.syncPub = p
	w.mu.Unlock()
}

// session runs on one AMQP connection: it declares the topology, binds this
// worker's own sync queue, serves RPC replies for repair calls, and runs
// the consumers of the current role, re-picking them when the role changes.
func (w *Worker) session(ctx context.Context, conn *amqp.Connection) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	open := func(what string) (*amqp.Channel, error) {
		ch, err := conn.Channel()
		if err != nil {
			return nil, fmt.Errorf("open %s channel: %w", what, err)
		}
		closed := ch.NotifyClose(make(chan *amqp.Error, 1))
		go func() {
			select {
			case e := <-closed:
				cancel(fmt.Errorf("%s channel closed: %v", what, e))
			case <-ctx.Done():
			}
		}()
		return ch, nil
	}
	pch, err := open("sync publish")
	if err != nil {
		return err
	}
	defer pch.Close()
	if err := w.names.DeclareAll(pch); err != nil {
		return err
	}
	if err := pch.Confirm(false); err != nil {
		return fmt.Errorf("confirm mode: %w", err)
	}
	rch, err := open("reply")
	if err != nil {
		return err
	}
	defer rch.Close()
	replies := replier{pub: &publisher{ch: rch}, log: w.log}

	// Our own sync queue: exclusive, so it dies with this connection. What
	// is published while we are disconnected is a gap we repair from the
	// master's log.
	sch, err := open("sync consume")
	if err != nil {
		return err
	}
	defer sch.Close()
	q, err := sch.QueueDeclare(w.opts.QueuePrefix+"sync."+w.opts.ID, false, true, true, false, nil)
	if err != nil {
		return fmt.Errorf("declare sync queue: %w", err)
	}
	if err := sch.QueueBind(q.Name, "", w.names.SyncX, false, nil); err != nil {
		return fmt.Errorf("bind sync queue: %w", err)
	}
	syncDeliveries, err := sch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume sync queue: %w", err)
	}
	w.setSyncPub(&publisher{ch: pch, confirm: true})
	defer w.setSyncPub(nil)
	// A reconnect may have lost sync messages: not electable until the
	// applier has repaired from the master's log.
	if w.sessions.Add(1) > 1 {
		w.catchingUp.Store(true)
		signalChan(w.zkNudge)
	}
	signalChan(w.kick)

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case d, ok := <-syncDeliveries:
				if !ok {
					cancel(errors.New("sync consumer closed"))
					return
				}
				select {
				case w.syncIn <- d:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		if err := w.caller.Session(ctx, conn, nil); err != nil && ctx.Err() == nil {
			cancel(fmt.Errorf("rpc session: %w", err))
		}
	}()

	for ctx.Err() == nil {
		role, state, promoting := w.roleState()
		rctx, rcancel := context.WithCancel(ctx)
		var rwg sync.WaitGroup
		start := func(name string, f func(context.Context, *amqp.Connection, Replier) error) {
			rwg.Add(1)
			go func() {
				defer rwg.Done()
				if err := f(rctx, conn, replies); err != nil && rctx.Err() == nil {
					if errors.Is(err, ErrFenced) {
						w.die(err)
					}
					cancel(fmt.Errorf("%s: %w", name, err))
				}
			}()
		}
		switch {
		case promoting:
		case role == wire.RoleMaster:
			start("write consumer", w.runMaster)
			start("repair server", w.runRepairServer)
		case state == wire.StateReady:
			start("read consumer", w.runReads)
		}
		select {
		case <-ctx.Done():
		case <-w.roleChanged:
		}
		rcancel()
		rwg.Wait()
	}
	return context.Cause(ctx)
}
