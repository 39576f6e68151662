package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/go-zookeeper/zk"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rideshare-dbaas/rideshare/internal/loadgen"
	"github.com/rideshare-dbaas/rideshare/internal/zkutil"
)

// RoundTrips are the latencies of the fixed steps a write batch pays
// today, each measured alone, one at a time, on the shared servers: the
// floor under a batch's latency whatever the CPU does.
type RoundTrips struct {
	N int `json:"n"`
	// ZKSyncGet is a ZooKeeper sync then get of one znode: one fence
	// check of the master (worker.checkFence), twice per batch.
	ZKSyncGet loadgen.Latency `json:"zk_sync_get_ms"`
	// QuorumConfirm is a persistent publish to a quorum queue and its
	// publisher confirm: the orchestrator's publish to writeQ.
	QuorumConfirm loadgen.Latency `json:"quorum_publish_confirm_ms"`
	// TransientConfirm is a publish to a non-durable queue and its
	// confirm: the master's publish on the sync stream, a read's publish.
	TransientConfirm loadgen.Latency `json:"transient_publish_confirm_ms"`
}

// ProbeRoundTrips measures RoundTrips n times each, with a znode and two
// queues named after name that it removes afterwards.
func ProbeRoundTrips(ctx context.Context, amqpURL string, zkServers []string, name string, n int) (RoundTrips, error) {
	rt := RoundTrips{N: n}
	var err error
	if rt.ZKSyncGet, err = probeZK(ctx, zkServers, "/"+name+"-probe", n); err != nil {
		return rt, err
	}
	conn, err := amqp.DialConfig(amqpURL, amqp.Config{Dial: amqp.DefaultDial(10 * time.Second)})
	if err != nil {
		return rt, fmt.Errorf("probe rabbitmq: %w", err)
	}
	defer conn.Close()
	if rt.QuorumConfirm, err = probeConfirm(ctx, conn, name+".probe-quorum", true, n); err != nil {
		return rt, err
	}
	if rt.TransientConfirm, err = probeConfirm(ctx, conn, name+".probe-transient", false, n); err != nil {
		return rt, err
	}
	return rt, nil
}

func probeZK(ctx context.Context, servers []string, path string, n int) (loadgen.Latency, error) {
	s, err := zkutil.Connect(servers, 4*time.Second, slog.New(slog.DiscardHandler))
	if err != nil {
		return loadgen.Latency{}, fmt.Errorf("probe zookeeper: %w", err)
	}
	defer s.Close()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.WaitSession(wctx, servers); err != nil {
		return loadgen.Latency{}, fmt.Errorf("probe zookeeper: %w", err)
	}
	if _, err := s.Conn.Create(path, []byte(`{"id":"probe","epoch":1}`), 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return loadgen.Latency{}, fmt.Errorf("probe zookeeper: create %s: %w", path, err)
	}
	defer func() { _ = s.Conn.Delete(path, -1) }()
	lat := make([]time.Duration, 0, n)
	for range n {
		if err := ctx.Err(); err != nil {
			return loadgen.Latency{}, err
		}
		t0 := time.Now()
		if _, err := s.Conn.Sync(path); err != nil {
			return loadgen.Latency{}, fmt.Errorf("probe zookeeper: sync: %w", err)
		}
		if _, _, err := s.Conn.Get(path); err != nil {
			return loadgen.Latency{}, fmt.Errorf("probe zookeeper: get: %w", err)
		}
		lat = append(lat, time.Since(t0))
	}
	return loadgen.Summarize(lat), nil
}

func probeConfirm(ctx context.Context, conn *amqp.Connection, queue string, quorum bool, n int) (loadgen.Latency, error) {
	ch, err := conn.Channel()
	if err != nil {
		return loadgen.Latency{}, fmt.Errorf("probe rabbitmq: %w", err)
	}
	defer ch.Close()
	args := amqp.Table{}
	if quorum {
		args[amqp.QueueTypeArg] = amqp.QueueTypeQuorum
	}
	if _, err := ch.QueueDeclare(queue, quorum, false, false, false, args); err != nil {
		return loadgen.Latency{}, fmt.Errorf("probe rabbitmq: declare %s: %w", queue, err)
	}
	defer func() { _, _ = ch.QueueDelete(queue, false, false, false) }()
	if err := ch.Confirm(false); err != nil {
		return loadgen.Latency{}, fmt.Errorf("probe rabbitmq: confirm mode: %w", err)
	}
	mode := amqp.Transient
	if quorum {
		mode = amqp.Persistent
	}
	body := make([]byte, 200) // about a users.add request
	lat := make([]time.Duration, 0, n)
	for i := range n {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		t0 := time.Now()
		dc, err := ch.PublishWithDeferredConfirmWithContext(pctx, "", queue, true, false, amqp.Publishing{
			DeliveryMode: mode, Body: body, MessageId: strconv.Itoa(i)})
		if err == nil {
			var ok bool
			ok, err = dc.WaitContext(pctx)
			if err == nil && !ok {
				err = errors.New("nacked")
			}
		}
		cancel()
		if err != nil {
			return loadgen.Latency{}, fmt.Errorf("probe rabbitmq: publish to %s: %w", queue, err)
		}
		lat = append(lat, time.Since(t0))
	}
	return loadgen.Summarize(lat), nil
}
