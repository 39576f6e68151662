package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/google/uuid"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
	"github.com/rideshare-dbaas/rideshare/internal/zkutil"
)

// cluster keeps the workers in the shape the orchestrator wants: one
// master, the desired number of slaves. It is level-triggered: every
// change (a znode event, a worker exit, a new desired count, a timer)
// triggers one reconcile pass that compares what ZooKeeper and the runtime
// say with what should be, so a missed or doubled event changes nothing.
type cluster struct {
	o       *Orchestrator
	zks     *zkutil.Session
	log     *slog.Logger
	trigger chan struct{}

	mu       sync.Mutex
	desired  int
	view     []WorkerView
	masterID string
	ready    bool
	stopping map[string]bool // stopped on purpose, not to be replaced or counted
	// starts remembers when each worker was started, to back off when
	// workers die right after starting (a broken binary must not spin).
	starts       map[string]time.Time
	backoff      time.Duration
	backoffUntil time.Time
	// recovered is set once the acknowledged watermark was recovered from
	// the workers' znodes: until then reads cannot be bounded (min_seq)
	// or made strong, and are answered 503.
	recovered atomic.Bool
	// gatedSince is when the election first found no candidate holding
	// every acknowledged write (zero when not gated).
	gatedSince time.Time
}

// electionGateWait is how long an election waits for a candidate whose
// znode shows every acknowledged write (a slave updates its znode every
// 100 ms while it drains its sync queue) before it revives the old master
// on its own data instead.
const electionGateWait = 3 * time.Second

// WorkerView is one worker as the API shows it.
type WorkerView struct {
	ID      string `json:"id"`
	PID     int    `json:"pid"`
	Role    string `json:"role"`
	State   string `json:"state"`
	Applied uint64 `json:"applied_seq"`
	Epoch   uint64 `json:"epoch"`
	// Lag is how many sequence numbers the worker is behind the master
	// (0 for the master itself).
	Lag     uint64            `json:"lag"`
	Plugins []wire.PluginInfo `json:"plugins,omitempty"`
	Runtime string            `json:"runtime"` // how it runs: Runtime.Name()
	// Metrics is the host:port the worker serves Prometheus' /metrics on
	// ("" until it registered, or when it serves none).
	Metrics string `json:"metrics"`
}

func newCluster(o *Orchestrator, zks *zkutil.Session) *cluster {
	return &cluster{
		o: o, zks: zks, log: o.log.With("subsystem", "cluster"),
		trigger:  make(chan struct{}, 1),
		desired:  o.opts.Scale.MinSlaves,
		stopping: map[string]bool{},
		starts:   map[string]time.Time{},
	}
}

func (c *cluster) poke() { signalChan(c.trigger) }

func signalChan(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (c *cluster) setDesired(n int) {
	c.mu.Lock()
	changed := c.desired != n
	c.desired = n
	c.mu.Unlock()
	if changed {
		c.log.Info("desired slaves changed", "slaves", n)
		c.poke()
	}
}

func (c *cluster) run(ctx context.Context) error {
	if err := c.zks.WaitSession(ctx, c.o.opts.ZKServers); err != nil {
		return nil
	}
	for {
		err := zkutil.EnsurePath(c.zks.Conn, wire.WorkersPath(c.o.opts.ZKRoot))
		if err == nil {
			break
		}
		c.log.Warn("cannot create zookeeper paths; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	c.recoverAckedSeq()
	go c.watchChildren(ctx)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case id := <-c.o.rt.Exits():
				c.noteExit(id)
				c.poke()
			}
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if err := c.reconcile(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("reconcile failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.trigger:
		case <-tick.C:
		}
	}
}

// watchChildren re-arms a children watch on the workers path after every
// event (ZooKeeper watches fire once) and pokes the reconciler.
func (c *cluster) watchChildren(ctx context.Context) {
	path := wire.WorkersPath(c.o.opts.ZKRoot)
	for ctx.Err() == nil {
		if !c.zks.HasSession() {
			select {
			case <-ctx.Done():
				return
			case <-c.zks.Changed():
			case <-time.After(time.Second):
			}
			continue
		}
		_, _, ev, err := c.zks.Conn.ChildrenW(path)
		if err != nil {
			c.log.Warn("watch workers failed; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		c.poke()
		select {
		case <-ctx.Done():
			return
		case <-ev:
		case <-c.zks.Changed():
		}
	}
}

// recoverAckedSeq raises the orchestrator's acknowledged watermark to the
// highest sequence number any worker has applied, after a restart: this
// orchestrator cannot know what the one before it acknowledged, and the
// election must never pick a worker below it. The estimate errs high (a
// master may have committed more than was acknowledged), which can only
// make an election wait for a better candidate or revive the master.
func (c *cluster) recoverAckedSeq() {
	if c.recovered.Load() {
		return
	}
	zkw, err := c.readWorkers()
	if err != nil {
		c.log.Warn("cannot read the workers to recover the acknowledged watermark; will retry", "err", err)
		return
	}
	for _, info := range zkw {
		if c.o.acked.raise(info.Epoch, info.Applied) {
			c.log.Info("acknowledged watermark recovered from the workers", "epoch", info.Epoch, "seq", info.Applied)
		}
	}
	c.recovered.Store(true)
}

func (c *cluster) noteExit(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if at, ok := c.starts[id]; ok && time.Since(at) < 3*time.Second && !c.stopping[id] {
		c.backoff = min(max(c.backoff*2, 500*time.Millisecond), 10*time.Second)
		c.backoffUntil = time.Now().Add(c.backoff)
		c.log.Warn("worker died right after starting; backing off", "id", id, "backoff", c.backoff)
	}
	delete(c.starts, id)
}

// forgetStart drops id's start time, so that its coming exit (a kill on
// request) is not taken for a worker dying right after starting.
func (c *cluster) forgetStart(id string) {
	c.mu.Lock()
	delete(c.starts, id)
	c.mu.Unlock()
}

func (c *cluster) readWorkers() (map[string]wire.WorkerInfo, error) {
	path := wire.WorkersPath(c.o.opts.ZKRoot)
	names, _, err := c.zks.Conn.Children(path)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", path, err)
	}
	out := make(map[string]wire.WorkerInfo, len(names))
	for _, n := range names {
		data, _, err := c.zks.Conn.Get(path + "/" + n)
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read worker %s: %w", n, err)
		}
		var info wire.WorkerInfo
		if err := json.Unmarshal(data, &info); err != nil {
			c.log.Warn("ignoring unreadable worker znode", "node", n, "err", err)
			continue
		}
		out[n] = info
	}
	return out, nil
}

func (c *cluster) readMaster() (wire.MasterRecord, int32, bool, error) {
	data, st, err := c.zks.Conn.Get(wire.MasterPath(c.o.opts.ZKRoot))
	if errors.Is(err, zk.ErrNoNode) {
		return wire.MasterRecord{}, 0, false, nil
	}
	if err != nil {
		return wire.MasterRecord{}, 0, false, fmt.Errorf("read master record: %w", err)
	}
	var rec wire.MasterRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return wire.MasterRecord{}, 0, false, fmt.Errorf("decode master record: %w", err)
	}
	return rec, st.Version, true, nil
}

// reconcile is one level-triggered pass.
func (c *cluster) reconcile(ctx context.Context) error {
	if !c.zks.HasSession() {
		return errors.New("no zookeeper session")
	}
	c.recoverAckedSeq()
	insts, err := c.o.rt.List(ctx)
	if err != nil {
		return fmt.Errorf("runtime list: %w", err)
	}
	alive := make(map[string]int, len(insts))
	for _, in := range insts {
		alive[in.ID] = in.PID
	}
	zkw, err := c.readWorkers()
	if err != nil {
		return err
	}
	// Workers registered in ZooKeeper that the runtime does not know were
	// started by an earlier orchestrator: adopt them rather than start more.
	if ad, ok := c.o.rt.(Adopter); ok {
		for id, info := range zkw {
			if _, known := alive[id]; known {
				continue
			}
			if ok, err := ad.Adopt(ctx, id, info.PID); err != nil {
				c.log.Warn("adopt worker", "id", id, "err", err)
			} else if ok {
				alive[id] = info.PID
			}
		}
	}
	rec, version, exists, err := c.readMaster()
	if err != nil {
		return err
	}
	sched, scheduled := c.o.rt.(Scheduler)
	c.mu.Lock()
	c.o.obs.alive(alive, c.stopping)
	if scheduled {
		// The scheduler started these workers, not us: note when we first
		// saw each one unregistered, so the first election waits for them
		// as it does for the workers it starts itself.
		for id := range alive {
			if _, registered := zkw[id]; !registered {
				if _, ok := c.starts[id]; !ok {
					c.starts[id] = time.Now()
				}
			}
		}
	}
	for id := range c.stopping {
		if _, ok := alive[id]; !ok {
			delete(c.stopping, id)
		}
	}
	c.mu.Unlock()

	// 1. The master.
	_, masterAlive := alive[rec.ID]
	_, masterRegistered := zkw[rec.ID]
	c.mu.Lock()
	startedAt, justStarted := c.starts[rec.ID]
	c.mu.Unlock()
	if exists && masterAlive && !masterRegistered && justStarted && time.Since(startedAt) < 20*time.Second {
		// A master we just revived on its own data and that has not
		// registered yet: give it time.
	} else if exists && masterAlive && !masterRegistered {
		// Alive but its znode is gone: its ZooKeeper session expired. It may
		// still hold a RabbitMQ connection, so kill it before electing
		// another (it would also fence itself at its next commit).
		c.log.Warn("master lost its zookeeper session; killing it before electing", "id", rec.ID)
		kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.o.rt.Kill(kctx, rec.ID)
		cancel()
		if err != nil && !errors.Is(err, ErrNoSuchWorker) {
			return fmt.Errorf("kill unregistered master: %w", err)
		}
		delete(alive, rec.ID)
		masterAlive = false
	}
	masterID := ""
	if exists && masterAlive {
		masterID = rec.ID
	} else {
		id, err := c.elect(ctx, rec, version, exists, alive, zkw)
		if err != nil {
			return err
		}
		masterID = id
	}

	// The view now, before starting workers: a start can take a while (a
	// container's), and the API must not show a dead master meanwhile.
	c.publish(alive, zkw, masterID)

	// 2. The slaves.
	c.mu.Lock()
	desired := c.desired
	var slaves []Instance
	for id, pid := range alive {
		if id != masterID && !c.stopping[id] {
			slaves = append(slaves, Instance{ID: id, PID: pid})
		}
	}
	wait := time.Until(c.backoffUntil)
	c.mu.Unlock()
	if masterID == "" {
		// No master yet (cold start, or an election waiting for a ready
		// slave): one of the workers will become master.
		desired++
	}
	switch {
	case scheduled:
		// The scheduler places, replaces and removes workers itself: ask
		// for one master and the desired slaves; it keeps that many
		// running (docs/nomad.md: which workers a scale-in removes).
		if err := sched.Scale(ctx, c.desiredWorkers()); err != nil {
			c.log.Warn("scale workers", "err", err)
		}
	case len(slaves) < desired && wait > 0:
		go func() { time.Sleep(wait); c.poke() }()
	case len(slaves) < desired:
		for range desired - len(slaves) {
			id := "w-" + uuid.NewString()[:8]
			c.mu.Lock()
			c.starts[id] = time.Now()
			c.mu.Unlock()
			in, err := c.o.rt.Start(ctx, id)
			if err != nil {
				c.mu.Lock()
				delete(c.starts, id)
				c.backoff = min(max(c.backoff*2, 500*time.Millisecond), 10*time.Second)
				c.backoffUntil = time.Now().Add(c.backoff)
				c.mu.Unlock()
				return fmt.Errorf("start worker: %w", err)
			}
			alive[in.ID] = in.PID
			c.o.obs.started(in)
		}
	case len(slaves) > desired:
		// Scale in: remove the slaves with the highest pids.
		sort.Slice(slaves, func(i, j int) bool { return slaves[i].PID > slaves[j].PID })
		for _, s := range slaves[:len(slaves)-desired] {
			c.mu.Lock()
			c.stopping[s.ID] = true
			c.mu.Unlock()
			c.log.Info("scaling in: stopping slave", "id", s.ID, "pid", s.PID)
			c.o.obs.stopping(s)
			go func(id string) {
				sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := c.o.rt.Stop(sctx, id); err != nil && !errors.Is(err, ErrNoSuchWorker) {
					c.log.Warn("stop slave", "id", id, "err", err)
				}
				c.poke()
			}(s.ID)
		}
	}
	if len(slaves) >= desired {
		c.mu.Lock()
		c.backoff = 0
		c.mu.Unlock()
	}

	// 3. The view the API serves.
	c.publish(alive, zkw, masterID)
	return nil
}

// publish sets the view the API serves from what a reconcile pass found.
func (c *cluster) publish(alive map[string]int, zkw map[string]wire.WorkerInfo, masterID string) {
	view := make([]WorkerView, 0, len(alive))
	ready := false
	for id, pid := range alive {
		v := WorkerView{ID: id, PID: pid, Role: wire.RoleSlave, State: "starting"}
		if info, ok := zkw[id]; ok {
			v.Role, v.State, v.Applied, v.Epoch, v.Plugins, v.Metrics = info.Role, info.State, info.Applied, info.Epoch, info.Plugins, info.Metrics
			if id == masterID && info.Role == wire.RoleMaster && info.State == wire.StateReady {
				ready = true
			}
		}
		view = append(view, v)
	}
	sort.Slice(view, func(i, j int) bool { return view[i].PID < view[j].PID })
	withLag(view, masterID)
	c.o.obs.view(view)
	c.mu.Lock()
	c.view, c.masterID, c.ready = view, masterID, ready
	c.mu.Unlock()
}

// elect picks the live, ready slave that has applied the most writes (ties:
// the lowest pid) and names it master of the next epoch with a
// compare-and-set on the master record. It returns "" when no worker can
// be elected yet.
//
// A candidate must hold every write this orchestrator acknowledged
// ((epoch, applied) ≥ acked): a slave below it would start a new epoch without
// an acknowledged entry. Its znode may only be stale, so the election
// waits up to electionGateWait for it to catch up; then, rather than elect
// it, the dead master is restarted on its own data (Reviver). Only a
// runtime that cannot do that gets the best candidate anyway, with an
// error in the log.
func (c *cluster) elect(ctx context.Context, rec wire.MasterRecord, version int32, exists bool, alive map[string]int, zkw map[string]wire.WorkerInfo) (string, error) {
	if !exists && c.waitingForRegistrations(alive, zkw) {
		// The first election waits for every worker just started, so the
		// tie (all at sequence 0) goes to the lowest pid, as the course
		// design has it, rather than to whichever registered first.
		return "", nil
	}
	var best *wire.WorkerInfo
	bestPID := 0
	for id, info := range zkw {
		pid, ok := alive[id]
		if !ok || info.State != wire.StateReady || info.Role != wire.RoleSlave {
			continue
		}
		// The most up-to-date log wins, as Raft orders logs: the epoch of
		// its last entry, then its length; ties go to the lowest pid.
		if best == nil || less(best.Epoch, best.Applied, info.Epoch, info.Applied) ||
			(info.Epoch == best.Epoch && info.Applied == best.Applied && pid < bestPID) {
			i := info
			best, bestPID = &i, pid
		}
	}
	ackedEpoch, acked := c.o.acked.get()
	if best != nil && exists && less(best.Epoch, best.Applied, ackedEpoch, acked) {
		c.mu.Lock()
		first := c.gatedSince.IsZero()
		if first {
			c.gatedSince = time.Now()
		}
		waited := time.Since(c.gatedSince)
		c.mu.Unlock()
		if waited < electionGateWait {
			if first {
				c.log.Info("election waits: no candidate shows every acknowledged write yet",
					"best", best.ID, "applied_seq", best.Applied, "acked_seq", acked)
			}
			time.AfterFunc(200*time.Millisecond, c.poke)
			return "", nil
		}
		if id, ok, err := c.revive(ctx, rec, version, alive); ok || err != nil {
			return id, err
		}
		c.log.Error("electing a master below the acknowledged watermark: acknowledged writes may be lost",
			"best", best.ID, "applied_seq", best.Applied, "epoch", best.Epoch, "acked_seq", acked, "acked_epoch", ackedEpoch, "old_master", rec.ID)
		// Reads ask for what this master has, not for what is gone.
		c.o.acked.set(best.Epoch, best.Applied)
	}
	if best == nil {
		if !exists {
			return "", nil // cold start: wait for the first worker to be ready
		}
		// No slave can take over (the only slaves are still loading their
		// snapshot, or all are gone). The dead master's database is the one
		// holding every acknowledged write: start it again on it.
		if id, ok, err := c.revive(ctx, rec, version, alive); ok || err != nil {
			return id, err
		}
		if len(alive) == 0 {
			c.log.Error("every worker is gone and the master's data cannot be restarted; the data is lost. Starting a new cluster from empty databases",
				"old_master", rec.ID, "epoch", rec.Epoch)
			if err := c.zks.Conn.Delete(wire.MasterPath(c.o.opts.ZKRoot), version); err != nil && !errors.Is(err, zk.ErrNoNode) {
				return "", fmt.Errorf("reset master record: %w", err)
			}
			c.o.acked.set(0, 0) // the sequence starts again at 1
		}
		return "", nil
	}
	next := wire.MasterRecord{ID: best.ID, Epoch: rec.Epoch + 1}
	data, _ := json.Marshal(next)
	path := wire.MasterPath(c.o.opts.ZKRoot)
	var err error
	if exists {
		_, err = c.zks.Conn.Set(path, data, version)
	} else {
		_, err = c.zks.Conn.Create(path, data, 0, zk.WorldACL(zk.PermAll))
	}
	if err != nil {
		return "", fmt.Errorf("write master record: %w", err)
	}
	c.mu.Lock()
	c.gatedSince = time.Time{}
	c.mu.Unlock()
	candidates := make([]string, 0, len(zkw))
	for id, info := range zkw {
		candidates = append(candidates, fmt.Sprintf("%s(pid %d, seq %d, %s)", id, alive[id], info.Applied, info.State))
	}
	slices.Sort(candidates)
	c.o.obs.elected(rec, exists, best.ID, bestPID, best.Applied, next.Epoch)
	c.log.Info("elected master", "id", best.ID, "pid", bestPID, "applied_seq", best.Applied, "acked_seq", acked, "epoch", next.Epoch, "previous", rec.ID, "candidates", candidates)
	return best.ID, nil
}

// revive restarts the dead master rec.ID on its own data, under a new
// epoch written into the master record before it starts, so that it
// promotes itself and the slaves follow it. ok is false when the runtime
// cannot (it lost the data, or keeps none).
func (c *cluster) revive(ctx context.Context, rec wire.MasterRecord, version int32, alive map[string]int) (string, bool, error) {
	rv, ok := c.o.rt.(Reviver)
	if !ok || !rv.CanRevive(rec.ID) {
		return "", false, nil
	}
	c.mu.Lock()
	wait := time.Until(c.backoffUntil)
	c.mu.Unlock()
	if wait > 0 {
		return "", true, nil
	}
	next := wire.MasterRecord{ID: rec.ID, Epoch: rec.Epoch + 1}
	data, _ := json.Marshal(next)
	if _, err := c.zks.Conn.Set(wire.MasterPath(c.o.opts.ZKRoot), data, version); err != nil {
		return "", true, fmt.Errorf("write master record: %w", err)
	}
	c.log.Warn("no slave can take over with every acknowledged write; restarting the dead master on its own data",
		"id", rec.ID, "epoch", next.Epoch, "live_workers", len(alive))
	c.mu.Lock()
	c.starts[rec.ID] = time.Now()
	c.gatedSince = time.Time{}
	c.mu.Unlock()
	in, err := c.o.rt.Start(ctx, rec.ID)
	if err != nil {
		return "", true, fmt.Errorf("restart master %s: %w", rec.ID, err)
	}
	alive[in.ID] = in.PID
	c.o.obs.revived(rec.ID, in.PID, next.Epoch)
	return rec.ID, true, nil
}

// desiredWorkers is the number of workers a Scheduler runtime is asked
// for: the master and the desired slaves.
func (c *cluster) desiredWorkers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.desired + 1
}

// waitingForRegistrations reports whether a worker started less than 10 s
// ago has not registered in ZooKeeper yet.
func (c *cluster) waitingForRegistrations(alive map[string]int, zkw map[string]wire.WorkerInfo) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range alive {
		if _, registered := zkw[id]; registered {
			continue
		}
		if at, ok := c.starts[id]; ok && time.Since(at) < 10*time.Second {
			return true
		}
	}
	return false
}

// snapshot returns the API view.
func (c *cluster) snapshot() (view []WorkerView, masterID string, ready bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.view), c.masterID, c.ready
}
