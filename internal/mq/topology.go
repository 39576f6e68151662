package mq

import (
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Names are the queue and exchange names of one DBaaS. A prefix keeps
// several stacks (a dev stack and a test stack) apart on one broker.
type Names struct {
	WriteQ  string // quorum queue, single active consumer: the master
	ReadQ   string // slaves consume round-robin, prefetch 1
	SyncX   string // fanout exchange; every slave binds its own queue
	RepairQ string // the master answers log-range and snapshot requests
}

// NewNames returns the default names (writeQ, readQ, syncQ, repairQ) with
// prefix prepended.
func NewNames(prefix string) Names {
	return Names{
		WriteQ:  prefix + "writeQ",
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
	if _, err := ch.QueueDeclare(n.WriteQ, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg:            amqp.QueueTypeQuorum,
		amqp.SingleActiveConsumerArg: true,
	}); err != nil {
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
