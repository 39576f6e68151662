package mq_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rideshare-dbaas/rideshare/internal/mq"
	"github.com/rideshare-dbaas/rideshare/internal/testenv"
	"go.uber.org/goleak"
)

// echoServer answers every request on queue with its body, upper-cased
// by a prefix, like a worker answers the orchestrator.
// ready receives one signal each time the server consumes (nil: none).
func echoServer(ctx context.Context, conn *amqp.Connection, queue string, ready chan<- struct{}) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(queue, false, true, false, false, nil); err != nil {
		return err
	}
	ds, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		return err
	}
	if ready != nil {
		select {
		case ready <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-ds:
			if !ok {
				return errors.New("closed")
			}
			_ = ch.PublishWithContext(ctx, "", d.ReplyTo, false, false, amqp.Publishing{
				CorrelationId: d.CorrelationId, Body: append([]byte("echo:"), d.Body...)})
		}
	}
}

type conns struct {
	mu sync.Mutex
	c  []*amqp.Connection
}

func (c *conns) add(conn *amqp.Connection) {
	c.mu.Lock()
	c.c = append(c.c, conn)
	c.mu.Unlock()
}

func (c *conns) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range c.c {
		_ = x.Close()
	}
}

func TestCallerSurvivesReconnect(t *testing.T) {
	testenv.RequireServers(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	queue := testenv.Name(t)
	log := slog.New(slog.DiscardHandler)
	caller := mq.NewCaller(log)
	var seen conns
	serving := make(chan struct{}, 4)
	sup := mq.NewSupervisor(testenv.AMQPURL(), "test", log, func(ctx context.Context, conn *amqp.Connection) error {
		seen.add(conn)
		errc := make(chan error, 2)
		go func() { errc <- echoServer(ctx, conn, queue, serving) }()
		go func() { errc <- caller.Session(ctx, conn, nil) }()
		err := <-errc
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = sup.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	call := func() string {
		// The echo queue is declared by the server's session, which runs
		// beside the caller's: a call before it exists is unroutable.
		select {
		case <-serving:
		case <-time.After(10 * time.Second):
			t.Fatal("the echo server did not start consuming within 10 s")
		}
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		d, err := caller.Call(cctx, mq.Message{Key: queue, Body: []byte("hi")})
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		return string(d.Body)
	}
	if got := call(); got != "echo:hi" {
		t.Fatalf("got %q", got)
	}
	// Kill the connection under the caller: the supervisor redials, the
	// session re-declares, and calls work again.
	seen.closeAll()
	if got := call(); got != "echo:hi" {
		t.Fatalf("after reconnect got %q", got)
	}
	if !sup.Connected() || !caller.Connected() {
		t.Fatal("not connected after a successful call")
	}
}

func TestCallerUnavailableWhenBrokerDown(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	caller := mq.NewCaller(log)
	caller.ConnectWait = 300 * time.Millisecond
	sup := mq.NewSupervisor("amqp://127.0.0.1:1/", "test", log, func(ctx context.Context, conn *amqp.Connection) error {
		return caller.Session(ctx, conn, nil)
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = sup.Run(ctx) }()
	start := time.Now()
	_, err := caller.Call(ctx, mq.Message{Key: "x", Body: []byte("hi")})
	if !errors.Is(err, mq.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("took %s to give up", time.Since(start))
	}
}
