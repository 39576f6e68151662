package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StackOptions describe one RideShare stack for the bench: scripts/run.sh
// (hence scripts/stack.sh, the one way the project starts a stack) in the
// background, with the slave count pinned.
type StackOptions struct {
	Repo     string // the repository (scripts/run.sh, bin/)
	Name     string // stack name: ZooKeeper root /rideshare-NAME, queue prefix NAME.
	Dir      string // state and logs; emptied first
	PortBase int    // orchestrator's port; users +81, rides +82, Traefik +80 (API +88), pprof +90
	Slaves   int    // --min-slaves = --max-slaves
	Pprof    bool   // orchestrator --pprof on PortBase+90, workers --pprof on 127.0.0.1:0
}

// Stack is a running stack.
type Stack struct {
	opts     StackOptions
	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	OrchURL  string
	LBURL    string
	UsersURL string
	RidesURL string
	// PprofAddr is the orchestrator's pprof address ("" when off).
	PprofAddr string
}

// StartStack starts the stack and waits until the orchestrator is ready,
// Traefik routes and the pinned number of slaves is up, or ctx ends.
//
// The fixed ports lie in Linux's ephemeral range (32768–60999), so any
// outgoing connection on the machine may hold one as its local port for a
// while: a start that failed on a port in use is tried again, 3 times in
// all, a few seconds apart.
func StartStack(ctx context.Context, opts StackOptions) (*Stack, error) {
	var err error
	for try := 1; ; try++ {
		var s *Stack
		if s, err = startStack(ctx, opts); err == nil || try == 3 || !portClash(opts.Dir+".log") {
			return s, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(3 * time.Second):
		}
	}
}

// portClash: the log says a port was in use.
func portClash(log string) bool {
	b, _ := os.ReadFile(log)
	return bytes.Contains(b, []byte("address already in use")) || bytes.Contains(b, []byte("is already in use"))
}

func startStack(ctx context.Context, opts StackOptions) (*Stack, error) {
	// A run killed too hard to clean up left its stack running: stop it
	// (scripts/stack.sh's stack_reap; a live run holding the lock is left
	// alone, and its ports then make this start fail clearly).
	if _, err := os.Stat(filepath.Join(opts.Dir, "pids")); err == nil {
		reap := exec.CommandContext(ctx, "bash", "-c", `source "$1" && stack_reap "$2"`, "_",
			filepath.Join(opts.Repo, "scripts", "stack.sh"), opts.Dir)
		if out, err := reap.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("stack %s: stopping what an earlier run left: %w: %s", opts.Name, err, out)
		}
	}
	if err := checkUnlocked(opts.Dir); err != nil {
		return nil, fmt.Errorf("stack %s: %w", opts.Name, err)
	}
	if err := os.RemoveAll(opts.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(opts.Dir + ".log")
	if err != nil {
		return nil, err
	}
	// Workers log at debug: one "batch committed" line per group commit,
	// which Batches reads (nothing else logs at debug per request).
	orchArgs := []string{"--min-slaves", strconv.Itoa(opts.Slaves), "--max-slaves", strconv.Itoa(opts.Slaves),
		"--worker-log-level", "debug"}
	s := &Stack{
		opts:     opts,
		done:     make(chan struct{}),
		OrchURL:  fmt.Sprintf("http://127.0.0.1:%d", opts.PortBase),
		LBURL:    fmt.Sprintf("http://127.0.0.1:%d", opts.PortBase+80),
		UsersURL: fmt.Sprintf("http://127.0.0.1:%d", opts.PortBase+81),
		RidesURL: fmt.Sprintf("http://127.0.0.1:%d", opts.PortBase+82),
	}
	if opts.Pprof {
		s.PprofAddr = fmt.Sprintf("127.0.0.1:%d", opts.PortBase+90)
		orchArgs = append(orchArgs, "--pprof", s.PprofAddr, "--worker-pprof", "127.0.0.1:0")
	}
	cmd := exec.Command("bash", filepath.Join(opts.Repo, "scripts", "run.sh"))
	cmd.Env = append(os.Environ(),
		"RUN_NAME="+opts.Name,
		"RUN_DIR="+opts.Dir,
		"RUN_PORT_BASE="+strconv.Itoa(opts.PortBase),
		"RUN_SCALE_WINDOW=1h",
		"RUN_ORCH_ARGS="+strings.Join(orchArgs, " "),
		"RUN_SKIP_MAKE=1",
		// Processes, whatever else the machine offers: the bench reads
		// their pids, RSS and profiles from this host.
		"RUNTIME=process",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C reaches the bench only, which then
	// stops the stack in order (run.sh's trap stops every component). If
	// the bench dies without stopping it, the kernel sends run.sh SIGTERM.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("stack %s: %w", opts.Name, err)
	}
	s.cmd = cmd
	go func() {
		s.waitErr = cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	if err := s.waitReady(ctx); err != nil {
		s.Stop()
		return nil, fmt.Errorf("stack %s: %w (log: %s.log)", opts.Name, err, opts.Dir)
	}
	return s, nil
}

// checkUnlocked fails when a live run holds dir's stack lock
// (scripts/stack.sh takes it for as long as its stack runs).
func checkUnlocked(dir string) error {
	f, err := os.Open(filepath.Join(dir, ".lock"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("a stack is still running from %s (another bench run?): stop it first", dir)
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// Dir is the stack's state directory.
func (s *Stack) Dir() string { return s.opts.Dir }

func (s *Stack) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	c := &http.Client{Timeout: 5 * time.Second}
	var last string
	for {
		select {
		case <-s.done:
			return fmt.Errorf("scripts/run.sh exited while starting: %v", s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not ready: %s: %w", last, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
		if !Listening(strings.TrimPrefix(s.LBURL, "http://")) || !Listening(strings.TrimPrefix(s.OrchURL, "http://")) {
			last = "Traefik or the orchestrator does not listen yet"
			continue
		}
		// Routed: what scripts/stack.sh's stack_is_routed accepts.
		switch code := status(c, s.LBURL+"/api/v1/users"); code {
		case 0, http.StatusNotFound, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			last = fmt.Sprintf("Traefik → users answered %d", code)
			continue
		}
		ws, err := s.Workers(ctx)
		if err != nil {
			last = err.Error()
			continue
		}
		masters, slaves := 0, 0
		for _, w := range ws {
			switch w.Role {
			case "master":
				masters++
			case "slave":
				slaves++
			}
		}
		if masters == 1 && slaves == s.opts.Slaves {
			return nil
		}
		last = fmt.Sprintf("%d masters, %d of %d slaves", masters, slaves, s.opts.Slaves)
	}
}

func status(c *http.Client, u string) int {
	resp, err := c.Get(u)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// WorkerInfo is one row of the orchestrator's GET /api/v1/workers.
type WorkerInfo struct {
	ID   string `json:"id"`
	PID  int    `json:"pid"`
	Role string `json:"role"`
}

// Workers lists the DBaaS workers.
func (s *Stack) Workers(ctx context.Context) ([]WorkerInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.OrchURL+"/api/v1/workers", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/workers: %d", resp.StatusCode)
	}
	var ws []WorkerInfo
	if err := json.NewDecoder(resp.Body).Decode(&ws); err != nil {
		return nil, fmt.Errorf("GET /api/v1/workers: %w", err)
	}
	return ws, nil
}

// Procs lists the stack's processes by kind: the components from their pid
// files, the workers (master, slaves) from the orchestrator and their
// plugins as the workers' children.
func (s *Stack) Procs(ctx context.Context) ([]Proc, error) {
	var out []Proc
	for _, c := range []struct{ file, kind string }{
		{"orchestrator", KindOrchestrator}, {"users", KindUsers}, {"rides", KindRides}, {"traefik", KindTraefik},
	} {
		pid, err := PIDFile(filepath.Join(s.opts.Dir, "pids", c.file+".pid"))
		if err != nil {
			return nil, fmt.Errorf("stack %s: %w", s.opts.Name, err)
		}
		out = append(out, Proc{pid, c.kind})
	}
	ws, err := s.Workers(ctx)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		kind := KindSlave
		if w.Role == "master" {
			kind = KindMaster
		}
		out = append(out, Proc{w.PID, kind})
		out = append(out, ChildProcs(w.PID, KindPlugin)...)
	}
	return out, nil
}

// WorkerPprof is the pprof address of the master and of one slave (the
// stack must have been started with Pprof).
func (s *Stack) WorkerPprof(ctx context.Context) (master, slave string, err error) {
	ws, err := s.Workers(ctx)
	if err != nil {
		return "", "", err
	}
	for _, w := range ws {
		addr, err := pprofAddr(ctx, w.PID)
		if err != nil {
			return "", "", fmt.Errorf("worker %s (pid %d): %w", w.ID, w.PID, err)
		}
		switch {
		case w.Role == "master":
			master = addr
		case w.Role == "slave" && slave == "":
			slave = addr
		}
	}
	if master == "" || slave == "" {
		return "", "", errors.New("no master or no slave to profile")
	}
	return master, slave, nil
}

// Batches is the master's group commits that ended in [from, to).
func (s *Stack) Batches(ctx context.Context, from, to time.Time) (BatchStats, error) {
	ws, err := s.Workers(ctx)
	if err != nil {
		return BatchStats{}, err
	}
	path, err := s.MasterLog(ws)
	if err != nil {
		return BatchStats{}, err
	}
	return ReadBatches(path, from, to)
}

// pprofAddr is the TCP listener of pid that serves /debug/pprof/ (a
// worker's --pprof; today its only TCP listener).
func pprofAddr(ctx context.Context, pid int) (string, error) {
	addrs, err := ListenAddrs(pid)
	if err != nil {
		return "", err
	}
	c := &http.Client{Timeout: 5 * time.Second}
	for _, a := range addrs {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a+"/debug/pprof/cmdline", nil)
		if err != nil {
			continue
		}
		if resp, err := c.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a, nil
			}
		}
	}
	return "", fmt.Errorf("no pprof server among its TCP listeners %v (was it started with --pprof?)", addrs)
}

// Stop stops the stack (SIGTERM to run.sh, whose trap stops every
// component in order) and waits for it; after a minute it kills the group.
func (s *Stack) Stop() {
	if s == nil || s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(time.Minute):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}
