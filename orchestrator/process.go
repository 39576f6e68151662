package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ProcessOptions configure the process runtime.
type ProcessOptions struct {
	Binary  string   // the worker binary
	Args    []string // arguments every worker gets (broker, ZooKeeper, ...)
	Env     []string // added to the orchestrator's environment for every worker (secrets go here, not in Args)
	DataDir string   // each worker gets DataDir/<id>; its log is DataDir/<id>.log
	// KeepDead is how many dead workers' data are kept (default
	// DefaultKeepDead; negative: none beyond what a restart needs).
	KeepDead int
	Logger   *slog.Logger
	// Grace is how long Stop waits after SIGTERM before SIGKILL.
	Grace time.Duration
	// DieWithParent has the kernel kill the workers when this process
	// dies, however it dies (Pdeathsig). Off in production: workers hold
	// the data and outlive a crashed orchestrator, which a new one adopts.
	// Tests turn it on, so that nothing they start outlives them.
	DieWithParent bool
}

// Process runs workers as child processes of the orchestrator.
type Process struct {
	opts  ProcessOptions
	log   *slog.Logger
	data  *workerData
	exits chan string

	mu      sync.Mutex
	procs   map[string]*proc
	started map[string]bool // every id this runtime started (never adopted)

	spawn chan func() // to the spawner thread (DieWithParent)
}

type proc struct {
	pid  int
	done chan struct{} // closed when the process has ended
}

var (
	_ Runtime = (*Process)(nil)
	_ Adopter = (*Process)(nil)
	_ Reviver = (*Process)(nil)
)

// NewProcess makes a process runtime.
func NewProcess(opts ProcessOptions) (*Process, error) {
	if opts.Binary == "" {
		return nil, errors.New("process runtime: worker binary is required")
	}
	bin, err := filepath.Abs(opts.Binary)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("process runtime: worker binary: %w", err)
	}
	opts.Binary = bin
	if opts.Grace == 0 {
		opts.Grace = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	data, err := newWorkerData(opts.DataDir, opts.KeepDead, -1, opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("process runtime: %w", err)
	}
	p := &Process{opts: opts, log: opts.Logger, data: data, exits: make(chan string, 64), procs: map[string]*proc{}, started: map[string]bool{}}
	if opts.DieWithParent {
		p.spawn = make(chan func())
		go p.spawner()
	}
	return p, nil
}

// spawner starts every worker from one goroutine locked to its OS thread
// for the process's lifetime: the kernel sends Pdeathsig when the thread
// that forked a child ends, not the process, and the Go runtime may retire
// an idle thread. It never returns, even after Close: workers left running
// on purpose (Close(false), for a new orchestrator to adopt) would die
// with its thread.
func (p *Process) spawner() {
	runtime.LockOSThread() // never unlocked: the thread ends with the process
	for f := range p.spawn {
		f()
	}
}

// startCmd starts cmd, from the spawner thread when workers die with us.
func (p *Process) startCmd(cmd *exec.Cmd) error {
	if p.spawn == nil {
		return cmd.Start()
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	errc := make(chan error, 1)
	p.spawn <- func() { errc <- cmd.Start() }
	return <-errc
}

// Name is "process".
func (p *Process) Name() string { return RuntimeProcess }

// Start launches the worker binary.
func (p *Process) Start(_ context.Context, id string) (Instance, error) {
	p.mu.Lock()
	live := map[string]bool{id: true}
	for w := range p.procs {
		live[w] = true
	}
	p.mu.Unlock()
	p.data.prune(live)
	if err := p.data.prepare(id); err != nil {
		return Instance{}, err
	}
	dir := p.data.dir(id)
	logf, err := os.OpenFile(p.data.logPath(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return Instance{}, fmt.Errorf("worker log: %w", err)
	}
	args := append(append([]string{}, p.opts.Args...), "--id", id, "--data-dir", dir)
	cmd := exec.Command(p.opts.Binary, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if len(p.opts.Env) > 0 {
		cmd.Env = append(os.Environ(), p.opts.Env...)
	}
	// Workers outlive a crashed orchestrator on purpose: they hold the
	// data, and a restarted orchestrator adopts them (Adopt). Setpgid: a
	// Ctrl-C in the terminal reaches the orchestrator only, which then
	// stops its workers in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.startCmd(cmd); err != nil {
		logf.Close()
		return Instance{}, fmt.Errorf("start worker %s: %w", id, err)
	}
	pr := &proc{pid: cmd.Process.Pid, done: make(chan struct{})}
	p.mu.Lock()
	p.procs[id] = pr
	p.started[id] = true
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		close(pr.done)
		p.mu.Lock()
		delete(p.procs, id)
		p.mu.Unlock()
		p.log.Info("worker exited", "id", id, "pid", pr.pid, "status", exitStatus(err))
		select {
		case p.exits <- id:
		default: // the reconciler also polls List
		}
	}()
	p.log.Info("worker started", "id", id, "pid", cmd.Process.Pid)
	return Instance{ID: id, PID: cmd.Process.Pid}, nil
}

func exitStatus(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

func (p *Process) get(id string) (*proc, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr, ok := p.procs[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNoSuchWorker, id)
	}
	return pr, nil
}

// Kill sends SIGKILL and waits until the process is reaped.
func (p *Process) Kill(ctx context.Context, id string) error {
	pr, err := p.get(id)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pr.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s: %w", id, err)
	}
	select {
	case <-pr.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop removes a worker on purpose (scale-in): SIGTERM, up to Grace for
// it to finish what it holds, then SIGKILL; then its data is removed.
func (p *Process) Stop(ctx context.Context, id string) error {
	if err := p.stop(ctx, id); err != nil {
		return err
	}
	return p.data.remove(id)
}

// stop sends SIGTERM, waits up to Grace, then kills.
func (p *Process) stop(ctx context.Context, id string) error {
	pr, err := p.get(id)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pr.pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	t := time.NewTimer(p.opts.Grace)
	defer t.Stop()
	select {
	case <-pr.done:
		return nil
	case <-t.C:
		return p.Kill(ctx, id)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// List returns the live children.
func (p *Process) List(context.Context) ([]Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Instance, 0, len(p.procs))
	for id, pr := range p.procs {
		out = append(out, Instance{ID: id, PID: pr.pid})
	}
	return out, nil
}

// Adopt takes over a worker that an earlier orchestrator started, if the
// process pid is alive and is that worker (its command line is our worker
// binary with --id id). It reports whether it adopted it.
func (p *Process) Adopt(_ context.Context, id string, pid int) (bool, error) {
	p.mu.Lock()
	_, known := p.procs[id]
	mine := p.started[id]
	p.mu.Unlock()
	// A worker this runtime started itself is never adopted: it is known
	// while it runs, and once it was reaped its znode may linger (until its
	// session expires) while its pid, dying, still reads as the worker.
	if known || mine || pid <= 0 {
		return false, nil
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false, nil // gone
	}
	args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	if len(args) == 0 || args[0] != p.opts.Binary || !slices.Contains(args, "--id") ||
		args[slices.Index(args, "--id")+1] != id {
		return false, nil // a different process reusing the pid
	}
	pr := &proc{pid: pid, done: make(chan struct{})}
	p.mu.Lock()
	p.procs[id] = pr
	p.mu.Unlock()
	// Not our child: we cannot wait for it, so poll for its end.
	go func() {
		for syscall.Kill(pid, 0) == nil {
			time.Sleep(100 * time.Millisecond)
		}
		close(pr.done)
		p.mu.Lock()
		delete(p.procs, id)
		p.mu.Unlock()
		p.log.Info("adopted worker exited", "id", id, "pid", pid)
		select {
		case p.exits <- id:
		default:
		}
	}()
	p.log.Info("adopted running worker", "id", id, "pid", pid)
	return true, nil
}

// CanRevive reports whether worker id's database is still on disk (and
// the worker is not running), so Start(id) would run it on its own data.
func (p *Process) CanRevive(id string) bool {
	if _, err := p.get(id); err == nil {
		return false
	}
	return p.data.hasDB(id)
}

// Exits reports workers that ended.
func (p *Process) Exits() <-chan string { return p.exits }

// Close stops every worker when killAll is set (gracefully, in parallel);
// their data stays, so that a new orchestrator can start the last master
// again on its database.
func (p *Process) Close(killAll bool) error {
	if !killAll {
		return nil
	}
	list, _ := p.List(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.Grace+5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, in := range list {
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			_ = p.stop(ctx, id)
		}(in.ID)
	}
	wg.Wait()
	return nil
}
