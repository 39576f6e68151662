package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-zookeeper/zk"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rideshare-dbaas/rideshare/internal/mq"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
	"github.com/rideshare-dbaas/rideshare/internal/zkutil"
)

// The replication logic (master.go, slave.go) reaches ZooKeeper and
// RabbitMQ only through the small interfaces below, which this package
// defines for itself. The worker wires the real adapters at the bottom of
// this file; the tests wire fakes that fail on cue (a publish that fails
// after the commit, a confirm that never comes, a fence lost between
// commit and ack, a master gone in the middle of a repair).

// Coordinator is what the replication logic needs from ZooKeeper.
type Coordinator interface {
	// MasterRecord reads the master record linearizably: a ZooKeeper
	// follower may lag, so the read is preceded by a sync.
	MasterRecord(ctx context.Context) (rec wire.MasterRecord, exists bool, err error)
	// SlavesApplied returns the lowest applied sequence number among the
	// registered workers other than self that hold data (ready or catching
	// up), as their znodes last said; ok is false when there is none.
	SlavesApplied(ctx context.Context, self string) (low uint64, ok bool, err error)
	// Connected reports whether the session is usable right now.
	Connected() bool
}

// SyncPublisher publishes on the sync fanout. It returns only once the
// broker confirmed the message: for a fanout, that it reached every queue
// bound at that moment, i.e. every slave.
type SyncPublisher interface {
	PublishSync(ctx context.Context, b wire.SyncBatch) error
}

// Replier answers a request delivery (a write, a read, a repair) on the
// queue its ReplyTo names.
type Replier interface {
	Reply(ctx context.Context, d amqp.Delivery, body []byte)
}

// Requeuer sends a write delivery that failed back to writeQ, counting
// the attempt (HeaderAttempts), and settles the original.
type Requeuer interface {
	Requeue(ctx context.Context, d amqp.Delivery, attempt int) error
}

// RepairClient asks the master for log entries or a snapshot.
type RepairClient interface {
	Repair(ctx context.Context, req wire.RepairRequest, timeout time.Duration) (wire.RepairReply, error)
}

// ---- ZooKeeper ----

// zkCoordinator is the Coordinator of a real ZooKeeper session.
type zkCoordinator struct {
	zks  *zkutil.Session
	root string
}

var _ Coordinator = (*zkCoordinator)(nil)

func (c *zkCoordinator) Connected() bool { return c.zks.HasSession() }

func (c *zkCoordinator) MasterRecord(context.Context) (wire.MasterRecord, bool, error) {
	if !c.zks.HasSession() {
		return wire.MasterRecord{}, false, errors.New("no zookeeper session")
	}
	if _, err := c.zks.Conn.Sync(wire.MasterPath(c.root)); err != nil && !errors.Is(err, zk.ErrNoNode) {
		return wire.MasterRecord{}, false, fmt.Errorf("zookeeper sync: %w", err)
	}
	return readMasterRecord(c.zks.Conn, c.root)
}

func (c *zkCoordinator) SlavesApplied(_ context.Context, self string) (uint64, bool, error) {
	dir := wire.WorkersPath(c.root)
	names, _, err := c.zks.Conn.Children(dir)
	if err != nil {
		return 0, false, fmt.Errorf("list %s: %w", dir, err)
	}
	var low uint64
	found := false
	for _, n := range names {
		if n == self {
			continue
		}
		data, _, err := c.zks.Conn.Get(dir + "/" + n)
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return 0, false, fmt.Errorf("read worker %s: %w", n, err)
		}
		var info wire.WorkerInfo
		if err := json.Unmarshal(data, &info); err != nil || info.Role != wire.RoleSlave || info.State == wire.StateSyncing {
			// Not a slave (the dead master's znode may linger), or one
			// that gets everything from its snapshot.
			continue
		}
		if !found || info.Applied < low {
			low, found = info.Applied, true
		}
	}
	return low, found, nil
}

// readMasterRecord reads <root>/master (not linearizable by itself).
func readMasterRecord(conn *zk.Conn, root string) (wire.MasterRecord, bool, error) {
	data, _, err := conn.Get(wire.MasterPath(root))
	if errors.Is(err, zk.ErrNoNode) {
		return wire.MasterRecord{}, false, nil
	}
	if err != nil {
		return wire.MasterRecord{}, false, fmt.Errorf("read master record: %w", err)
	}
	var rec wire.MasterRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return wire.MasterRecord{}, false, fmt.Errorf("decode master record: %w", err)
	}
	return rec, true, nil
}

// ---- RabbitMQ ----

// amqpSync is the SyncPublisher of the worker's AMQP sessions: it publishes
// on the confirm-mode channel of the session that is up, waiting for one
// (up to the publish deadline) while none is.
type amqpSync struct{ w *Worker }

var _ SyncPublisher = amqpSync{}

func (s amqpSync) PublishSync(ctx context.Context, b wire.SyncBatch) error {
	body, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("encode sync batch: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.w.opts.PublishTimeout)
	defer cancel()
	for {
		s.w.mu.Lock()
		p := s.w.syncPub
		s.w.mu.Unlock()
		if p != nil {
			return p.publish(ctx, s.w.names.SyncX, "", amqp.Publishing{
				ContentType: "application/json",
				Type:        wire.TypeSync,
				Body:        body,
			})
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("publish sync: %w", mq.ErrUnavailable)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// mqRepair is the RepairClient over the worker's RPC caller. A call is
// abandoned when this worker starts its promotion: it is the master then,
// and nobody else will answer.
type mqRepair struct{ w *Worker }

var _ RepairClient = mqRepair{}

func (r mqRepair) Repair(ctx context.Context, req wire.RepairRequest, timeout time.Duration) (wire.RepairReply, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The master this request went to may die with it in its queue (a
	// snapshot call may wait a minute): when a new master is named, or
	// this worker is promoted, give up and let the caller ask again.
	moved := r.w.nextEpoch()
	go func() {
		select {
		case <-r.w.promoted:
			cancel()
		case <-moved:
			cancel()
		case <-ctx.Done():
		}
	}()
	var out wire.RepairReply
	d, err := r.w.caller.Call(ctx, mq.Message{Key: r.w.names.RepairQ, Type: wire.TypeRepair, Body: mustJSON(req)})
	if err != nil {
		return out, fmt.Errorf("repair call: %w", err)
	}
	if err := json.Unmarshal(d.Body, &out); err != nil {
		return out, fmt.Errorf("decode repair reply: %w", err)
	}
	return out, nil
}

// amqpRequeue republishes a failed write delivery to writeQ (persistent,
// confirmed, on the session's confirm channel) with its attempt count, then
// acks the original: the queue gets it back with a count that only the
// master's failures raise.
type amqpRequeue struct{ w *Worker }

var _ Requeuer = amqpRequeue{}

func (r amqpRequeue) Requeue(ctx context.Context, d amqp.Delivery, attempt int) error {
	r.w.mu.Lock()
	p := r.w.syncPub
	r.w.mu.Unlock()
	if p == nil {
		return mq.ErrUnavailable
	}
	headers := amqp.Table{}
	for k, v := range d.Headers {
		headers[k] = v
	}
	headers[HeaderAttempts] = int64(attempt)
	ctx, cancel := context.WithTimeout(ctx, r.w.opts.PublishTimeout)
	defer cancel()
	err := p.publish(ctx, "", r.w.names.WriteQ, amqp.Publishing{
		ContentType: d.ContentType, Type: d.Type, DeliveryMode: amqp.Persistent,
		CorrelationId: d.CorrelationId, ReplyTo: d.ReplyTo, Headers: headers, Body: d.Body,
	})
	if err != nil {
		return err
	}
	return d.Ack(false)
}
