// Package worker is the DBaaS worker: one binary that is a master or a
// slave at run time, each with its own SQLite database.
//
// The master consumes writeQ, runs each write's handler inside one group
// commit, logs what it executed, publishes the committed entries on the
// sync fanout with publisher confirms, and only then acks and replies.
// Slaves apply the sync stream strictly in sequence order, repair gaps from
// the master, and answer reads from readQ once they have applied what the
// read asks for. A new slave starts from a consistent snapshot of the
// master. See DESIGN.md beside this file for why it is built this way.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rideshare-dbaas/rideshare/internal/mq"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
	"github.com/rideshare-dbaas/rideshare/internal/zkutil"
)

// ErrFenced is returned by Run when this worker learnt that another worker
// was made master in its place. The process must exit: its database may
// hold entries the new master never had.
var ErrFenced = errors.New("fenced: another worker is master")

// Options configure a Worker.
type Options struct {
	ID             string // unique worker id (znode name)
	DataDir        string // directory of this worker's database
	AMQPURL        string
	ZKServers      []string
	ZKRoot         string // e.g. /rideshare
	ZKTimeout      time.Duration
	QueuePrefix    string
	Registry       Registry // resolves operations to handlers
	Logger         *slog.Logger
	OpTimeout      time.Duration // per read handler call
	WriteOpTimeout time.Duration // per write handler call (it holds the write transaction)
	// BatchBudget is how long the handlers of one group commit may run
	// before the rest of the batch waits for the next one (a hung handler
	// delays the writes behind it by at most this).
	BatchBudget time.Duration
	BatchMax    int // most writes in one group commit
	// ReadConcurrency is how many read deliveries a slave serves at once.
	ReadConcurrency int
	PublishTimeout  time.Duration // sync publish confirm deadline
	// DeliveryLimit is how many deliveries a write that keeps failing gets
	// before it is answered with an error and dead-lettered.
	DeliveryLimit int
	// Metrics is where the worker registers its Prometheus metrics (a
	// private registry when nil).
	Metrics prometheus.Registerer
	// MetricsAddr is the host:port this worker serves /metrics on, as the
	// orchestrator can reach it; published in the worker's znode ("" when
	// it serves none).
	MetricsAddr string
}

func (o *Options) defaults() {
	if o.ZKRoot == "" {
		o.ZKRoot = "/rideshare"
	}
	if o.ZKTimeout == 0 {
		o.ZKTimeout = 2 * time.Second
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = 5 * time.Second
	}
	if o.WriteOpTimeout == 0 {
		o.WriteOpTimeout = time.Second
	}
	if o.BatchBudget == 0 {
		o.BatchBudget = 2 * time.Second
	}
	if o.DeliveryLimit == 0 {
		o.DeliveryLimit = mq.DeliveryLimit
	}
	if o.ReadConcurrency == 0 {
		o.ReadConcurrency = 8
	}
	if o.BatchMax == 0 {
		o.BatchMax = 128
	}
	if o.PublishTimeout == 0 {
		o.PublishTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Worker is one DBaaS worker process.
type Worker struct {
	opts   Options
	log    *slog.Logger
	names  mq.Names
	pid    int
	reg    Registry
	store  atomic.Pointer[Store]
	readMu sync.RWMutex // reads hold it shared; a snapshot install exclusively
	// catchingUp is set when an AMQP session other than the first binds a
	// new sync queue: what was published meanwhile reached the other
	// slaves only. Until a repair from the master succeeds, the znode says
	// catching-up and the orchestrator does not elect this worker.
	catchingUp atomic.Bool
	sessions   atomic.Int32
	zks        *zkutil.Session
	caller     *mq.Caller
	met        *workerMetrics
	// The replication logic's view of ZooKeeper and RabbitMQ (ports.go);
	// Run wires the real ones unless a test set them first.
	coord    Coordinator
	syncOut  SyncPublisher
	repairs  RepairClient
	requeue  Requeuer
	syncIn   chan amqp091Delivery
	kick     chan struct{} // ask the applier to repair now
	fatal    chan error
	fatalOne sync.Once

	mu          sync.Mutex
	role        string // wire.RoleSlave or wire.RoleMaster
	state       string // wire.StateSyncing or wire.StateReady
	promoting   bool
	masterEpoch uint64        // epoch this worker was promoted in
	knownEpoch  uint64        // highest epoch seen anywhere
	epochMoved  chan struct{} // closed (and replaced) when knownEpoch grows
	masterID    string        // who the master record names
	promoted    chan struct{} // closed when this worker starts its promotion
	roleChanged chan struct{} // tells the AMQP session to re-pick consumers
	zkNudge     chan struct{} // tells the ZK loop to publish the znode now
	barrier     string
	barrierSeen chan struct{}
	syncPub     *publisher // set while an AMQP session is up

	// confirmed is the master's watermark: every entry up to it is
	// confirmed on the sync stream (confirmUpTo). confirmMu serialises
	// every publish of log entries, so the watermark only moves over
	// contiguous ranges.
	confirmMu sync.Mutex
	confirmed uint64

	// watchEpoch is the epoch the master-record watch last saw naming this
	// worker in the current session (0: unknown), deposed whether it saw
	// another master named: the local view fenceBeforeCommit reads.
	watchEpoch atomic.Uint64
	deposed    atomic.Bool
	// divergedPromoting is set when this worker found its log diverged
	// while draining the stream for its promotion.
	divergedPromoting atomic.Bool
	promotingEpoch    uint64 // guarded by mu: the epoch being promoted to

	// faults injects failures in tests (nil in production).
	faults struct {
		apply func(writeID string) error // applying this write fails
	}

	// pending holds entries a slave received beyond a gap it could not
	// repair yet (the master is unreachable, or gone): they are applied as
	// soon as the gap closes, instead of being dropped.
	pendingMu sync.Mutex
	pending   map[uint64]wire.Entry
	failSeq   uint64 // the entry that last failed to replay, and how often
	failCount int
}

// New prepares a worker; Run starts it.
func New(opts Options) (*Worker, error) {
	opts.defaults()
	if opts.ID == "" || opts.DataDir == "" || opts.AMQPURL == "" || len(opts.ZKServers) == 0 || opts.Registry == nil {
		return nil, errors.New("worker: ID, DataDir, AMQPURL, ZKServers and Registry are required")
	}
	w := &Worker{
		opts:        opts,
		log:         opts.Logger.With("worker", opts.ID),
		names:       mq.NewNames(opts.QueuePrefix),
		pid:         os.Getpid(),
		reg:         opts.Registry,
		syncIn:      make(chan amqp091Delivery, 256),
		kick:        make(chan struct{}, 1),
		fatal:       make(chan error, 1),
		role:        wire.RoleSlave,
		state:       wire.StateSyncing,
		roleChanged: make(chan struct{}, 1),
		zkNudge:     make(chan struct{}, 1),
		promoted:    make(chan struct{}),
	}
	w.caller = mq.NewCaller(w.log.With("subsystem", "rpc"))
	w.met = newWorkerMetrics(opts.Metrics, w)
	w.syncOut = amqpSync{w}
	w.repairs = mqRepair{w}
	w.requeue = amqpRequeue{w}
	return w, nil
}

func (w *Worker) dbPath() string { return filepath.Join(w.opts.DataDir, "db.sqlite") }

// die records the first fatal error; Run returns it.
func (w *Worker) die(err error) {
	w.fatalOne.Do(func() { w.fatal <- err })
}

// Run runs the worker until ctx ends or a fatal error (ErrFenced).
func (w *Worker) Run(ctx context.Context) error {
	if err := os.MkdirAll(w.opts.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	// One process per data directory, whatever the orchestrator believes.
	lock, err := os.OpenFile(filepath.Join(w.opts.DataDir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("lock file: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("data dir %s is in use by another worker: %w", w.opts.DataDir, err)
	}
	st, err := OpenStore(w.dbPath())
	if err != nil {
		return err
	}
	w.store.Store(st)
	defer func() { w.store.Load().Close() }()

	zks, err := zkutil.Connect(w.opts.ZKServers, w.opts.ZKTimeout, w.log.With("subsystem", "zk"))
	if err != nil {
		return err
	}
	w.zks = zks
	if w.coord == nil {
		w.coord = &zkCoordinator{zks: zks, root: w.opts.ZKRoot}
	}
	defer zks.Close()
	if err := zks.WaitSession(ctx, w.opts.ZKServers); err != nil {
		return nil // stopped before ZooKeeper answered
	}
	// A cluster that never had a master starts from empty databases: every
	// worker is ready at sequence 0. Otherwise this worker must first load
	// a snapshot of the master. ZooKeeper may blink on a loaded machine:
	// retry rather than die (the orchestrator would only start another).
	var rec wire.MasterRecord
	var exists bool
	for wait := 100 * time.Millisecond; ; wait = min(wait*2, 2*time.Second) {
		err = zkutil.EnsurePath(zks.Conn, wire.WorkersPath(w.opts.ZKRoot))
		if err == nil {
			rec, exists, err = w.readMaster()
		}
		if err == nil {
			break
		}
		w.log.Warn("zookeeper: cannot read the cluster's state yet; retrying", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	// A worker the master record already names is a master restarted on
	// its own data by the orchestrator (no other slave could take over):
	// its database is the reference, and the record's epoch, bumped
	// before the restart, tells it to promote itself.
	needSnapshot := exists && rec.ID != w.opts.ID
	if !needSnapshot {
		w.setState(wire.StateReady)
	}
	// Every worker starts as a slave, whose commits need not fsync (a
	// promotion makes them durable again).
	if err := st.SetDurable(ctx, false); err != nil {
		return err
	}
	if exists {
		w.noteEpoch(rec.Epoch)
	}
	w.log.Info("worker starting", "pid", w.pid, "data", w.opts.DataDir, "snapshot_first", needSnapshot)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				w.die(fmt.Errorf("%s: %w", name, err))
			}
		}()
	}
	sup := mq.NewSupervisor(w.opts.AMQPURL, "worker-"+w.opts.ID, w.log.With("subsystem", "amqp"), w.session)
	run("amqp", sup.Run)
	run("zk", w.runZK)
	run("applier", func(ctx context.Context) error { return w.runApplier(ctx, needSnapshot) })
	run("registry", w.watchRegistry)

	var result error
	select {
	case <-ctx.Done():
	case result = <-w.fatal:
		w.log.Error("worker stopping", "err", result)
	}
	cancel()
	wg.Wait()
	return result
}

func (w *Worker) setState(s string) {
	w.mu.Lock()
	w.state = s
	w.mu.Unlock()
	w.changed()
}

// changed tells the AMQP session and the ZK loop that role or state moved.
func (w *Worker) changed() {
	signalChan(w.roleChanged)
	signalChan(w.zkNudge)
}

func (w *Worker) roleState() (role, state string, promoting bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.role, w.state, w.promoting
}

func (w *Worker) noteEpoch(e uint64) {
	w.mu.Lock()
	if e > w.knownEpoch {
		w.knownEpoch = e
		if w.epochMoved != nil {
			close(w.epochMoved)
			w.epochMoved = nil
		}
	}
	w.mu.Unlock()
}

// nextEpoch returns a channel closed the next time a newer epoch is seen
// (a new master named): a call waiting on the old master gives up then.
func (w *Worker) nextEpoch() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.epochMoved == nil {
		w.epochMoved = make(chan struct{})
	}
	return w.epochMoved
}

func signalChan(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (w *Worker) readMaster() (wire.MasterRecord, bool, error) {
	return readMasterRecord(w.zks.Conn, w.opts.ZKRoot)
}

func (w *Worker) info() wire.WorkerInfo {
	w.mu.Lock()
	role, state, ep := w.role, w.state, w.masterEpoch
	w.mu.Unlock()
	seq, logEp := w.store.Load().Applied()
	if role != wire.RoleMaster {
		ep = logEp
	}
	if state == wire.StateReady && role == wire.RoleSlave && w.catchingUp.Load() {
		state = wire.StateCatchingUp
	}
	return wire.WorkerInfo{ID: w.opts.ID, PID: w.pid, Role: role, State: state, Applied: seq, Epoch: ep,
		Plugins: pluginInfos(w.reg), Metrics: w.opts.MetricsAddr}
}

// runZK keeps this worker's ephemeral znode true (re-creating it after a
// session expiry) and follows the master record.
func (w *Worker) runZK(ctx context.Context) error {
	node := wire.WorkersPath(w.opts.ZKRoot) + "/" + w.opts.ID
	var last wire.WorkerInfo
	registered := false
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		if !w.zks.HasSession() {
			w.watchEpoch.Store(0)
			if role, _, _ := w.roleState(); role == wire.RoleMaster {
				// Curator's rule: while disconnected a master must act as if it
				// might no longer be master. The write loop checks the record
				// before every commit, which fails while disconnected.
				w.log.Warn("zookeeper disconnected while master; commits pause until it is back")
			}
			select {
			case <-ctx.Done():
				return nil
			case <-w.zks.Changed():
			case <-time.After(time.Second):
			}
			continue
		}
		if _, isNew := w.zks.NewSessionID(); isNew {
			if role, _, _ := w.roleState(); role == wire.RoleMaster && registered {
				// Our session expired: the orchestrator saw this master vanish
				// and may have elected another. Step down for good.
				return ErrFenced
			}
			registered = false
		}
		if !registered {
			last = w.info()
			if err := w.register(node, last); err != nil {
				w.log.Warn("register znode failed; retrying", "err", err)
				time.Sleep(200 * time.Millisecond)
				continue
			}
			registered = true
			w.log.Info("registered in zookeeper", "node", node, "role", last.Role, "state", last.State)
		}
		data, _, ev, err := w.getMasterW()
		if err != nil {
			w.log.Warn("watch master record failed; retrying", "err", err)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if data != nil {
			if err := w.onMasterRecord(ctx, *data); err != nil {
				return err
			}
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-ev:
				break wait
			case <-w.zks.Changed():
				break wait
			case <-w.zkNudge:
			case <-tick.C:
			}
			if cur := w.info(); !cur.Equal(last) {
				_, err := w.zks.Conn.Set(node, mustJSON(cur), -1)
				if errors.Is(err, zk.ErrNoNode) {
					registered = false // deleted under us: register again
				}
				if err != nil {
					w.log.Debug("update znode failed", "err", err)
					break wait
				}
				last = cur
			}
		}
	}
	return nil
}

func (w *Worker) register(node string, info wire.WorkerInfo) error {
	// A znode left by our previous (expired or expiring) session is deleted
	// first; the ephemeral we create belongs to the current session.
	if err := w.zks.Conn.Delete(node, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("delete stale %s: %w", node, err)
	}
	_, err := w.zks.Conn.Create(node, mustJSON(info), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
	if err != nil {
		return fmt.Errorf("create %s: %w", node, err)
	}
	return nil
}

func (w *Worker) getMasterW() (*wire.MasterRecord, <-chan zk.Event, <-chan zk.Event, error) {
	p := wire.MasterPath(w.opts.ZKRoot)
	data, _, ev, err := w.zks.Conn.GetW(p)
	if errors.Is(err, zk.ErrNoNode) {
		// Only ExistsW sees the node being created.
		ok, _, ev, err := w.zks.Conn.ExistsW(p)
		if err != nil {
			return nil, nil, nil, err
		}
		if ok {
			return w.getMasterW()
		}
		return nil, nil, ev, nil
	}
	if err != nil {
		return nil, nil, nil, err
	}
	var rec wire.MasterRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, nil, nil, fmt.Errorf("decode master record: %w", err)
	}
	return &rec, nil, ev, nil
}

// onMasterRecord reacts to the master record: promotes this worker when it
// is named with a new epoch, fences it when another worker is named.
func (w *Worker) onMasterRecord(ctx context.Context, rec wire.MasterRecord) error {
	w.noteEpoch(rec.Epoch)
	w.mu.Lock()
	w.masterID = rec.ID
	role, state, myEpoch, promoting := w.role, w.state, w.masterEpoch, w.promoting
	w.mu.Unlock()
	w.watchEpoch.Store(0)
	switch {
	case role == wire.RoleMaster && rec.ID == w.opts.ID && rec.Epoch == myEpoch:
		w.watchEpoch.Store(myEpoch)
		return nil
	case role == wire.RoleMaster:
		w.deposed.Store(true)
		return ErrFenced // any other record: someone else's term
	case promoting && (rec.ID != w.opts.ID || rec.Epoch != w.promotingEpochNow()):
		// Named, then not any more while taking over: step down for good
		// (the promotion may already have committed its epoch entry).
		w.deposed.Store(true)
		return ErrFenced
	case rec.ID == w.opts.ID && rec.Epoch > myEpoch && !promoting && state != wire.StateReady:
		// Named while loading a snapshot (our znode was stale): we do not
		// hold the data. Exit, so that the orchestrator elects another.
		return fmt.Errorf("named master of epoch %d while %s: cannot take over", rec.Epoch, state)
	case rec.ID == w.opts.ID && rec.Epoch > myEpoch && !promoting:
		w.mu.Lock()
		w.promoting = true
		w.promotingEpoch = rec.Epoch
		w.mu.Unlock()
		close(w.promoted) // abandon any repair call: we are the master now
		w.changed()
		go func() {
			if err := w.promote(ctx, rec.Epoch); err != nil && ctx.Err() == nil {
				w.die(fmt.Errorf("promotion to epoch %d: %w", rec.Epoch, err))
			}
		}()
	}
	return nil
}

func (w *Worker) promotingEpochNow() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.promotingEpoch
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with plain structs
	}
	return b
}
