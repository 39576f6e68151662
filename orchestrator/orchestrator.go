// Package orchestrator is the DBaaS front door. It serves the HTTP API
// (db/read, db/write, db/clear, crash/*, worker/list), publishes requests to
// RabbitMQ and waits for the workers' replies, watches the workers in
// ZooKeeper, elects masters, replaces dead workers and autoscales slaves.
// It never opens a database. Workers are started, listed and killed through
// a Runtime.
package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rideshare-dbaas/rideshare/internal/adminauth"
	"github.com/rideshare-dbaas/rideshare/internal/metrics"
	"github.com/rideshare-dbaas/rideshare/internal/mq"
	"github.com/rideshare-dbaas/rideshare/internal/reqid"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
	"github.com/rideshare-dbaas/rideshare/internal/zkutil"
)

// Options configure an Orchestrator.
type Options struct {
	Listen       string // HTTP address, e.g. 127.0.0.1:8000
	AMQPURL      string
	ZKServers    []string
	ZKRoot       string
	ZKTimeout    time.Duration
	QueuePrefix  string
	Runtime      Runtime
	Logger       *slog.Logger
	WriteTimeout time.Duration // how long db/write waits for the master
	ReadTimeout  time.Duration // how long db/read waits for a slave
	MaxBody      int64
	Scale        ScaleOptions

	// AdminToken guards the admin endpoints (crash/*, db/clear, scale):
	// requests must send it as a bearer token. Without one, Dev must be set
	// (New fails otherwise), and the orchestrator must listen on loopback.
	AdminToken string
	// Dev is dev mode: with no AdminToken the admin endpoints are open,
	// and the cluster page shows the crash buttons.
	Dev bool
	// TraefikAPI is the base URL of Traefik's API (e.g.
	// http://127.0.0.1:8088), proxied for the cluster page's routing view.
	TraefikAPI string
	// Metrics is the registry the orchestrator's metrics go to (nil: one
	// of its own, served at /metrics).
	Metrics *metrics.Registry
	// BatchMax is the most requests one message carries, BatchesInFlight
	// how many messages of each kind (writes, reads) may wait for their
	// replies at once; requests arriving meanwhile form the next message.
	BatchMax        int
	BatchesInFlight int
	// QueuePoll is how often the DBaaS queues' depths are asked of
	// RabbitMQ for the metrics (default DefaultQueuePoll).
	QueuePoll time.Duration
}

// ScaleOptions are the autoscaler's settings (guarantee 8).
type ScaleOptions struct {
	Window        time.Duration // default 2 minutes
	ReadsPerSlave int           // default 20
	MinSlaves     int           // default 1
	MaxSlaves     int           // default 8
}

func (o *Options) defaults() {
	if o.ZKRoot == "" {
		o.ZKRoot = "/rideshare"
	}
	if o.ZKTimeout == 0 {
		o.ZKTimeout = 2 * time.Second
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = 10 * time.Second
	}
	if o.BatchMax == 0 {
		o.BatchMax = 64
	}
	if o.BatchesInFlight == 0 {
		o.BatchesInFlight = 8
	}
	if o.MaxBody == 0 {
		o.MaxBody = 16 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.QueuePoll == 0 {
		o.QueuePoll = DefaultQueuePoll
	}
	if o.Scale.Window == 0 {
		o.Scale.Window = 2 * time.Minute
	}
	if o.Scale.ReadsPerSlave == 0 {
		o.Scale.ReadsPerSlave = 20
	}
	if o.Scale.MinSlaves == 0 {
		o.Scale.MinSlaves = 1
	}
	if o.Scale.MaxSlaves == 0 {
		o.Scale.MaxSlaves = 8
	}
	if o.Scale.MaxSlaves < o.Scale.MinSlaves {
		o.Scale.MaxSlaves = o.Scale.MinSlaves
	}
}

// registrationJoiner is implemented by runtimes that join the workers'
// ZooKeeper registrations with what they list (the nomad runtime).
type registrationJoiner interface {
	useRegistrations(func() (map[string]wire.WorkerInfo, error))
}

// Orchestrator is the DBaaS front door.
type Orchestrator struct {
	opts   Options
	log    *slog.Logger
	names  mq.Names
	caller *mq.Caller
	sup    *mq.Supervisor
	rt     Runtime
	zks    *zkutil.Session

	acked logPos // the highest (epoch, seq) a write reply carried

	writes *batcher[wire.WriteRequest]
	reads  *batcher[wire.ReadRequest]

	cluster *cluster
	scaler  *autoscaler
	lis     net.Listener
	ready   atomic.Bool
	closeMu sync.Mutex

	guard  *adminauth.Guard
	met    *metrics.Registry
	events *eventRing
	obs    *observer
}

// New validates options and prepares an orchestrator; Run starts it.
func New(opts Options) (*Orchestrator, error) {
	opts.defaults()
	if opts.AMQPURL == "" || len(opts.ZKServers) == 0 || opts.Runtime == nil {
		return nil, errors.New("orchestrator: AMQPURL, ZKServers and Runtime are required")
	}
	guard, err := adminauth.NewGuard(opts.AdminToken, opts.Dev)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: %w", err)
	}
	if err := adminauth.CheckListen(opts.Listen, opts.AdminToken); err != nil {
		return nil, fmt.Errorf("orchestrator: %w", err)
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New("orchestrator")
	}
	o := &Orchestrator{
		opts:  opts,
		log:   reqid.Logger(opts.Logger), // request_id on lines about a request
		names: mq.NewNames(opts.QueuePrefix),
		rt:    opts.Runtime,
	}
	o.caller = mq.NewCaller(o.log.With("subsystem", "rpc"))
	depths := newQueueDepths([]string{o.names.WriteQ, o.names.ReadQ, o.names.DeadQ, o.names.RepairQ},
		opts.QueuePoll, o.log.With("subsystem", "queue-depths"))
	o.sup = mq.NewSupervisor(opts.AMQPURL, "orchestrator", o.log.With("subsystem", "amqp"),
		func(ctx context.Context, conn *amqp.Connection) error {
			if err := o.names.MigrateWriteQ(conn); err != nil {
				return err
			}
			pctx, cancel := context.WithCancel(ctx)
			polled := make(chan struct{})
			go func() {
				defer close(polled)
				depths.run(pctx, conn)
			}()
			defer func() {
				cancel()
				<-polled
			}()
			return o.caller.Session(ctx, conn, o.names.DeclareAll)
		})
	o.scaler = newAutoscaler(opts.Scale)
	o.writes = newBatcher(opts.BatchMax, opts.BatchesInFlight, o.sendWrites)
	o.reads = newBatcher(opts.BatchMax, opts.BatchesInFlight, o.sendReads)
	o.guard, o.met, o.events = guard, opts.Metrics, newEventRing(200)
	om := newOrchMetrics(o.met.Registerer(), func() float64 { return float64(o.scaler.reads.Load()) })
	o.obs = newObserver(o.events, om)
	o.met.Registerer().MustRegister(lagCollector{o.obs}, depths)
	o.scaler.onDecision = o.obs.decided
	om.desired.Set(float64(o.scaler.current))
	return o, nil
}

// logPos is a position in the replicated log, (epoch, seq), ordered as
// Raft orders logs: by the epoch of the last entry, then by its sequence
// number. A replica holding a deposed master's unacknowledged entries at
// higher sequence numbers is behind one holding the acknowledged entries
// of a later epoch.
type logPos struct {
	mu    sync.Mutex
	epoch uint64
	seq   uint64
}

// less reports whether (e1, s1) is before (e2, s2).
func less(e1, s1, e2, s2 uint64) bool {
	return e1 < e2 || (e1 == e2 && s1 < s2)
}

// raise moves the position to (epoch, seq) when that is later, and
// reports whether it did.
func (p *logPos) raise(epoch, seq uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !less(p.epoch, p.seq, epoch, seq) {
		return false
	}
	p.epoch, p.seq = epoch, seq
	return true
}

// set moves the position to (epoch, seq), earlier or not.
func (p *logPos) set(epoch, seq uint64) {
	p.mu.Lock()
	p.epoch, p.seq = epoch, seq
	p.mu.Unlock()
}

func (p *logPos) get() (epoch, seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.epoch, p.seq
}

// committedSeq is the highest sequence number known to be committed: the
// highest this orchestrator acknowledged, or a worker applied.
func (o *Orchestrator) committedSeq() uint64 {
	_, top := o.acked.get()
	if o.cluster != nil {
		view, _, _ := o.cluster.snapshot()
		for _, v := range view {
			top = max(top, v.Applied)
		}
	}
	return top
}

// Listen binds the HTTP listener (Run does it when not done before); it
// lets tests use 127.0.0.1:0 and read the address.
func (o *Orchestrator) Listen() (net.Addr, error) {
	if o.lis != nil {
		return o.lis.Addr(), nil
	}
	lis, err := net.Listen("tcp", o.opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", o.opts.Listen, err)
	}
	o.lis = lis
	return lis.Addr(), nil
}

// Run serves until ctx ends. The runtime is the caller's: it decides
// whether the workers outlive the orchestrator (Runtime.Close).
func (o *Orchestrator) Run(ctx context.Context) error {
	if _, err := o.Listen(); err != nil {
		return err
	}
	// ZooKeeper first (Connect does not block), so the HTTP handlers always
	// have a cluster to ask.
	zks, err := zkutil.Connect(o.opts.ZKServers, o.opts.ZKTimeout, o.log.With("subsystem", "zk"))
	if err != nil {
		return err
	}
	o.zks = zks
	defer zks.Close()
	o.cluster = newCluster(o, zks)
	o.scaler.bind(o.cluster.setDesired)
	switch {
	case o.opts.AdminToken != "":
		o.log.Info("admin endpoints need the admin token")
	default:
		o.log.Warn("DEV MODE: admin endpoints (crash, db/clear, scale) are open to anyone who can reach " + o.lis.Addr().String())
	}
	if j, ok := o.rt.(registrationJoiner); ok {
		// The runtime cannot see the workers' pids itself (Nomad): it
		// takes them from the workers' ZooKeeper registrations.
		j.useRegistrations(o.cluster.readWorkers)
	}
	srv := &http.Server{Handler: o.Handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	wg.Add(1)
	go func() {
		defer wg.Done()
		o.log.Info("orchestrator listening", "addr", o.lis.Addr().String())
		if err := srv.Serve(o.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = o.sup.Run(ctx)
	}()

	wg.Add(4)
	go func() {
		defer wg.Done()
		o.writes.run(ctx)
	}()
	go func() {
		defer wg.Done()
		o.reads.run(ctx)
	}()
	go func() {
		defer wg.Done()
		if err := o.cluster.run(ctx); err != nil && ctx.Err() == nil {
			errc <- fmt.Errorf("cluster: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		o.scaler.run(ctx, o.cluster.setDesired)
	}()

	var result error
	select {
	case <-ctx.Done():
	case result = <-errc:
	}
	o.log.Info("orchestrator stopping")
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	_ = srv.Shutdown(sctx)
	scancel()
	cancel()
	wg.Wait()
	return result
}
