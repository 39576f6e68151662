package mq_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rideshare-dbaas/rideshare/internal/mq"
	"github.com/rideshare-dbaas/rideshare/internal/testenv"
)

func mustConn(t *testing.T) *amqp.Connection {
	t.Helper()
	testenv.RequireServers(t)
	conn, err := amqp.Dial(testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func mustChannel(t *testing.T, conn *amqp.Connection) *amqp.Channel {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	return ch
}

func deleteQueues(t *testing.T, n mq.Names) {
	t.Cleanup(func() {
		conn, err := amqp.Dial(testenv.AMQPURL())
		if err != nil {
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		for _, q := range []string{n.WriteQ, n.DeadQ, n.ReadQ, n.RepairQ} {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
		_ = ch.ExchangeDelete(n.SyncX, false, false)
	})
}

// The broker's own backstop: a write that is never acked (it kills its
// master every time, say) is dead-lettered to writeQ.dead after the
// delivery limit, where it can be inspected, instead of looping forever.
func TestWriteQDeadLettersAfterTheDeliveryLimit(t *testing.T) {
	conn := mustConn(t)
	n := mq.NewNames(testenv.Name(t) + ".")
	deleteQueues(t, n)
	ch := mustChannel(t, conn)
	if err := n.DeclareAll(ch); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", n.WriteQ, true, false,
		amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(`{"id":"poison"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := dc.WaitContext(ctx); err != nil || !ok {
		t.Fatalf("confirm: %v %v", ok, err)
	}
	cch := mustChannel(t, conn)
	ds, err := cch.Consume(n.WriteQ, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	deliveries := 0
	for deliveries <= mq.DeliveryLimit {
		select {
		case d := <-ds:
			deliveries++
			_ = d.Nack(false, true) // as a master that dies before it acks
		case <-time.After(5 * time.Second):
			t.Fatalf("after %d deliveries the message neither came back nor was dead-lettered", deliveries)
		}
	}
	testenv.Eventually(t, 10*time.Second, "the write is in the dead-letter queue", func() (bool, string) {
		q, err := mustChannel(t, conn).QueueDeclarePassive(n.DeadQ, true, false, false, false, nil)
		if err != nil {
			return false, err.Error()
		}
		return q.Messages == 1, fmt.Sprintf("messages: %d", q.Messages)
	})
	select {
	case d := <-ds:
		t.Fatalf("delivered again after the limit: %s", d.Body)
	case <-time.After(200 * time.Millisecond):
	}
}

// A writeQ declared by an older version (other arguments) is replaced
// when it is empty, and left alone, with an error, when it holds writes.
func TestMigrateWriteQ(t *testing.T) {
	conn := mustConn(t)
	n := mq.NewNames(testenv.Name(t) + ".")
	deleteQueues(t, n)
	old := amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum, amqp.SingleActiveConsumerArg: true}
	ch := mustChannel(t, conn)
	if _, err := ch.QueueDeclare(n.WriteQ, true, false, false, false, old); err != nil {
		t.Fatal(err)
	}
	// Holding a write: refused, nothing lost.
	if err := ch.PublishWithContext(context.Background(), "", n.WriteQ, false, false, amqp.Publishing{Body: []byte("w")}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the write is queued", func() (bool, string) {
		q, err := mustChannel(t, conn).QueueDeclarePassive(n.WriteQ, true, false, false, false, nil)
		return err == nil && q.Messages == 1, "not yet"
	})
	if err := n.MigrateWriteQ(conn); err == nil {
		t.Fatal("a writeQ holding a write was replaced")
	}
	if _, err := mustChannel(t, conn).QueueDelete(n.WriteQ, false, false, false); err != nil {
		t.Fatal(err)
	}
	// Empty: replaced, and DeclareAll then works.
	if _, err := mustChannel(t, conn).QueueDeclare(n.WriteQ, true, false, false, false, old); err != nil {
		t.Fatal(err)
	}
	if err := n.MigrateWriteQ(conn); err != nil {
		t.Fatal(err)
	}
	if err := n.DeclareAll(mustChannel(t, conn)); err != nil {
		t.Fatalf("declare after the migration: %v", err)
	}
}
