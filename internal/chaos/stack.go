package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-zookeeper/zk"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rideshare-dbaas/rideshare/internal/cmdutil"
	"github.com/rideshare-dbaas/rideshare/internal/mq"
)

// stack is the DBaaS under test: an orchestrator process this run started
// (cmd set) or one it attached to.
type stack struct {
	url     string
	dataDir string // the process runtime's data dir ("" when unknown)
	zkRoot  string // "" when unknown
	prefix  string
	zk      *zk.Conn // nil when zkRoot is unknown
	own     bool
	tmpDir  bool // dataDir was made by this run
	logPath string
	cmdLine []string
	opts    Options

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	mu      sync.Mutex
}

// StackInfo describes the stack in the report.
type StackInfo struct {
	URL          string `json:"url"`
	Own          bool   `json:"own"`
	Command      string `json:"command,omitempty"`
	DataDir      string `json:"data_dir,omitempty"`
	ZKRoot       string `json:"zk_root,omitempty"`
	QueuePrefix  string `json:"queue_prefix,omitempty"`
	Orchestrator string `json:"orchestrator_log,omitempty"`
}

func (s *stack) describe() StackInfo {
	return StackInfo{URL: s.url, Own: s.own, Command: joinArgs(s.cmdLine), DataDir: s.dataDir, ZKRoot: s.zkRoot,
		QueuePrefix: s.prefix, Orchestrator: s.logPath}
}

func (c *Chaos) openStack(ctx context.Context) (*stack, error) {
	o := c.opts
	s := &stack{url: strings.TrimRight(o.URL, "/"), dataDir: o.DataDir, zkRoot: o.ZKRoot, prefix: o.QueuePrefix, opts: o, done: make(chan struct{})}
	if o.URL == "" {
		if err := c.startOrchestrator(s); err != nil {
			return nil, err
		}
	}
	if s.zkRoot != "" {
		conn, _, err := zk.Connect(o.ZKServers, 4*time.Second, zk.WithLogInfo(false), zk.WithLogger(quietZK{}))
		if err != nil {
			_ = s.close(true)
			return nil, fmt.Errorf("zookeeper: %w", err)
		}
		s.zk = conn
	}
	return s, nil
}

// startOrchestrator runs the orchestrator binary on a free loopback port
// under names of this run.
func (c *Chaos) startOrchestrator(s *stack) error {
	o := c.opts
	s.own = true
	if s.dataDir == "" {
		dir, err := tempDataDir(c.runID)
		if err != nil {
			return err
		}
		s.dataDir, s.tmpDir = dir, true
	}
	if s.zkRoot == "" {
		s.zkRoot = "/chaos-" + c.runID
	}
	if s.prefix == "" {
		s.prefix = "chaos-" + c.runID + "."
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	workers := filepath.Join(s.dataDir, "workers")
	s.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	args := []string{
		"--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--dev", // the chaos run crashes workers through the admin endpoints
		"--zk-servers", strings.Join(o.ZKServers, ","),
		"--zk-root", s.zkRoot,
		"--zk-timeout", o.ZKTimeout.String(),
		"--queue-prefix", s.prefix,
		"--runtime", o.Runtime,
		"--worker-binary", o.WorkerBin,
		"--data-dir", workers,
		"--scale-window", o.ScaleWindow.String(),
		"--min-slaves", fmt.Sprint(o.MinSlaves),
		"--max-slaves", fmt.Sprint(o.MaxSlaves),
		// The chain of Pdeathsig: this run → its orchestrator → the
		// workers → their plugins. Nothing outlives a run, however it dies.
		"--workers-die-with-orchestrator",
	}
	if o.Runtime == "docker" {
		// Its containers carry the run's name (rideshare.stack label).
		args = append(args, "--worker-image", o.WorkerImage, "--stack", "chaos-"+c.runID)
	}
	args = append(args, o.OrchestratorArgs...)
	s.logPath = filepath.Join(s.dataDir, "orchestrator.log")
	logf, err := os.Create(s.logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(o.OrchestratorBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The broker URL holds a password: environment, not command line.
	cmd.Env = append(os.Environ(), cmdutil.EnvAMQPURL+"="+o.AMQPURL, cmdutil.EnvAMQPURLFile+"=")
	// Pdeathsig: the orchestrator (and, through the Pdeathsig it sets on
	// them, its workers) dies with this run even if the run is SIGKILLed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start orchestrator: %w", err)
	}
	s.cmd = cmd
	s.cmdLine = append([]string{o.OrchestratorBin}, args...)
	c.log.Info("orchestrator started", "pid", cmd.Process.Pid, "url", s.url, "data", s.dataDir, "log", s.logPath)
	go func() {
		err := cmd.Wait()
		logf.Close()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(s.done)
	}()
	return nil
}

// exited is closed when an own orchestrator exits (never when attached).
func (s *stack) exited() <-chan struct{} {
	if s.cmd == nil {
		return nil
	}
	return s.done
}

func (s *stack) exitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waitErr
}

// workerDB is where the process runtime keeps worker id's database.
func (s *stack) workerDB(id string) string {
	if s.dataDir == "" {
		return ""
	}
	if s.own {
		return filepath.Join(s.dataDir, "workers", id, "db.sqlite")
	}
	return filepath.Join(s.dataDir, id, "db.sqlite")
}

// close stops an own orchestrator (SIGTERM: it stops its workers), removes
// its queues and ZooKeeper root, and its data unless keep.
func (s *stack) close(keep bool) error {
	var errs []error
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
			errs = append(errs, errors.New("orchestrator did not stop within 30 s; killed"))
		}
	}
	if s.own {
		if err := deleteQueues(s.opts.AMQPURL, s.prefix); err != nil {
			errs = append(errs, err)
		}
		if s.zk != nil {
			deleteTree(s.zk, s.zkRoot)
		}
		if s.tmpDir && !keep {
			if err := os.RemoveAll(s.dataDir); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if s.zk != nil {
		s.zk.Close()
	}
	return errors.Join(errs...)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func deleteQueues(url, prefix string) error {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	n := mq.NewNames(prefix)
	for _, q := range []string{n.WriteQ, n.DeadQ, n.ReadQ, n.RepairQ} {
		_, _ = ch.QueueDelete(q, false, false, false)
	}
	_ = ch.ExchangeDelete(n.SyncX, false, false)
	return nil
}

func deleteTree(conn *zk.Conn, p string) {
	kids, _, _ := conn.Children(p)
	for _, k := range kids {
		deleteTree(conn, path.Join(p, k))
	}
	_ = conn.Delete(p, -1)
}

type quietZK struct{}

func (quietZK) Printf(string, ...any) {}

// exitStatus is how worker id ended, as an own orchestrator logged it
// ("signal: killed", "exit status 3" for a fenced worker), or "".
func (s *stack) exitStatus(id string) string {
	if s.logPath == "" {
		return ""
	}
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return ""
	}
	status := ""
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, `"msg":"worker exited"`) || !strings.Contains(line, `"id":"`+id+`"`) {
			continue
		}
		var rec struct {
			Status string `json:"status"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil {
			status = rec.Status
		}
	}
	return status
}

// lastWorkerLog is the tail of the most recently written worker log of an
// own stack (why workers do not come up).
func (s *stack) lastWorkerLog(n int) string {
	if !s.own {
		return ""
	}
	files, _ := filepath.Glob(filepath.Join(s.dataDir, "workers", "*.log"))
	var newest string
	var at time.Time
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.ModTime().After(at) {
			newest, at = f, fi.ModTime()
		}
	}
	if newest == "" {
		return ""
	}
	return filepath.Base(newest) + ":\n" + tail(newest, n)
}

// tail returns the last n lines of a file (for failure reports).
func tail(file string, n int) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
