package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RqliteOptions describe the one rqlite node of the bench.
type RqliteOptions struct {
	Binary   string // bin/rqlited (scripts/rqlite.sh builds it)
	Dir      string // data and log; emptied first
	HTTPPort int    // its HTTP API on 127.0.0.1; the Raft port is HTTPPort+1
}

// RqliteNode is a running rqlited.
type RqliteNode struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	URL  string
}

// PID is the node's process id.
func (n *RqliteNode) PID() int { return n.cmd.Process.Pid }

// StartRqlite starts one rqlite node on loopback with its default
// durability (see docs/benchmarks.md: the Raft log in BoltDB, fsynced on
// every append; SQLite in WAL mode with synchronous=OFF) and waits until
// /readyz answers 200.
// A port in use (see StartStack) makes it try again, 3 times in all.
func StartRqlite(ctx context.Context, opts RqliteOptions) (*RqliteNode, error) {
	var err error
	for try := 1; ; try++ {
		var n *RqliteNode
		if n, err = startRqlite(ctx, opts); err == nil || try == 3 || !portClash(filepath.Join(opts.Dir, "rqlited.log")) {
			return n, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(3 * time.Second):
		}
	}
}

func startRqlite(ctx context.Context, opts RqliteOptions) (*RqliteNode, error) {
	pidFile := filepath.Join(opts.Dir, "rqlited.pid")
	reapRqlite(pidFile, opts.Binary)
	if err := os.RemoveAll(opts.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(opts.Dir, "rqlited.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(opts.Binary,
		"-node-id", "bench",
		"-http-addr", "127.0.0.1:"+strconv.Itoa(opts.HTTPPort),
		"-raft-addr", "127.0.0.1:"+strconv.Itoa(opts.HTTPPort+1),
		filepath.Join(opts.Dir, "data"))
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the bench dies without stopping it, the kernel sends SIGTERM.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("rqlited: %w", err)
	}
	_ = os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	n := &RqliteNode{cmd: cmd, done: make(chan struct{}), URL: fmt.Sprintf("http://127.0.0.1:%d", opts.HTTPPort)}
	go func() {
		n.err = cmd.Wait()
		logf.Close()
		close(n.done)
	}()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c := &http.Client{Timeout: 5 * time.Second}
	for {
		select {
		case <-n.done:
			return nil, fmt.Errorf("rqlited exited while starting: %v (log: %s)", n.err, logf.Name())
		case <-ctx.Done():
			n.Stop()
			return nil, fmt.Errorf("rqlited not ready: %w (log: %s)", ctx.Err(), logf.Name())
		case <-time.After(200 * time.Millisecond):
		}
		if Listening(strings.TrimPrefix(n.URL, "http://")) && status(c, n.URL+"/readyz") == http.StatusOK {
			return n, nil
		}
	}
}

// reapRqlite kills the rqlited an earlier run left (killed too hard to
// stop it), when the pid file still names a live rqlited of this binary.
func reapRqlite(pidFile, binary string) {
	pid, err := PIDFile(pidFile)
	if err != nil || pid <= 0 {
		return
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || filepath.Base(exe) != filepath.Base(binary) || !strings.Contains(cmdline(pid), filepath.Dir(pidFile)) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for range 50 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the node (SIGTERM, SIGKILL after 30 s) and waits for it.
func (n *RqliteNode) Stop() {
	if n == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}
