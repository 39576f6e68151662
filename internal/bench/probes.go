package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"syscall"
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

// Prober times the fixed steps: a 4 KiB append + fdatasync in a directory,
// a ZooKeeper sync + get, RabbitMQ publishes with confirms, with a znode,
// a file and two queues of its own that Close removes.
type Prober struct {
	file      *os.File
	zks       *zkutil.Session
	path      string
	conn      *amqp.Connection
	quorum    *amqp.Channel
	transient *amqp.Channel
	qName     string
	tName     string
	block     []byte
	seq       int
	mu        sync.Mutex // one probe at a time
}

// NewProber connects to the servers; name keeps its znode and queues
// apart from others'.
func NewProber(ctx context.Context, dir, amqpURL string, zkServers []string, name string) (*Prober, error) {
	p := &Prober{path: "/" + name + "-probe", qName: name + ".probe-quorum", tName: name + ".probe-transient",
		block: make([]byte, 4096)}
	var err error
	if p.file, err = os.CreateTemp(dir, ".bench-fsync-*"); err != nil {
		return nil, fmt.Errorf("prober: %w", err)
	}
	if err := p.connect(ctx, amqpURL, zkServers); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *Prober) connect(ctx context.Context, amqpURL string, zkServers []string) error {
	var err error
	if p.zks, err = zkutil.Connect(zkServers, 4*time.Second, slog.New(slog.DiscardHandler)); err != nil {
		return fmt.Errorf("prober: zookeeper: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.zks.WaitSession(wctx, zkServers); err != nil {
		return fmt.Errorf("prober: zookeeper: %w", err)
	}
	if _, err := p.zks.Conn.Create(p.path, []byte(`{"id":"probe","epoch":1}`), 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return fmt.Errorf("prober: create %s: %w", p.path, err)
	}
	if p.conn, err = amqp.DialConfig(amqpURL, amqp.Config{Dial: amqp.DefaultDial(10 * time.Second)}); err != nil {
		return fmt.Errorf("prober: rabbitmq: %w", err)
	}
	if p.quorum, err = p.channel(p.qName, true); err != nil {
		return err
	}
	p.transient, err = p.channel(p.tName, false)
	return err
}

func (p *Prober) channel(queue string, quorum bool) (*amqp.Channel, error) {
	ch, err := p.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("prober: rabbitmq: %w", err)
	}
	args := amqp.Table{}
	if quorum {
		args[amqp.QueueTypeArg] = amqp.QueueTypeQuorum
	}
	if _, err := ch.QueueDeclare(queue, quorum, false, false, false, args); err != nil {
		return nil, fmt.Errorf("prober: declare %s: %w", queue, err)
	}
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("prober: confirm mode: %w", err)
	}
	return ch, nil
}

// Close removes the probe's file, znode and queues and disconnects.
func (p *Prober) Close() {
	if p.file != nil {
		p.file.Close()
		os.Remove(p.file.Name())
	}
	if p.zks != nil {
		_ = p.zks.Conn.Delete(p.path, -1)
		p.zks.Close()
	}
	if p.conn != nil {
		if ch, err := p.conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(p.qName, false, false, false)
			_, _ = ch.QueueDelete(p.tName, false, false, false)
			ch.Close()
		}
		p.conn.Close()
	}
}

// Disk times one 4 KiB append + fdatasync (or fsync).
func (p *Prober) Disk(fsync bool) (time.Duration, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t0 := time.Now()
	if _, err := p.file.Write(p.block); err != nil {
		return 0, fmt.Errorf("prober: %w", err)
	}
	var err error
	if fsync {
		err = p.file.Sync()
	} else {
		err = syscall.Fdatasync(int(p.file.Fd()))
	}
	if err != nil {
		return 0, fmt.Errorf("prober: %w", err)
	}
	return time.Since(t0), nil
}

// ZK times one sync + get of the probe's znode (a fence check).
func (p *Prober) ZK() (time.Duration, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t0 := time.Now()
	if _, err := p.zks.Conn.Sync(p.path); err != nil {
		return 0, fmt.Errorf("prober: zookeeper sync: %w", err)
	}
	if _, _, err := p.zks.Conn.Get(p.path); err != nil {
		return 0, fmt.Errorf("prober: zookeeper get: %w", err)
	}
	return time.Since(t0), nil
}

// Confirm times one publish (about a write request's size) and its
// publisher confirm, to the quorum queue (persistent) or the transient one.
func (p *Prober) Confirm(ctx context.Context, quorum bool) (time.Duration, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch, queue, mode := p.transient, p.tName, amqp.Transient
	if quorum {
		ch, queue, mode = p.quorum, p.qName, amqp.Persistent
	}
	p.seq++
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	t0 := time.Now()
	dc, err := ch.PublishWithDeferredConfirmWithContext(pctx, "", queue, true, false, amqp.Publishing{
		DeliveryMode: mode, Body: p.block[:200], MessageId: strconv.Itoa(p.seq)})
	if err == nil {
		var ok bool
		if ok, err = dc.WaitContext(pctx); err == nil && !ok {
			err = errors.New("nacked")
		}
	}
	if err != nil {
		return 0, fmt.Errorf("prober: publish to %s: %w", queue, err)
	}
	return time.Since(t0), nil
}

// RoundTrips times each step n times, one after the other.
func (p *Prober) RoundTrips(ctx context.Context, n int) (RoundTrips, DiskSync, error) {
	rt := RoundTrips{N: n}
	ds := DiskSync{Dir: p.file.Name(), Writes: n}
	var err error
	steps := []struct {
		out *loadgen.Latency
		f   func() (time.Duration, error)
	}{
		{&ds.Fsync, func() (time.Duration, error) { return p.Disk(true) }},
		{&ds.Fdatasync, func() (time.Duration, error) { return p.Disk(false) }},
		{&rt.ZKSyncGet, p.ZK},
		{&rt.QuorumConfirm, func() (time.Duration, error) { return p.Confirm(ctx, true) }},
		{&rt.TransientConfirm, func() (time.Duration, error) { return p.Confirm(ctx, false) }},
	}
	for _, s := range steps {
		lat := make([]time.Duration, 0, n)
		for range n {
			if err = ctx.Err(); err != nil {
				return rt, ds, err
			}
			d, err := s.f()
			if err != nil {
				return rt, ds, err
			}
			lat = append(lat, d)
		}
		*s.out = loadgen.Summarize(lat)
	}
	return rt, ds, nil
}

// Env is what the fixed steps took while a load ran: the machine's and the
// shared servers' state, sampled every EnvInterval, so that a load's
// numbers can be read against it (a slow disk or a busy ZooKeeper slows
// our writes whatever our code does).
type Env struct {
	Samples   int             `json:"samples"`
	Fdatasync loadgen.Latency `json:"fdatasync_ms"`
	ZK        loadgen.Latency `json:"zk_sync_get_ms"`
	Quorum    loadgen.Latency `json:"quorum_confirm_ms"`
}

// EnvInterval is how often Watch probes during a load.
const EnvInterval = 200 * time.Millisecond

// Watch probes the environment every EnvInterval until the returned
// function is called, which stops it and returns what it saw. A failed
// probe ends the watch (the load's own errors tell more).
func (p *Prober) Watch(ctx context.Context) func() Env {
	stop := make(chan struct{})
	done := make(chan Env, 1)
	go func() {
		var fs, zs, qs []time.Duration
		t := time.NewTicker(EnvInterval)
		defer t.Stop()
		defer func() {
			done <- Env{Samples: len(fs), Fdatasync: loadgen.Summarize(fs), ZK: loadgen.Summarize(zs), Quorum: loadgen.Summarize(qs)}
		}()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			f, err1 := p.Disk(false)
			z, err2 := p.ZK()
			q, err3 := p.Confirm(ctx, true)
			if errors.Join(err1, err2, err3) != nil {
				return
			}
			fs, zs, qs = append(fs, f), append(zs, z), append(qs, q)
		}
	}()
	var once sync.Once
	var env Env
	return func() Env {
		once.Do(func() {
			close(stop)
			env = <-done
		})
		return env
	}
}
