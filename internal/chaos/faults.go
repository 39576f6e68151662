package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/wire"
)

// Fault kinds.
const (
	FaultMasterKill      = "master-kill"
	FaultSlaveKill       = "slave-kill"
	FaultRabbitRestart   = "rabbit-restart"
	FaultZKExpirySlave   = "zk-expiry-slave"
	FaultZKExpiryMaster  = "zk-expiry-master"
	pollEvery            = 20 * time.Millisecond
	minGapBetweenFaults  = 300 * time.Millisecond
	rabbitCommandTimeout = 2 * time.Minute
)

// Event is one injected fault and what followed.
type Event struct {
	Kind   string    `json:"kind"`
	At     time.Time `json:"at"`
	Offset float64   `json:"offset_s"` // seconds since the load started
	PID    int       `json:"pid,omitempty"`
	ID     string    `json:"id,omitempty"`
	// Injected: the fault really happened (the kill, SIGSTOP or stop ran).
	Injected bool `json:"injected"`
	// Recovered: the measured recovery happened before EventTimeout.
	Recovered bool `json:"recovered"`
	// Seconds is the unavailability measured: master kill (and master ZK
	// expiry, RabbitMQ restart) to the next successful write; slave kill to
	// a new slave registered ready (serving reads); slave ZK expiry to the
	// slave registered ready again.
	Seconds float64 `json:"seconds"`
	Note    string  `json:"note,omitempty"`
}

type injector struct {
	c    *Chaos
	api  *api
	view *watcher
	rec  *recorder
	st   *stack

	events  []Event
	planned []string
	skipped []string
}

func newInjector(c *Chaos, a *api, v *watcher, rec *recorder, st *stack) *injector {
	return &injector{c: c, api: a, view: v, rec: rec, st: st}
}

// plan lists the faults in a random order.
func (in *injector) plan() []string {
	o := in.c.opts
	var p []string
	for range o.MasterKills {
		p = append(p, FaultMasterKill)
	}
	for range o.SlaveKills {
		p = append(p, FaultSlaveKill)
	}
	if o.RabbitRestart != RabbitNone {
		p = append(p, FaultRabbitRestart)
	}
	if o.ZKExpiry == ExpireSlave || o.ZKExpiry == ExpireBoth {
		p = append(p, FaultZKExpirySlave)
	}
	if o.ZKExpiry == ExpireMaster || o.ZKExpiry == ExpireBoth {
		p = append(p, FaultZKExpiryMaster)
	}
	in.c.rng.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
	// The broker restart takes the longest to recover from (a node restart
	// is 10–20 s): put it in the middle third, so it is over well before
	// the load stops.
	for i, k := range p {
		if k == FaultRabbitRestart && len(p) > 2 {
			j := len(p)/3 + in.c.rng.IntN(len(p)/3+1)
			p[i], p[j] = p[j], p[i]
			break
		}
	}
	return p
}

// window is when faults may start: after a warm-up, and early enough
// that the last one can be recovered from and measured before the load
// stops.
func (in *injector) window(start time.Time) (from, until time.Time) {
	d := in.c.opts.Duration
	warm := min(5*time.Second, d/10)
	tail := min(10*time.Second, d/5)
	return start.Add(warm), start.Add(d - tail)
}

// run injects the planned faults at random intervals, one at a time: each
// waits for a healthy cluster (a ready master and ready slaves) and for
// the previous fault's recovery to be measured, so one measurement is one
// fault's.
func (in *injector) run(ctx context.Context, start time.Time) {
	in.planned = in.plan()
	from, until := in.window(start)
	loadEnd := start.Add(in.c.opts.loadLimit())
	if !sleepUntil(ctx, from) {
		in.skipped = in.planned
		return
	}
	for i, kind := range in.planned {
		// What is left of the window, less what the remaining faults take
		// themselves (kill, recovery, waiting for health), is spread over
		// them at random.
		left := len(in.planned) - i
		var busy time.Duration
		for _, k := range in.planned[i:] {
			busy += faultCost(k)
		}
		free := max(time.Until(until)-busy, 0)
		gap := time.Duration(float64(free) / float64(left) * (0.5 + in.c.rng.Float64()))
		if !sleepUntil(ctx, time.Now().Add(max(gap, minGapBetweenFaults))) {
			in.skipped = append(in.skipped, in.planned[i:]...)
			return
		}
		if _, err := waitHealth(ctx, in.view, in.c.opts.EventTimeout); err != nil {
			if ctx.Err() != nil {
				in.skipped = append(in.skipped, in.planned[i:]...)
				return
			}
			in.rec.violation("no-recovery", "before fault %d (%s): %v", i+1, kind, err)
		}
		if time.Until(loadEnd) < faultCost(kind)+2*time.Second {
			// Too late to measure a recovery before the load stops.
			in.skipped = append(in.skipped, in.planned[i:]...)
			return
		}
		ev := in.inject(ctx, kind)
		ev.Offset = ev.At.Sub(start).Seconds()
		in.events = append(in.events, ev)
		in.c.log.Info("fault", "n", i+1, "of", len(in.planned), "kind", ev.Kind, "pid", ev.PID, "recovered", ev.Recovered,
			"seconds", fmt.Sprintf("%.3f", ev.Seconds), "note", ev.Note)
		if !ev.Recovered && ctx.Err() == nil {
			in.rec.violation("no-recovery", "%s of pid %d at +%.1fs: %s", ev.Kind, ev.PID, ev.Offset, ev.Note)
		}
	}
}

// faultCost is about how long a fault and the recovery from it take on
// the machine of docs/reliability.md, waiting for health included.
func faultCost(kind string) time.Duration {
	switch kind {
	case FaultMasterKill:
		return time.Second
	case FaultSlaveKill:
		return 2500 * time.Millisecond
	case FaultRabbitRestart:
		return 30 * time.Second
	default: // ZooKeeper expiries: 2× the session timeout stopped, then recovery
		return 8 * time.Second
	}
}

func (in *injector) inject(ctx context.Context, kind string) Event {
	switch kind {
	case FaultMasterKill:
		return in.masterKill(ctx)
	case FaultSlaveKill:
		return in.slaveKill(ctx)
	case FaultRabbitRestart:
		return in.rabbitRestart(ctx)
	case FaultZKExpirySlave:
		return in.zkExpiry(ctx, wire.RoleSlave)
	default:
		return in.zkExpiry(ctx, wire.RoleMaster)
	}
}

// masterKill: POST crash/master; unavailability is from the moment the
// call returned (the master is SIGKILLed and reaped) to the first write
// acknowledged among those sent after that moment (which only a new master
// can have answered).
func (in *injector) masterKill(ctx context.Context) Event {
	ev := Event{Kind: FaultMasterKill, At: time.Now()}
	pid, rep := in.api.crash(ctx, "master")
	if pid == 0 {
		ev.Note = "crash/master failed: " + rep.String()
		return ev
	}
	killed := time.Now()
	ev.PID, ev.At, ev.Injected = pid, killed, true
	if alive(pid) {
		in.rec.violation("crash", "crash/master answered pid %d, which is still alive", pid)
	}
	wctx, cancel := context.WithTimeout(ctx, in.c.opts.EventTimeout)
	defer cancel()
	at, ok := in.rec.waitAckAfter(wctx, killed)
	if !ok {
		ev.Note = fmt.Sprintf("no write acknowledged within %s of the kill", in.c.opts.EventTimeout)
		return ev
	}
	ev.Recovered, ev.Seconds = true, at.Sub(killed).Seconds()
	return ev
}

// slaveKill: POST crash/slave; unavailability is from the moment the call
// returned to a worker not there before being registered as a ready
// slave (it then consumes readQ).
func (in *injector) slaveKill(ctx context.Context) Event {
	ev := Event{Kind: FaultSlaveKill, At: time.Now()}
	before, err := in.view.members(ctx)
	if err != nil {
		ev.Note = "reading the workers: " + err.Error()
		return ev
	}
	pid, rep := in.api.crash(ctx, "slave")
	if pid == 0 {
		ev.Note = "crash/slave failed: " + rep.String()
		return ev
	}
	killed := time.Now()
	ev.PID, ev.At, ev.Injected = pid, killed, true
	for id, m := range before {
		if m.PID == pid {
			ev.ID = id
		}
	}
	if alive(pid) {
		in.rec.violation("crash", "crash/slave answered pid %d, which is still alive", pid)
	}
	at, id, err := in.waitMember(ctx, func(id string, m workerView) bool {
		_, old := before[id]
		return !old && m.Role == wire.RoleSlave && m.State == wire.StateReady
	})
	if err != nil {
		ev.Note = "no replacement slave ready: " + err.Error()
		return ev
	}
	ev.Recovered, ev.Seconds = true, at.Sub(killed).Seconds()
	ev.Note = "replaced by " + id
	return ev
}

// waitMember polls the workers until one satisfies ok, for at most
// EventTimeout.
func (in *injector) waitMember(ctx context.Context, ok func(id string, m workerView) bool) (time.Time, string, error) {
	ctx, cancel := context.WithTimeout(ctx, in.c.opts.EventTimeout)
	defer cancel()
	var lastErr error
	for {
		ms, err := in.view.members(ctx)
		now := time.Now()
		if err == nil {
			for id, m := range ms {
				if ok(id, m) {
					return now, id, nil
				}
			}
		}
		lastErr = err
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return time.Time{}, "", lastErr
			}
			return time.Time{}, "", fmt.Errorf("not within %s", in.c.opts.EventTimeout)
		case <-time.After(pollEvery):
		}
	}
}

// zkExpiry stops a worker's process (SIGSTOP) for twice the ZooKeeper
// session timeout, so its session expires while its TCP connections stay
// open, then resumes it (SIGCONT).
//
// A slave must notice its new session and register again; it keeps its
// role and data. A master's znode vanishing while its process is alive is
// what the orchestrator must treat as a dead master: it kills it before
// electing another (and if it could not, the worker would fence itself
// at its next commit, because the master record no longer names it).
// Either way the old master never commits again, and writes resume under
// the new one.
func (in *injector) zkExpiry(ctx context.Context, role string) Event {
	kind := FaultZKExpirySlave
	if role == wire.RoleMaster {
		kind = FaultZKExpiryMaster
	}
	ev := Event{Kind: kind, At: time.Now()}
	h, err := waitHealth(ctx, in.view, in.c.opts.EventTimeout)
	if err != nil {
		ev.Note = err.Error()
		return ev
	}
	target := h.master
	if role == wire.RoleSlave {
		target = &h.slaves[in.c.rng.IntN(len(h.slaves))]
	}
	ev.PID, ev.ID = target.PID, target.ID
	hold := 2 * in.c.opts.ZKTimeout
	if err := syscall.Kill(target.PID, syscall.SIGSTOP); err != nil {
		ev.Note = "SIGSTOP: " + err.Error()
		return ev
	}
	stopped := time.Now()
	ev.At, ev.Injected = stopped, true
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(target.PID, syscall.SIGCONT)
		}
	}
	defer resume()
	// The znode must disappear while the process is stopped: that is the
	// session expiring.
	var expiredAfter time.Duration
	if in.view.zk != nil {
		for time.Since(stopped) < hold {
			ms, err := in.view.members(ctx)
			if err == nil {
				if _, ok := ms[target.ID]; !ok {
					expiredAfter = time.Since(stopped)
					break
				}
			}
			if !sleepUntil(ctx, time.Now().Add(pollEvery)) {
				return ev
			}
		}
	}
	if !sleepUntil(ctx, stopped.Add(hold)) {
		return ev
	}
	resume()
	resumedAt := time.Now()
	notes := []string{fmt.Sprintf("stopped %s", hold)}
	if in.view.zk != nil {
		if expiredAfter == 0 {
			notes = append(notes, "znode did NOT disappear while stopped (session not expired)")
		} else {
			notes = append(notes, fmt.Sprintf("znode gone after %.2fs", expiredAfter.Seconds()))
		}
	}
	if role == wire.RoleSlave {
		at, _, err := in.waitMember(ctx, func(id string, m workerView) bool {
			return id == target.ID && m.PID == target.PID && m.State == wire.StateReady && m.Role == wire.RoleSlave
		})
		if err != nil {
			if !alive(target.PID) {
				notes = append(notes, "the slave exited instead of registering again")
				_, herr := waitHealth(ctx, in.view, in.c.opts.EventTimeout)
				ev.Recovered = herr == nil
			} else {
				notes = append(notes, "not registered again: "+err.Error())
			}
			ev.Note = strings.Join(notes, "; ")
			return ev
		}
		ev.Recovered, ev.Seconds = true, at.Sub(stopped).Seconds()
		notes = append(notes, fmt.Sprintf("registered again as a ready slave %.2fs after SIGCONT", at.Sub(resumedAt).Seconds()))
		ev.Note = strings.Join(notes, "; ")
		return ev
	}
	// Master: writes must resume under another worker, and the old process
	// must be gone (killed by the orchestrator) or fence itself.
	wctx, cancel := context.WithTimeout(ctx, in.c.opts.EventTimeout)
	defer cancel()
	at, ok := in.rec.waitAckAfter(wctx, stopped)
	if ok {
		ev.Recovered, ev.Seconds = true, at.Sub(stopped).Seconds()
	} else {
		notes = append(notes, "no write acknowledged")
	}
	gone := waitGone(ctx, target.PID, 5*time.Second)
	switch {
	case gone && !alive(target.PID):
		how := "killed by the orchestrator or fenced"
		if st := in.st.exitStatus(target.ID); st != "" {
			how = "exit: " + st
		}
		notes = append(notes, "old master gone ("+how+")")
	default:
		h, _ := in.view.health(ctx)
		masters := 0
		for _, v := range h.view {
			if v.Role == wire.RoleMaster {
				masters++
			}
		}
		notes = append(notes, fmt.Sprintf("old master pid %d still alive 5 s after SIGCONT; %d workers registered as master", target.PID, masters))
		if masters > 1 {
			in.rec.violation("two-masters", "after the master's ZooKeeper session expired: %s", h)
		}
	}
	ev.Note = strings.Join(notes, "; ")
	return ev
}

// rabbitRestart restarts the broker: RabbitApp stops and starts the
// RabbitMQ application inside its Erlang VM (every connection closes,
// non-durable queues go, durable ones are recovered from disk); RabbitNode
// stops the whole node (the VM exits) and starts it again with
// scripts/servers.sh up. Unavailability is from the moment the broker was
// surely down (stop_app returned; the node's VM exited) to the first write
// acknowledged among those sent after that moment.
func (in *injector) rabbitRestart(ctx context.Context) Event {
	o := in.c.opts
	ev := Event{Kind: FaultRabbitRestart, At: time.Now()}
	stop := time.Now()
	var down time.Time // when the broker was surely down
	var notes []string
	// The broker is shared: once stopped, it is started again even if the
	// run is interrupted meanwhile.
	bg := context.WithoutCancel(ctx)
	switch o.RabbitRestart {
	case RabbitApp:
		if out, err := run(ctx, "rabbitmqctl", "-n", o.RabbitNode, "stop_app"); err != nil {
			ev.Note = fmt.Sprintf("stop_app: %v: %s", err, out)
			return ev
		}
		ev.Injected = true
		down = time.Now()
		notes = append(notes, fmt.Sprintf("stop_app took %.1fs", down.Sub(stop).Seconds()))
		if err := startBroker(bg, o, func() (string, error) {
			return run(bg, "rabbitmqctl", "-n", o.RabbitNode, "start_app")
		}); err != nil {
			ev.Note = strings.Join(append(notes, err.Error()), "; ")
			return ev
		}
	case RabbitNode:
		pid := brokerPID(ctx, o.RabbitNode)
		ev.PID = pid
		if out, err := run(ctx, "rabbitmqctl", "-n", o.RabbitNode, "stop"); err != nil {
			ev.Note = fmt.Sprintf("rabbitmqctl stop: %v: %s", err, out)
			return ev
		}
		ev.Injected = true
		if pid > 0 && !waitGone(bg, pid, 60*time.Second) {
			notes = append(notes, fmt.Sprintf("the RabbitMQ VM (pid %d) did not exit within 60 s", pid))
		}
		down = time.Now()
		notes = append(notes, fmt.Sprintf("node stopped (VM pid %d exited) %.1fs after rabbitmqctl stop", pid, down.Sub(stop).Seconds()))
		if err := startBroker(bg, o, func() (string, error) {
			return run(bg, "bash", o.ServersScript, "up")
		}); err != nil {
			ev.Note = strings.Join(append(notes, err.Error()), "; ")
			return ev
		}
	}
	up := time.Now()
	ev.At = down
	notes = append(notes, fmt.Sprintf("down for %.1fs, then started again", up.Sub(down).Seconds()))
	if !portOpen(amqpHostPort(o.AMQPURL)) {
		notes = append(notes, "but its port does not answer")
	}
	wctx, cancel := context.WithTimeout(ctx, o.EventTimeout)
	defer cancel()
	at, ok := in.rec.waitAckAfter(wctx, down)
	if !ok {
		notes = append(notes, fmt.Sprintf("no write acknowledged within %s of the broker's return", o.EventTimeout))
		ev.Note = strings.Join(notes, "; ")
		return ev
	}
	ev.Recovered, ev.Seconds = true, at.Sub(down).Seconds()
	notes = append(notes, fmt.Sprintf("first write %.2fs after the broker was back", at.Sub(up).Seconds()))
	ev.Note = strings.Join(notes, "; ")
	return ev
}

// startBroker runs start until the broker's port answers, for at most
// three minutes: another party (a `scripts/servers.sh up` of some other
// test on this machine) may be starting the node at the same moment.
func startBroker(ctx context.Context, o Options, start func() (string, error)) error {
	deadline := time.Now().Add(3 * time.Minute)
	addr := amqpHostPort(o.AMQPURL)
	var last string
	for attempt := 1; ; attempt++ {
		out, err := start()
		if portOpen(addr) {
			return nil
		}
		last = fmt.Sprintf("start attempt %d: %v: %s", attempt, err, strings.TrimSpace(out))
		o.Logger.Warn("RabbitMQ not back yet; trying again", "attempt", attempt, "err", err, "out", strings.TrimSpace(out))
		if time.Now().After(deadline) || !sleepUntil(ctx, time.Now().Add(2*time.Second)) {
			return fmt.Errorf("RabbitMQ did not come back within 3 minutes (%s)", last)
		}
		if portOpen(addr) {
			return nil
		}
	}
}

// brokerPID is the OS pid of the node's Erlang VM, from rabbitmqctl status.
func brokerPID(ctx context.Context, node string) int {
	out, err := run(ctx, "rabbitmqctl", "-n", node, "status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "OS PID:"); ok {
			pid, _ := strconv.Atoi(strings.TrimSpace(v))
			return pid
		}
	}
	return 0
}

func run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, rabbitCommandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// alive reports whether pid exists (a zombie counts as gone: the
// orchestrator reaps its workers at once).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return !errors.Is(err, syscall.ESRCH)
	}
	return true
}

func waitGone(ctx context.Context, pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for alive(pid) {
		if time.Now().After(deadline) || !sleepUntil(ctx, time.Now().Add(pollEvery)) {
			return !alive(pid)
		}
	}
	return true
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

func amqpHostPort(url string) string {
	h := strings.TrimPrefix(strings.TrimPrefix(url, "amqp://"), "amqps://")
	if i := strings.LastIndex(h, "@"); i >= 0 {
		h = h[i+1:]
	}
	if i := strings.Index(h, "/"); i >= 0 {
		h = h[:i]
	}
	if !strings.Contains(h, ":") {
		h += ":5672"
	}
	return h
}

func portOpen(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
