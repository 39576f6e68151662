package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rideshare-dbaas/rideshare/internal/metrics"
)

// DefaultQueuePoll is how often the orchestrator asks RabbitMQ how deep
// the DBaaS queues are (Options.QueuePoll).
const DefaultQueuePoll = 5 * time.Second

// queueDepths polls the DBaaS queues' message and consumer counts with
// passive declares, on a channel of its own (never the publish path's),
// and reports the last answers as gauges. A queue that does not answer
// (missing, or the round ran out of time) has no series until it does.
type queueDepths struct {
	queues   []string
	interval time.Duration
	log      *slog.Logger

	mu   sync.Mutex
	last map[string]amqp.Queue
}

func newQueueDepths(queues []string, interval time.Duration, log *slog.Logger) *queueDepths {
	return &queueDepths{queues: queues, interval: interval, log: log, last: map[string]amqp.Queue{}}
}

var (
	descQueueMessages = prometheus.NewDesc(metrics.Namespace+"_dbaas_queue_messages",
		"Messages ready in each DBaaS queue (writeQ, readQ, the dead-letter queue, repairQ), as RabbitMQ last said.", []string{"queue"}, nil)
	descQueueConsumers = prometheus.NewDesc(metrics.Namespace+"_dbaas_queue_consumers",
		"Consumers of each DBaaS queue, as RabbitMQ last said.", []string{"queue"}, nil)
)

func (q *queueDepths) Describe(ch chan<- *prometheus.Desc) {
	ch <- descQueueMessages
	ch <- descQueueConsumers
}

func (q *queueDepths) Collect(ch chan<- prometheus.Metric) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for name, st := range q.last {
		ch <- prometheus.MustNewConstMetric(descQueueMessages, prometheus.GaugeValue, float64(st.Messages), name)
		ch <- prometheus.MustNewConstMetric(descQueueConsumers, prometheus.GaugeValue, float64(st.Consumers), name)
	}
}

// run polls on conn until ctx ends (the AMQP session's end); what it
// learnt is forgotten then, so a broker that is gone reports nothing
// rather than old numbers.
func (q *queueDepths) run(ctx context.Context, conn *amqp.Connection) {
	defer q.forget()
	t := time.NewTicker(q.interval)
	defer t.Stop()
	var ch *amqp.Channel
	defer func() { closeAsync(ch) }()
	for {
		// A passive declare of a missing queue closes the channel
		// (404): open a new one for the next queue.
		for _, name := range q.queues {
			if ch == nil || ch.IsClosed() {
				var err error
				if ch, err = conn.Channel(); err != nil {
					q.log.Debug("queue depths: no channel", "err", err)
					break
				}
			}
			st, err := declarePassive(ctx, ch, name, q.interval)
			if ctx.Err() != nil {
				// The session ends; a declare may still be in flight on
				// ch, so nothing more is sent on it.
				return
			}
			q.mu.Lock()
			if err != nil {
				delete(q.last, name)
			} else {
				q.last[name] = st
			}
			q.mu.Unlock()
			if err != nil {
				q.log.Debug("queue depths: passive declare failed", "queue", name, "err", err)
				if errors.Is(err, context.DeadlineExceeded) {
					closeAsync(ch) // it may still answer the timed-out declare
					ch = nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// closeAsync closes ch without waiting: a broker that no longer answers
// would hold Close until the connection's heartbeat gives up, and the
// AMQP session's end (which waits for run) must not wait for that. The
// connection's close ends the call in any case.
func closeAsync(ch *amqp.Channel) {
	if ch != nil {
		go func() { _ = ch.Close() }()
	}
}

func (q *queueDepths) forget() {
	q.mu.Lock()
	clear(q.last)
	q.mu.Unlock()
}

// declarePassive asks for queue name's counts within timeout (amqp091's
// QueueDeclarePassive takes no context: past the deadline the caller
// closes the channel, which ends the call).
func declarePassive(ctx context.Context, ch *amqp.Channel, name string, timeout time.Duration) (amqp.Queue, error) {
	type answer struct {
		q   amqp.Queue
		err error
	}
	done := make(chan answer, 1)
	go func() {
		st, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
		done <- answer{st, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case a := <-done:
		return a.q, a.err
	case <-ctx.Done():
		return amqp.Queue{}, ctx.Err()
	case <-t.C:
		return amqp.Queue{}, fmt.Errorf("queue %s: no answer within %s: %w", name, timeout, context.DeadlineExceeded)
	}
}
