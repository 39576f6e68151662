// Package mq wraps RabbitMQ (amqp091-go) for the orchestrator and the
// workers: a connection supervisor that redials with backoff and rebuilds
// everything a session owns, the queue topology in one place, and an RPC
// caller that matches replies by correlation id.
//
// amqp091-go connections and channels are dead objects once closed, so
// instead of patching them up the supervisor hands each new connection to a
// session function and cancels that session's context when the connection
// (or the session) ends. A session therefore declares its topology, starts
// its consumers and returns when its context is done; the supervisor calls
// it again on the next connection.
package mq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrUnavailable means RabbitMQ could not be reached in time.
var ErrUnavailable = errors.New("rabbitmq unavailable")

// Session runs on one live connection until ctx is done or it fails.
type Session func(ctx context.Context, conn *amqp.Connection) error

// Supervisor keeps one connection to RabbitMQ alive.
type Supervisor struct {
	url       string
	name      string
	log       *slog.Logger
	session   Session
	connected atomic.Bool
}

// NewSupervisor makes a Supervisor that runs session on every connection.
func NewSupervisor(url, name string, log *slog.Logger, session Session) *Supervisor {
	return &Supervisor{url: url, name: name, log: log, session: session}
}

// Connected reports whether a connection is up now.
func (s *Supervisor) Connected() bool { return s.connected.Load() }

// Run dials and runs sessions until ctx is done.
func (s *Supervisor) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		conn, err := s.dial(ctx)
		if err != nil {
			s.log.Warn("rabbitmq dial failed; retrying", "url", redact(s.url), "retry_in", backoff, "err", err)
			if !sleep(ctx, jitter(backoff)) {
				break
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		s.connected.Store(true)
		s.log.Info("rabbitmq connected")
		err = s.runSession(ctx, conn)
		s.connected.Store(false)
		_ = conn.Close()
		if ctx.Err() != nil {
			break
		}
		s.log.Warn("rabbitmq session ended; reconnecting", "err", err)
		if !sleep(ctx, jitter(backoff)) {
			break
		}
	}
	return nil
}

func (s *Supervisor) dial(ctx context.Context) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(s.name)
	cfg := amqp.Config{
		Heartbeat:  5 * time.Second,
		Properties: props,
		Dial:       amqp.DefaultDial(3 * time.Second),
	}
	type res struct {
		c   *amqp.Connection
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := amqp.DialConfig(s.url, cfg)
		ch <- res{c, err}
	}()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				_ = r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

func (s *Supervisor) runSession(ctx context.Context, conn *amqp.Connection) error {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Buffered and always drained: a blocked NotifyClose receiver can
	// deadlock the library (amqp091-go#59).
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	go func() {
		select {
		case e, ok := <-closed:
			if ok && e != nil {
				cancel(fmt.Errorf("connection closed: %w", e))
			} else {
				cancel(errors.New("connection closed"))
			}
		case <-sctx.Done():
		}
	}()
	err := s.session(sctx, conn)
	if err == nil {
		err = context.Cause(sctx)
	}
	return err
}

// WatchChannel cancels the returned context when ch closes (a channel
// exception) or parent ends. A channel's NotifyClose does not fire when the
// connection dies, which is why sessions also watch the connection.
func WatchChannel(parent context.Context, ch *amqp.Channel) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	go func() {
		select {
		case <-closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func redact(url string) string {
	u, err := amqp.ParseURI(url)
	if err != nil {
		return "(unparseable url)"
	}
	return fmt.Sprintf("amqp://%s:%d/%s", u.Host, u.Port, u.Vhost)
}
