package mq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Message is what Call publishes.
type Message struct {
	Exchange   string
	Key        string
	Type       string
	Body       []byte
	Persistent bool
	// Expiration, when set, drops the message if no consumer took it in
	// time (per-message TTL).
	Expiration time.Duration
	Headers    amqp.Table
	// NoConfirm does not wait for the broker's confirm before waiting for
	// the reply: for requests whose reply (or deadline) is all that
	// matters and that are never resent after one (reads).
	NoConfirm bool
}

// Caller sends requests and waits for replies on an exclusive reply queue,
// matched by correlation id. Run its Session under a Supervisor. Calls made
// while the connection is down wait for the next one (up to ConnectWait,
// then ErrUnavailable); a call whose connection drops before the reply
// arrives is published again on the next connection, so requests must be
// idempotent (writes carry an id and are applied at most once).
type Caller struct {
	log *slog.Logger
	// ConnectWait bounds how long a call waits for a connection.
	ConnectWait time.Duration

	mu      sync.Mutex
	cur     *callerSession
	ready   chan struct{} // closed while cur != nil
	pending map[string]chan amqp.Delivery
}

type callerSession struct {
	done       <-chan struct{}
	replyQueue string
	pubMu      sync.Mutex // one publisher at a time on ch
	ch         *amqp.Channel
}

// NewCaller makes a Caller.
func NewCaller(log *slog.Logger) *Caller {
	return &Caller{
		log:         log,
		ConnectWait: 3 * time.Second,
		ready:       make(chan struct{}),
		pending:     make(map[string]chan amqp.Delivery),
	}
}

// Session declares the reply queue, consumes it and serves calls until ctx
// ends. declare, if set, runs first on the publishing channel.
func (c *Caller) Session(ctx context.Context, conn *amqp.Connection, declare func(*amqp.Channel) error) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	if declare != nil {
		if err := declare(ch); err != nil {
			return err
		}
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fmt.Errorf("declare reply queue: %w", err)
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume reply queue: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("confirm mode: %w", err)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, 16))
	sctx, cancel := WatchChannel(ctx, ch)
	defer cancel()

	s := &callerSession{done: sctx.Done(), replyQueue: q.Name, ch: ch}
	c.mu.Lock()
	c.cur = s
	close(c.ready)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.cur = nil
		c.ready = make(chan struct{})
		c.mu.Unlock()
	}()

	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("reply consumer closed")
			}
			c.deliver(d.CorrelationId, d)
		case r, ok := <-returns:
			if !ok {
				return errors.New("return channel closed")
			}
			c.log.Warn("request was unroutable", "key", r.RoutingKey, "reply_text", r.ReplyText)
			c.deliver(r.CorrelationId, amqp.Delivery{CorrelationId: r.CorrelationId, Type: "returned"})
		case <-sctx.Done():
			return sctx.Err()
		}
	}
}

func (c *Caller) deliver(corr string, d amqp.Delivery) {
	c.mu.Lock()
	w, ok := c.pending[corr]
	c.mu.Unlock()
	if !ok {
		return // a late reply to a call that gave up: ignore
	}
	select {
	case w <- d:
	default:
	}
}

func (c *Caller) session(ctx context.Context) (*callerSession, error) {
	c.mu.Lock()
	s, ready := c.cur, c.ready
	c.mu.Unlock()
	if s != nil {
		return s, nil
	}
	t := time.NewTimer(c.ConnectWait)
	defer t.Stop()
	select {
	case <-ready:
		return c.session(ctx)
	case <-t.C:
		return nil, fmt.Errorf("%w: not connected", ErrUnavailable)
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: not connected: %w", ErrUnavailable, ctx.Err())
	}
}

// Connected reports whether calls can be published now.
func (c *Caller) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil
}

// Call publishes m and waits for the reply until ctx is done.
func (c *Caller) Call(ctx context.Context, m Message) (amqp.Delivery, error) {
	corr := uuid.NewString()
	wait := make(chan amqp.Delivery, 1)
	c.mu.Lock()
	c.pending[corr] = wait
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, corr)
		c.mu.Unlock()
	}()
	for {
		s, err := c.session(ctx)
		if err != nil {
			return amqp.Delivery{}, err
		}
		t0 := time.Now()
		if err := s.publish(ctx, corr, m); err != nil {
			if ctx.Err() != nil {
				return amqp.Delivery{}, fmt.Errorf("%w: publish: %w", ErrUnavailable, err)
			}
			c.log.Debug("publish failed; retrying on next connection", "err", err)
			select {
			case <-s.done:
			case <-ctx.Done():
				return amqp.Delivery{}, fmt.Errorf("%w: publish: %w", ErrUnavailable, err)
			}
			continue
		}
		t1 := time.Now()
		select {
		case d := <-wait:
			c.log.Debug("call", "key", m.Key, "confirm", t1.Sub(t0), "reply", time.Since(t1))
			if d.Type == "returned" {
				return amqp.Delivery{}, fmt.Errorf("%w: request was unroutable", ErrUnavailable)
			}
			return d, nil
		case <-s.done:
			// The reply queue died with the connection; ask again.
			continue
		case <-ctx.Done():
			return amqp.Delivery{}, ctx.Err()
		}
	}
}

func (s *callerSession) publish(ctx context.Context, corr string, m Message) error {
	mode := amqp.Transient
	if m.Persistent {
		mode = amqp.Persistent
	}
	pub := amqp.Publishing{
		ContentType:   "application/json",
		Type:          m.Type,
		DeliveryMode:  mode,
		CorrelationId: corr,
		ReplyTo:       s.replyQueue,
		Headers:       m.Headers,
		Body:          m.Body,
	}
	if m.Expiration > 0 {
		pub.Expiration = strconv.FormatInt(max(m.Expiration.Milliseconds(), 1), 10)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s.pubMu.Lock()
	dc, err := s.ch.PublishWithDeferredConfirmWithContext(pctx, m.Exchange, m.Key, true, false, pub)
	s.pubMu.Unlock()
	if err != nil {
		return err
	}
	if m.NoConfirm {
		return nil
	}
	// WaitContext, never Wait: Wait has been seen to hang (amqp091-go#182).
	ok, err := dc.WaitContext(pctx)
	if err != nil {
		return fmt.Errorf("confirm: %w", err)
	}
	if !ok {
		return errors.New("broker nacked the request")
	}
	return nil
}
