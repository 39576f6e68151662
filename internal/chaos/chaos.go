// Package chaos is the DBaaS chaos run of issue 5: it drives a real DBaaS
// (an orchestrator it starts itself, or one it attaches to) with clients
// that write and read through the HTTP API, while a fault injector kills
// the master and slaves with SIGKILL, restarts RabbitMQ and expires a
// worker's ZooKeeper session. At the end it stops the load, waits until
// every live worker has applied the master's sequence number, and checks
// the guarantees of ../shared/contract/dbaas.md:
//
//   - every acknowledged write is present exactly once on every live worker;
//   - all replicas are identical (a checksum of a canonical dump of the
//     handler tables of each worker's SQLite file, opened read-only);
//   - no read with min_seq returned older data.
//
// It also measures unavailability: from each master kill to the next
// successful write, and from each slave kill to a replacement serving
// reads. Options → New → Run(ctx) gives a Report; cmd/chaos is the thin
// main, and TestChaosShort runs the short variant in `make test`.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Rabbit restart modes.
const (
	RabbitNone = "none" // do not restart RabbitMQ
	RabbitApp  = "app"  // rabbitmqctl stop_app, then start_app (the Erlang VM stays)
	RabbitNode = "node" // rabbitmqctl stop (the whole node exits), then servers.sh up
)

// ZooKeeper session expiry targets.
const (
	ExpireNone   = "none"
	ExpireSlave  = "slave"
	ExpireMaster = "master"
	ExpireBoth   = "both"
)

// Options configure a chaos run.
type Options struct {
	// URL attaches to a running orchestrator. Empty: the run starts its own
	// from OrchestratorBin and WorkerBin (process runtime).
	URL             string
	OrchestratorBin string
	WorkerBin       string
	// Runtime is how an own orchestrator runs its workers: "process"
	// (default, WorkerBin) or "docker" (containers of WorkerImage).
	Runtime     string
	WorkerImage string
	// DataDir is the process runtime's data dir (<DataDir>/<worker id>/db.sqlite).
	// For an own stack it defaults to a fresh temporary directory; when
	// attaching, without it the replica checksums are skipped.
	DataDir string
	// KeepData keeps an own stack's data dir (it is always kept when the run
	// fails).
	KeepData bool
	// AMQPURL, ZKServers: the servers the stack uses.
	AMQPURL   string
	ZKServers []string
	// ZKRoot and QueuePrefix keep the stack apart on the shared servers
	// (own stack defaults: /chaos-<run id>, chaos-<run id>.). When
	// attaching, ZKRoot lets the run watch the worker znodes directly;
	// without it, it polls GET /api/v1/workers.
	ZKRoot      string
	QueuePrefix string
	ZKTimeout   time.Duration // the workers' ZooKeeper session timeout (default 2 s)
	// Autoscaling settings passed to an own orchestrator.
	ScaleWindow time.Duration // default 30 s
	MinSlaves   int           // default 2
	MaxSlaves   int           // default 3
	// OrchestratorArgs are appended to an own orchestrator's command line.
	OrchestratorArgs []string

	Clients  int           // default 16
	Duration time.Duration // the load and fault phase (default 3 m)
	// Stretch lets the load go on past Duration until every planned fault
	// was made and recovered from (up to 3× Duration), instead of skipping
	// the faults that did not fit: on a loaded machine the run then still
	// does all it must, and a run that cannot is a failure.
	Stretch bool
	// MasterKills and SlaveKills are how many crash/master and crash/slave
	// calls the run makes (default 20 each). A run that could not make them
	// all fails.
	MasterKills int
	SlaveKills  int
	// RabbitRestart is RabbitNone, RabbitApp or RabbitNode (default none:
	// the broker is shared, so only the long run restarts it).
	RabbitRestart string
	RabbitNode    string // default rabbit@localhost
	ServersScript string // scripts/servers.sh, used by RabbitNode to start the node again
	// ZKExpiry is which worker's session to expire (SIGSTOP for 2× the
	// session timeout, then SIGCONT): none, slave, master or both.
	ZKExpiry string

	// SettleTimeout bounds the wait for every worker to apply the master's
	// sequence number at the end (default 60 s).
	SettleTimeout time.Duration
	// EventTimeout bounds the wait for the cluster to recover after one
	// fault (default 30 s); a fault not recovered from in time is a failure.
	EventTimeout time.Duration
	Seed         uint64 // 0: random
	Logger       *slog.Logger
}

func (o *Options) defaults() error {
	if o.AMQPURL == "" {
		return errors.New("chaos: AMQPURL is required (a URL with a RabbitMQ user of the run's own, never guest)")
	}
	if len(o.ZKServers) == 0 {
		o.ZKServers = []string{"127.0.0.1:2181"}
	}
	if o.ZKTimeout == 0 {
		o.ZKTimeout = 2 * time.Second
	}
	if o.ScaleWindow == 0 {
		o.ScaleWindow = 30 * time.Second
	}
	if o.MinSlaves == 0 {
		o.MinSlaves = 2
	}
	if o.MaxSlaves == 0 {
		o.MaxSlaves = 3
	}
	if o.MaxSlaves < o.MinSlaves {
		o.MaxSlaves = o.MinSlaves
	}
	if o.Clients == 0 {
		o.Clients = 16
	}
	if o.Duration == 0 {
		o.Duration = 3 * time.Minute
	}
	if o.MasterKills < 0 || o.SlaveKills < 0 {
		return errors.New("chaos: kill counts must not be negative")
	}
	if o.RabbitRestart == "" {
		o.RabbitRestart = RabbitNone
	}
	switch o.RabbitRestart {
	case RabbitNone, RabbitApp, RabbitNode:
	default:
		return fmt.Errorf("chaos: rabbit restart %q: want none, app or node", o.RabbitRestart)
	}
	if o.RabbitNode == "" {
		o.RabbitNode = "rabbit@localhost"
	}
	if o.RabbitRestart == RabbitNode && o.ServersScript == "" {
		return errors.New("chaos: rabbit restart \"node\" needs ServersScript (scripts/servers.sh) to start the node again")
	}
	if o.ZKExpiry == "" {
		o.ZKExpiry = ExpireNone
	}
	switch o.ZKExpiry {
	case ExpireNone, ExpireSlave, ExpireMaster, ExpireBoth:
	default:
		return fmt.Errorf("chaos: zk expiry %q: want none, slave, master or both", o.ZKExpiry)
	}
	if o.SettleTimeout == 0 {
		o.SettleTimeout = 60 * time.Second
	}
	if o.EventTimeout == 0 {
		o.EventTimeout = 30 * time.Second
	}
	if o.Seed == 0 {
		o.Seed = rand.Uint64()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.URL == "" && (o.OrchestratorBin == "" || o.WorkerBin == "") {
		return errors.New("chaos: either URL or OrchestratorBin and WorkerBin are required")
	}
	switch o.Runtime {
	case "":
		o.Runtime = "process"
	case "process":
	case "docker":
		if o.URL == "" && o.WorkerImage == "" {
			return errors.New("chaos: the docker runtime needs WorkerImage")
		}
	default:
		return fmt.Errorf("chaos: runtime %q: want process or docker", o.Runtime)
	}
	return nil
}

// Short sets the short variant (what `make test` runs, under a minute):
// 45 s of load, 4 master and 4 slave kills, the ZooKeeper session of a
// slave and of a master expired, and no RabbitMQ restart (the broker is
// shared with the other tests running at the same time).
func Short(o *Options) {
	o.Duration = 45 * time.Second
	o.MasterKills, o.SlaveKills = 4, 4
	o.RabbitRestart = RabbitNone
	o.ZKExpiry = ExpireBoth
	o.Stretch = true
}

// Chaos is one chaos run.
type Chaos struct {
	opts  Options
	log   *slog.Logger
	runID string
	rng   *rand.Rand
}

// New checks the options.
func New(opts Options) (*Chaos, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	runID := fmt.Sprintf("%x", rand.Uint32())
	return &Chaos{opts: opts, log: opts.Logger, runID: runID, rng: rand.New(rand.NewPCG(opts.Seed, opts.Seed>>1|1))}, nil
}

// RunID names this run (in user names, write ids, ZooKeeper root and queues).
func (c *Chaos) RunID() string { return c.runID }

// Run runs the load, the faults and the checks. The returned error is set
// when the run could not be carried out (the stack did not start); the
// Report lists what was found, and Report.Failed() says whether the run
// must fail.
func (c *Chaos) Run(ctx context.Context) (*Report, error) {
	o := c.opts
	rep := newReport(c, o)
	st, err := c.openStack(ctx)
	if err != nil {
		return nil, err
	}
	rep.Stack = st.describe()
	failed := true // until the checks ran: a run that broke off keeps its data
	defer func() {
		keep := o.KeepData || failed || rep.Failed()
		if err := st.close(keep); err != nil {
			c.log.Warn("stopping the stack", "err", err)
		}
		if keep && st.dataDir != "" {
			rep.DataDirKept = st.dataDir
		}
	}()
	api := newAPI(st.url)
	if err := waitReady(ctx, api, 60*time.Second); err != nil {
		return rep, fmt.Errorf("stack not ready (logs in %s): %w\n%s\n%s", st.dataDir, err, tail(st.logPath, 10), st.lastWorkerLog(5))
	}
	rec := newRecorder()
	view := newWatcher(api, st.zk, st.zkRoot, c.log)
	// Every cluster fault below assumes a master and a ready slave.
	if err := waitHealthy(ctx, view, 60*time.Second); err != nil {
		return rep, fmt.Errorf("stack not healthy before the run (logs in %s): %w", st.dataDir, err)
	}

	c.log.Info("chaos run starting", "run", c.runID, "url", st.url, "clients", o.Clients, "duration", o.Duration,
		"master_kills", o.MasterKills, "slave_kills", o.SlaveKills, "rabbit_restart", o.RabbitRestart, "zk_expiry", o.ZKExpiry, "seed", o.Seed)
	start := time.Now()
	loadCtx, stopLoad := context.WithTimeout(ctx, o.loadLimit())
	defer stopLoad()
	load := newLoad(c, api, rec)
	loadDone := make(chan struct{})
	go func() {
		load.run(loadCtx)
		close(loadDone)
	}()
	inj := newInjector(c, api, view, rec, st)
	injDone := make(chan struct{})
	go func() {
		inj.run(loadCtx, start)
		close(injDone)
	}()
	if o.Stretch {
		// The load stops at Duration, or, when faults remain, once the
		// last was made and a little load ran after its recovery.
		go func() {
			select {
			case <-loadCtx.Done():
				return
			case <-time.After(o.Duration):
			}
			select {
			case <-loadCtx.Done():
			case <-injDone:
				select {
				case <-loadCtx.Done():
				case <-time.After(2 * time.Second):
				}
			}
			stopLoad()
		}()
	}
	// The stack's orchestrator dying is fatal to the run.
	select {
	case <-loadCtx.Done():
	case <-st.exited():
		rec.violation("orchestrator", "the orchestrator process exited during the run: %v", st.exitErr())
		stopLoad()
	}
	<-injDone
	<-loadDone
	stopLoad()
	rep.LoadSeconds = time.Since(start).Seconds()
	c.log.Info("load stopped; waiting for the replicas to converge", "acked", rec.ackedCount())

	// Checks.
	fin := c.verify(ctx, api, view, st, rec)
	rep.fill(rec, inj, fin)
	failed = false
	return rep, nil
}

// loadLimit is the longest the load may run.
func (o *Options) loadLimit() time.Duration {
	if o.Stretch {
		return 3 * o.Duration
	}
	return o.Duration
}

// tempDataDir makes a directory for an own stack.
func tempDataDir(runID string) (string, error) {
	dir, err := os.MkdirTemp("", "chaos-"+runID+"-")
	if err != nil {
		return "", err
	}
	return filepath.Abs(dir)
}

func joinArgs(a []string) string { return strings.Join(a, " ") }
