package mq

import (
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Names are the queue and exchange names of one DBaaS. A prefix keeps
// several stacks (a dev stack and a test stack) apart on one broker.
type Names struct {
	WriteQ  string // quorum queue, single active consumer: the master
	DeadQ   string // writes that failed on every allowed delivery
	ReadQ   string // slaves consume round-robin, each serving up to ReadConcurrency batches at once
	SyncX   string // fanout exchange; every slave binds its own queue
	RepairQ string // the master answers log-range and snapshot requests
}

// DeliveryLimit is how many times the master tries a write that fails
// before it answers it with an error and dead-letters it (it counts its
// own tries, see worker.HeaderAttempts).
const DeliveryLimit = 5

// BrokerDeliveryLimit is writeQ's own x-delivery-limit: the backstop for
// a write that kills its master every time, so no try can be counted.
// RabbitMQ 3.x counts every return of a delivery, failovers and session
// restarts included, so it leaves room for those.
const BrokerDeliveryLimit = 20

func (n Names) writeQArgs() amqp.Table {
	return amqp.Table{
		amqp.QueueTypeArg:            amqp.QueueTypeQuorum,
		amqp.SingleActiveConsumerArg: true,
		"x-delivery-limit":           int64(BrokerDeliveryLimit),
		"x-dead-letter-exchange":     "",
		"x-dead-letter-routing-key":  n.DeadQ,
	}
}

// NewNames returns the default names (writeQ, readQ, syncQ, repairQ) with
// prefix prepended.
func NewNames(prefix string) Names {
	return Names{
		WriteQ:  prefix + "writeQ",
		DeadQ:   prefix + "writeQ.dead",
		ReadQ:   prefix + "readQ",
		SyncX:   prefix + "syncQ",
		RepairQ: prefix + "repairQ",
	}
}

// DeclareAll declares every queue and exchange. Declarations are idempotent
// and every party declares what it uses, so start order does not matter.
func (n Names) DeclareAll(ch *amqp.Channel) error {
	// writeQ holds acknowledged-to-be writes until the master commits them:
	// durable and replicated (quorum), persistent messages, and a single
	// active consumer so that at most one worker receives writes at a time
	// (part of fencing, see worker/DESIGN.md).
	// A write that keeps failing is answered with an error and
	// dead-lettered by the master on its DeliveryLimit-th delivery; the
	// queue's own limit is the backstop for one that kills the master
	// every time (no answer then, but no endless loop).
	if _, err := ch.QueueDeclare(n.DeadQ, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg: amqp.QueueTypeQuorum,
	}); err != nil {
		return fmt.Errorf("declare %s: %w", n.DeadQ, err)
	}
	if _, err := ch.QueueDeclare(n.WriteQ, true, false, false, false, n.writeQArgs()); err != nil {
		return fmt.Errorf("declare %s: %w", n.WriteQ, err)
	}
	// Reads are answered within a deadline or not at all: nothing to keep
	// across a broker restart.
	if _, err := ch.QueueDeclare(n.ReadQ, false, false, false, false, nil); err != nil {
		return fmt.Errorf("declare %s: %w", n.ReadQ, err)
	}
	if _, err := ch.QueueDeclare(n.RepairQ, false, false, false, false, nil); err != nil {
		return fmt.Errorf("declare %s: %w", n.RepairQ, err)
	}
	if err := ch.ExchangeDeclare(n.SyncX, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare %s: %w", n.SyncX, err)
	}
	return nil
}

// MigrateWriteQ replaces a writeQ that an older version declared with
// other arguments (no delivery limit, no dead-letter queue) when it holds
// nothing: RabbitMQ refuses to redeclare a queue with other arguments, and
// a queue cannot change them in place. A queue still holding writes or
// consumed is left alone, with an error saying what to do.
func (n Names) MigrateWriteQ(conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	_, err = ch.QueueDeclare(n.WriteQ, true, false, false, false, n.writeQArgs())
	_ = ch.Close()
	var ae *amqp.Error
	if err == nil || !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed {
		return err
	}
	ch, err = conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(n.WriteQ, true, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", n.WriteQ, err)
	}
	if q.Messages > 0 || q.Consumers > 0 {
		return fmt.Errorf("%s was declared by an older version (no delivery limit) and holds %d writes with %d consumers: stop its master and let it drain, or delete it when it is empty", n.WriteQ, q.Messages, q.Consumers)
	}
	// Quorum queues refuse the if-unused/if-empty flags; the check above
	// stands in for them: the orchestrator, the only publisher, has not
	// published on this connection yet.
	if _, err := ch.QueueDelete(n.WriteQ, false, false, false); err != nil {
		return fmt.Errorf("replace %s: %w", n.WriteQ, err)
	}
	return nil
}
