package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	nomad "github.com/hashicorp/nomad/api"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
)

// The worker job and group the nomad runtime drives by default: those of
// jobs/worker.nomad.hcl (a test there checks).
const (
	DefaultNomadJob   = "rideshare-worker"
	DefaultNomadGroup = "worker"
	DefaultNomadTask  = "worker"
)

// NomadWorkerIDArg is what the worker jobspec passes as --id: Nomad
// interpolates the allocation's short id, and NomadWorkerID derives the
// same id from an allocation id, so the orchestrator and the worker agree
// on it without talking. jobs/ and the Nomad double use this string.
const NomadWorkerIDArg = "w-${NOMAD_SHORT_ALLOC_ID}"

// NomadWorkerID is the worker id of an allocation: "w-" and the first 8
// characters of its id (NOMAD_SHORT_ALLOC_ID).
func NomadWorkerID(allocID string) string {
	if len(allocID) > 8 {
		allocID = allocID[:8]
	}
	return "w-" + allocID
}

// Errors of the nomad runtime, for errors.Is.
var (
	// ErrNomadJobNotFound: the worker job is not registered (run jobs/worker.nomad.hcl).
	ErrNomadJobNotFound = errors.New("nomad: worker job not found")
	// ErrScaleBlocked: Nomad refused a scale request because a deployment of
	// the job is in progress; the runtime retries it.
	ErrScaleBlocked = errors.New("nomad: job scaling blocked due to active deployment")
	// ErrScaleConflict: the job changed between reading its modify index
	// and the scale request (compare-and-set lost); the runtime re-reads.
	ErrScaleConflict = errors.New("nomad: job modify index changed")
	// ErrScalePolicy: the count is outside the group's scaling block.
	ErrScalePolicy = errors.New("nomad: count outside the group's scaling policy")
	// ErrPlacedByNomad: Start of a worker Nomad does not run; Nomad places workers.
	ErrPlacedByNomad = errors.New("nomad places the workers; the orchestrator only sets the group's count")
)

// NomadOptions configure the nomad runtime.
type NomadOptions struct {
	// Address of Nomad's HTTP API (default: NOMAD_ADDR, else
	// http://127.0.0.1:4646). Region, Namespace and the ACL token come
	// from NOMAD_REGION, NOMAD_NAMESPACE and NOMAD_TOKEN as for the CLI.
	Address string
	Job     string // the worker job (default "rideshare-worker")
	Group   string // its task group (default "worker")
	Task    string // the worker task in it (default "worker")
	// CallTimeout bounds one non-blocking API call (default 10 s).
	CallTimeout time.Duration
	// WaitTime is how long a blocking query waits for a change (default 30 s).
	WaitTime time.Duration
	// RetryInterval is the longest wait before a refused scale request is
	// sent again, and the back-off after a failed call (default 2 s).
	RetryInterval time.Duration
	Logger        *slog.Logger
}

func (o *NomadOptions) defaults() {
	if o.Job == "" {
		o.Job = DefaultNomadJob
	}
	if o.Group == "" {
		o.Group = DefaultNomadGroup
	}
	if o.Task == "" {
		o.Task = DefaultNomadTask
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = 10 * time.Second
	}
	if o.WaitTime == 0 {
		o.WaitTime = 30 * time.Second
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Nomad runs the workers as the allocations of a Nomad job's task group
// (jobs/worker.nomad.hcl). Nomad places, restarts and reschedules them;
// the orchestrator sets the group's count (Scale, a scale request with the
// job's modify index as compare-and-set), crashes a worker by signalling
// its task (Kill: SIGKILL, Nomad restarts it in place on its data) and
// learns of deaths from a blocking query on the job's allocations (Exits).
// A worker's pid is the one it registered in ZooKeeper: the runtime joins
// the registrations with the allocations (docs/nomad.md says whose pid that
// is under each task driver).
type Nomad struct {
	opts  NomadOptions
	api   *nomad.Client
	log   *slog.Logger
	exits chan string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	poke   chan struct{}

	mu     sync.Mutex
	wanted int // the count Scale asked for; -1 until it is called
	regs   func() (map[string]wire.WorkerInfo, error)
}

var (
	_ Runtime   = (*Nomad)(nil)
	_ Scheduler = (*Nomad)(nil)
	_ Reviver   = (*Nomad)(nil)
)

// NewNomad makes the nomad runtime and starts its scaler and its watch on
// the job's allocations; Close stops them. It does not need Nomad to
// answer yet: calls fail (and loops retry) until it does.
func NewNomad(opts NomadOptions) (*Nomad, error) {
	opts.defaults()
	cfg := nomad.DefaultConfig() // NOMAD_ADDR, NOMAD_REGION, NOMAD_NAMESPACE, NOMAD_TOKEN, TLS
	if opts.Address != "" {
		cfg.Address = opts.Address
	}
	client, err := nomad.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("nomad runtime: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Nomad{
		opts: opts, api: client, log: opts.Logger, exits: make(chan string, 64),
		ctx: ctx, cancel: cancel, poke: make(chan struct{}, 1), wanted: -1,
	}
	n.wg.Add(2)
	go func() { defer n.wg.Done(); n.scaleLoop() }()
	go func() { defer n.wg.Done(); n.watchAllocs() }()
	return n, nil
}

// Name is the runtime's name, as --runtime takes it.
func (n *Nomad) Name() string { return "nomad" }

// NomadAnswers reports whether a Nomad agent answers at addr (empty:
// NOMAD_ADDR or the default), for the orchestrator's --runtime auto.
func NomadAnswers(ctx context.Context, addr string) error {
	cfg := nomad.DefaultConfig()
	if addr != "" {
		cfg.Address = addr
	}
	client, err := nomad.NewClient(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var leader string
	if _, err := client.Raw().Query("/v1/status/leader", &leader, (&nomad.QueryOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("nomad at %s: %w", cfg.Address, err)
	}
	return nil
}

// useRegistrations gives the runtime the workers' ZooKeeper registrations
// (the orchestrator's cluster view), from which List takes the pids.
func (n *Nomad) useRegistrations(f func() (map[string]wire.WorkerInfo, error)) {
	n.mu.Lock()
	n.regs = f
	n.mu.Unlock()
}

func (n *Nomad) query(ctx context.Context) (*nomad.QueryOptions, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, n.opts.CallTimeout)
	return (&nomad.QueryOptions{}).WithContext(ctx), cancel
}

// classify turns an API error into one of the runtime's sentinel errors
// where one applies (the api package reports Nomad's status and text).
func (n *Nomad) classify(err error) error {
	if err == nil {
		return nil
	}
	var ure nomad.UnexpectedResponseError
	if !errors.As(err, &ure) {
		return err
	}
	body := ure.Body()
	switch {
	case ure.StatusCode() == http.StatusNotFound && strings.Contains(body, "job"):
		return fmt.Errorf("%w: %q: %s", ErrNomadJobNotFound, n.opts.Job, strings.TrimSpace(body))
	case strings.Contains(body, "blocked due to active deployment"):
		return fmt.Errorf("%w (%v)", ErrScaleBlocked, err)
	case strings.Contains(body, "Enforcing job modify index"):
		return fmt.Errorf("%w (%v)", ErrScaleConflict, err)
	case strings.Contains(body, "scaling policy"):
		return fmt.Errorf("%w (%v)", ErrScalePolicy, err)
	}
	return err
}

// allocs returns the worker group's allocations (all client states).
func (n *Nomad) allocs(ctx context.Context) ([]*nomad.AllocationListStub, error) {
	q, cancel := n.query(ctx)
	defer cancel()
	stubs, _, err := n.api.Jobs().Allocations(n.opts.Job, false, q)
	if err != nil {
		return nil, fmt.Errorf("nomad: allocations of %s: %w", n.opts.Job, n.classify(err))
	}
	out := stubs[:0]
	for _, s := range stubs {
		if s.TaskGroup == n.opts.Group {
			out = append(out, s)
		}
	}
	return out, nil
}

// taskRunning reports whether the allocation is meant to run and its
// worker task runs now (not restarting, not stopped).
func (n *Nomad) taskRunning(s *nomad.AllocationListStub) bool {
	if s.DesiredStatus != nomad.AllocDesiredStatusRun || s.ClientStatus != nomad.AllocClientStatusRunning {
		return false
	}
	ts := s.TaskStates[n.opts.Task]
	return ts != nil && ts.State == "running"
}

func terminal(s *nomad.AllocationListStub) bool {
	switch s.ClientStatus {
	case nomad.AllocClientStatusComplete, nomad.AllocClientStatusFailed, nomad.AllocClientStatusLost:
		return true
	}
	return false
}

// List returns the workers whose task runs now, with the pid each
// registered in ZooKeeper (0 until it has registered).
func (n *Nomad) List(ctx context.Context) ([]Instance, error) {
	stubs, err := n.allocs(ctx)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	regsf := n.regs
	n.mu.Unlock()
	var regs map[string]wire.WorkerInfo
	if regsf != nil {
		if regs, err = regsf(); err != nil {
			return nil, fmt.Errorf("nomad: join with zookeeper registrations: %w", err)
		}
	}
	out := make([]Instance, 0, len(stubs))
	for _, s := range stubs {
		if !n.taskRunning(s) {
			continue
		}
		id := NomadWorkerID(s.ID)
		out = append(out, Instance{ID: id, PID: regs[id].PID})
	}
	return out, nil
}

// find returns the live (non-terminal, desired run) allocation of worker id.
func (n *Nomad) find(ctx context.Context, id string) (*nomad.AllocationListStub, error) {
	stubs, err := n.allocs(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range stubs {
		if NomadWorkerID(s.ID) == id && s.DesiredStatus == nomad.AllocDesiredStatusRun && !terminal(s) {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: %s (no live allocation of %s/%s)", ErrNoSuchWorker, id, n.opts.Job, n.opts.Group)
}

// Start is not how Nomad workers come to be (Scale is). It is called for
// a worker the orchestrator revives on its data (Reviver): Nomad is
// restarting that allocation in place already, so there is nothing to do.
func (n *Nomad) Start(ctx context.Context, id string) (Instance, error) {
	if _, err := n.find(ctx, id); err != nil {
		return Instance{}, fmt.Errorf("start %s: %w (%w)", id, ErrPlacedByNomad, err)
	}
	n.log.Info("worker is restarted in place by nomad", "id", id)
	return Instance{ID: id}, nil
}

// CanRevive reports whether worker id's allocation is still there (its
// task restarting in place on the allocation's data) but not running.
func (n *Nomad) CanRevive(id string) bool {
	s, err := n.find(n.ctx, id)
	return err == nil && !n.taskRunning(s)
}

// Kill crashes worker id: SIGKILL to its task through Nomad's allocation
// signal API, which the task driver delivers; Nomad's restart policy then
// starts the task again in the same allocation, on its data (a crash,
// not a removal: the count does not change). It returns once Nomad reports
// the task ended.
func (n *Nomad) Kill(ctx context.Context, id string) error {
	s, err := n.find(ctx, id)
	if err != nil {
		return err
	}
	before := taskRestarts(s, n.opts.Task)
	q, cancel := n.query(ctx)
	err = n.api.Allocations().Signal(&nomad.Allocation{ID: s.ID}, q, n.opts.Task, "SIGKILL")
	cancel()
	if err != nil {
		var ure nomad.UnexpectedResponseError
		if errors.As(err, &ure) && (ure.StatusCode() == http.StatusNotFound || strings.Contains(ure.Body(), "not running")) {
			return fmt.Errorf("%w: %s: %s", ErrNoSuchWorker, id, strings.TrimSpace(ure.Body()))
		}
		return fmt.Errorf("nomad: signal %s (alloc %s): %w", id, s.ID, err)
	}
	n.log.Info("sent SIGKILL to worker task", "id", id, "alloc", s.ID)
	return n.waitAlloc(ctx, s.ID, func(a *nomad.Allocation) bool {
		ts := a.TaskStates[n.opts.Task]
		return a.ClientTerminalStatus() || ts == nil || ts.State != "running" || ts.Restarts > before
	})
}

func taskRestarts(s *nomad.AllocationListStub, task string) uint64 {
	if ts := s.TaskStates[task]; ts != nil {
		return ts.Restarts
	}
	return 0
}

// Stop stops worker id's allocation through Nomad's allocation stop API:
// the task gets its kill signal and kill_timeout, and Nomad places a
// replacement allocation elsewhere (a new worker that starts from a
// snapshot). Scale-in does not use it (Scale lowers the count instead).
func (n *Nomad) Stop(ctx context.Context, id string) error {
	s, err := n.find(ctx, id)
	if err != nil {
		return err
	}
	q, cancel := n.query(ctx)
	_, err = n.api.Allocations().Stop(&nomad.Allocation{ID: s.ID}, q)
	cancel()
	if err != nil {
		return fmt.Errorf("nomad: stop %s (alloc %s): %w", id, s.ID, n.classify(err))
	}
	n.log.Info("stopped worker allocation; nomad reschedules it", "id", id, "alloc", s.ID)
	return n.waitAlloc(ctx, s.ID, func(a *nomad.Allocation) bool { return a.ClientTerminalStatus() })
}

// waitAlloc follows one allocation with blocking queries until done says
// so, ctx ends, or the allocation is gone.
func (n *Nomad) waitAlloc(ctx context.Context, allocID string, done func(*nomad.Allocation) bool) error {
	var index uint64
	for {
		wait := min(n.opts.WaitTime, 5*time.Second)
		qctx, cancel := context.WithTimeout(ctx, wait+n.opts.CallTimeout)
		a, meta, err := n.api.Allocations().Info(allocID, (&nomad.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(qctx))
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("waiting for alloc %s: %w", allocID, ctx.Err())
		case err != nil:
			var ure nomad.UnexpectedResponseError
			if errors.As(err, &ure) && ure.StatusCode() == http.StatusNotFound {
				return nil // garbage-collected: certainly ended
			}
			n.log.Debug("alloc info failed; retrying", "alloc", allocID, "err", err)
			if !sleepCtx(ctx, n.opts.RetryInterval) {
				return fmt.Errorf("waiting for alloc %s: %w", allocID, ctx.Err())
			}
			index = 0
			continue
		}
		if done(a) {
			return nil
		}
		index = nextIndex(index, meta.LastIndex)
	}
}

// nextIndex is the WaitIndex for the next blocking query: Nomad's answer,
// reset to 0 if it went backwards (a restored or new server).
func nextIndex(prev, last uint64) uint64 {
	if last < prev {
		return 0
	}
	return last
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Scale asks for n workers in the group. It returns at once: the scaler
// sends the request, compare-and-set on the job's modify index, and sends
// it again while Nomad refuses it (a deployment in progress, a lost
// compare-and-set, Nomad unreachable) until the group's count is n.
func (n *Nomad) Scale(_ context.Context, count int) error {
	if count < 0 {
		return fmt.Errorf("nomad: scale to %d workers", count)
	}
	n.mu.Lock()
	changed := n.wanted != count
	n.wanted = count
	n.mu.Unlock()
	if changed {
		signalChan(n.poke)
	}
	return nil
}

// scaleLoop drives the group's count to the wanted one and keeps it
// there: between requests it follows the job's scale status with a
// blocking query, so a count changed behind its back (a re-run of the
// jobspec without -preserve-counts, a terraform apply, a manual
// `nomad job scale`) is set back within seconds.
func (n *Nomad) scaleLoop() {
	log := n.log.With("job", n.opts.Job, "group", n.opts.Group)
	var index uint64 // of the last scale status read, for blocking waits
	refused := -1    // a count Nomad's scaling policy refused: not resent
	for n.ctx.Err() == nil {
		n.mu.Lock()
		want := n.wanted
		n.mu.Unlock()
		wait := n.opts.WaitTime // idle: follow the scale status
		if want >= 0 && want != refused {
			err := n.scaleOnce(want, &index)
			switch {
			case err == nil:
				refused = -1
			case errors.Is(err, ErrScaleBlocked):
				// Active deployments are common (every scale-out starts
				// one) and end by themselves: wait for a change, retry.
				log.Info("scale request refused while a deployment is active; retrying", "count", want)
				wait = n.opts.RetryInterval
			case errors.Is(err, ErrScaleConflict):
				log.Info("job changed under the scale request; re-reading its modify index", "count", want)
				continue
			case errors.Is(err, ErrScalePolicy):
				log.Error("nomad refuses the count (scaling block min/max); not retried until the wanted count changes", "count", want, "err", err)
				refused = want
			default:
				if n.ctx.Err() != nil {
					return
				}
				log.Warn("scale request failed; retrying", "count", want, "err", err)
				wait, index = n.opts.RetryInterval, 0
			}
		}
		n.waitScaleChange(&index, wait)
	}
}

// waitScaleChange blocks until the job's scale status changes after
// *index, Scale is called with a new count, wait passes, or Close.
func (n *Nomad) waitScaleChange(index *uint64, wait time.Duration) {
	ctx, cancel := context.WithTimeout(n.ctx, wait+wait/16+n.opts.CallTimeout)
	defer cancel()
	poked := make(chan struct{})
	go func() {
		defer close(poked)
		select {
		case <-n.poke:
			cancel()
		case <-ctx.Done():
		}
	}()
	_, meta, err := n.api.Jobs().ScaleStatus(n.opts.Job, (&nomad.QueryOptions{WaitIndex: *index, WaitTime: wait}).WithContext(ctx))
	switch {
	case err == nil:
		*index = nextIndex(*index, meta.LastIndex)
	case ctx.Err() == nil:
		// Nomad answered an error at once: do not spin.
		sleepCtx(n.ctx, n.opts.RetryInterval)
	}
	cancel()
	<-poked
}

// scaleOnce reads the group's count and the job modify index and, if the
// count differs from want, sends one scale request with that index as
// compare-and-set. It returns nil once the count is want.
func (n *Nomad) scaleOnce(want int, index *uint64) error {
	q, cancel := n.query(n.ctx)
	st, meta, err := n.api.Jobs().ScaleStatus(n.opts.Job, q)
	cancel()
	if err != nil {
		return fmt.Errorf("nomad: scale status of %s: %w", n.opts.Job, n.classify(err))
	}
	*index = meta.LastIndex
	tg, ok := st.TaskGroups[n.opts.Group]
	if !ok {
		return fmt.Errorf("%w: job %q has no group %q", ErrNomadJobNotFound, n.opts.Job, n.opts.Group)
	}
	if tg.Desired == want {
		return nil
	}
	count := int64(want)
	ctx, cancel := context.WithTimeout(n.ctx, n.opts.CallTimeout)
	defer cancel()
	resp, _, err := n.api.Jobs().ScaleWithRequest(n.opts.Job, &nomad.ScalingRequest{
		Count:          &count,
		Target:         map[string]string{"Job": n.opts.Job, "Group": n.opts.Group},
		Message:        fmt.Sprintf("rideshare orchestrator: %d workers (1 master, %d slaves)", want, max(want-1, 0)),
		JobModifyIndex: st.JobModifyIndex,
	}, (&nomad.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("nomad: scale %s/%s %d -> %d: %w", n.opts.Job, n.opts.Group, tg.Desired, want, n.classify(err))
	}
	n.log.Info("scaled the worker group", "job", n.opts.Job, "group", n.opts.Group,
		"from", tg.Desired, "to", want, "eval", resp.EvalID, "job_modify_index", resp.JobModifyIndex)
	return nil
}

// watchAllocs follows the group's allocations with a blocking query and
// reports on Exits every worker whose task stopped running (it died, was
// signalled, or its allocation stopped), so the orchestrator reacts at
// once rather than at ZooKeeper's session timeout.
func (n *Nomad) watchAllocs() {
	type seen struct {
		running  bool
		restarts uint64
	}
	prev := map[string]seen{}
	var index uint64
	for n.ctx.Err() == nil {
		qctx, cancel := context.WithTimeout(n.ctx, n.opts.WaitTime+n.opts.WaitTime/16+n.opts.CallTimeout)
		stubs, meta, err := n.api.Jobs().Allocations(n.opts.Job, false,
			(&nomad.QueryOptions{WaitIndex: index, WaitTime: n.opts.WaitTime}).WithContext(qctx))
		cancel()
		if err != nil {
			if n.ctx.Err() != nil {
				return
			}
			n.log.Debug("watch allocations failed; retrying", "job", n.opts.Job, "err", n.classify(err))
			index = 0
			sleepCtx(n.ctx, n.opts.RetryInterval)
			continue
		}
		index = nextIndex(index, meta.LastIndex)
		cur := make(map[string]seen, len(stubs))
		for _, s := range stubs {
			if s.TaskGroup != n.opts.Group {
				continue
			}
			now := seen{running: n.taskRunning(s), restarts: taskRestarts(s, n.opts.Task)}
			cur[s.ID] = now
			if p, ok := prev[s.ID]; ok && p.running && (!now.running || now.restarts > p.restarts) {
				n.exited(s.ID)
			}
		}
		for id, p := range prev {
			if _, ok := cur[id]; !ok && p.running {
				n.exited(id) // garbage-collected while we looked away
			}
		}
		prev = cur
	}
}

func (n *Nomad) exited(allocID string) {
	id := NomadWorkerID(allocID)
	n.log.Info("worker task ended", "id", id, "alloc", allocID)
	select {
	case n.exits <- id:
	default: // the reconciler also polls List
	}
}

// Exits reports workers whose task ended.
func (n *Nomad) Exits() <-chan string { return n.exits }

// Close stops the scaler and the watch. The workers are the Nomad job's
// and outlive the orchestrator whatever killAll says: `nomad job stop`
// ends them (docs/nomad.md).
func (n *Nomad) Close(bool) error {
	n.cancel()
	n.wg.Wait()
	return nil
}
