package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

// CallError is a handler call that failed for a reason other than the
// operation's own answer (never a *pluginapi.Error): the plugin's process
// died, hung past the deadline, returned garbage, reported a failure, or
// could not be started. The worker answers it with a 502 naming the
// handler.
type CallError struct {
	Plugin string // manifest name (= handler name)
	Op     string
	PID    int    // the process that failed the call, 0 if none ran
	Reason string // what happened, in words
	Err    error
}

func (e *CallError) Error() string {
	pid := ""
	if e.PID != 0 {
		pid = fmt.Sprintf(" (pid %d)", e.PID)
	}
	return fmt.Sprintf("plugin %s%s: %s: %s: %v", e.Plugin, pid, e.Op, e.Reason, e.Err)
}

func (e *CallError) Unwrap() error { return e.Err }

// pluginHandle is one manifest entry of a loaded set, and the
// pluginapi.Handler the registry hands out for its operations. The process
// behind it may be replaced (after a crash or a hang) without the registry
// noticing.
type pluginHandle struct {
	h     *Host
	entry ManifestEntry
	info  pluginapi.Info
	kinds map[string]pluginapi.Kind
	// Metrics children of each operation, resolved at load.
	execM, planM map[string]*opMetrics

	mu       sync.Mutex
	inst     *instance // nil: start one on the next call
	unloaded bool      // replaced by a reload
	startErr error     // last failed start, and when
	startAt  time.Time
}

var _ pluginapi.Handler = (*pluginHandle)(nil)

func newHandle(h *Host, e ManifestEntry, info pluginapi.Info, inst *instance) *pluginHandle {
	p := &pluginHandle{h: h, entry: e, info: info, inst: inst, kinds: map[string]pluginapi.Kind{},
		execM: h.met.opMetricsFor(e.Name, info, methodExecute), planM: h.met.opMetricsFor(e.Name, info, methodPlan)}
	for _, op := range info.Ops {
		p.kinds[op.Name] = op.Kind
	}
	return p
}

// Info implements pluginapi.Handler: the info the plugin reported at start.
func (p *pluginHandle) Info(ctx context.Context) (pluginapi.Info, error) { return p.info, nil }

// Execute implements pluginapi.Handler. A *pluginapi.Error is the
// operation's answer and passes through; every other failure is a
// *CallError naming the plugin. A process that died is restarted on the
// next call; one that overran the deadline is replaced (killed once its
// other calls return), so a hung handler cannot pile up.
func (p *pluginHandle) Execute(ctx context.Context, op string, params json.RawMessage, db pluginapi.DB) (json.RawMessage, error) {
	start := time.Now()
	inst, fwd, err := p.acquire(ctx, op)
	if fwd != nil {
		return fwd.Execute(ctx, op, params, db) // counted by the handle serving it
	}
	if err != nil {
		observe(p.execM, op, start, callFailed)
		return nil, &CallError{Plugin: p.entry.Name, Op: op, Reason: "plugin not running", Err: err}
	}
	defer p.release(inst)
	res, err := inst.handler.Execute(ctx, op, params, db)
	if err == nil {
		observe(p.execM, op, start, callOK)
		return res, nil
	}
	if _, refused := pluginapi.AsError(err); refused {
		observe(p.execM, op, start, callRefused)
		return nil, err
	}
	ce, outcome := p.callFailure(ctx, inst, op, err, executeFailures)
	observe(p.execM, op, start, outcome)
	p.h.log.Warn("plugin call failed", "plugin", p.entry.Name, "op", op, "pid", inst.pid, "reason", ce.Reason, "err", err)
	return nil, ce
}

var _ pluginapi.Planner = (*pluginHandle)(nil)

// Plan implements pluginapi.Planner, with Execute's failure isolation: a
// refusal or ErrInteractive passes through; anything else is a *CallError
// naming the plugin. A plugin whose process cannot be asked makes every
// call interactive-then-failing the same way Execute would.
func (p *pluginHandle) Plan(ctx context.Context, calls []pluginapi.Call) []pluginapi.PlanResult {
	out := make([]pluginapi.PlanResult, len(calls))
	if len(calls) == 0 {
		return out
	}
	start := time.Now()
	inst, fwd, err := p.acquire(ctx, calls[0].Op)
	if fwd != nil {
		// A reload replaced this handle: let Execute forward each call.
		for i := range out {
			out[i].Err = pluginapi.ErrInteractive
		}
		return out
	}
	if err != nil {
		for i, c := range calls {
			out[i].Err = &CallError{Plugin: p.entry.Name, Op: c.Op, Reason: "plugin not running", Err: err}
			observe(p.planM, c.Op, start, callFailed)
		}
		return out
	}
	defer p.release(inst)
	res := inst.handler.Plan(ctx, calls)
	for i, r := range res {
		if outcome := callOutcome(r.Err); outcome != callFailed && outcome != callTimeout {
			observe(p.planM, calls[i].Op, start, outcome)
			continue
		}
		ce, outcome := p.callFailure(ctx, inst, calls[i].Op, r.Err, planFailures)
		observe(p.planM, calls[i].Op, start, outcome)
		res[i].Err = ce
	}
	return res
}

// failureWords are how Execute and Plan name their failures.
type failureWords struct {
	handler, garbage, overran string // CallError.Reason
	overranWhy, brokenWhy     string // why the process is retired
	waitExit                  bool   // tell a process that died from a broken connection
}

var (
	executeFailures = failureWords{handler: "handler failed", garbage: "garbage result",
		overran: "no answer within the deadline; process replaced", overranWhy: "overran a call's deadline",
		brokenWhy: "failed a call: ", waitExit: true}
	// A plan request serves a batch: its calls fail together, and waiting
	// for the process's exit once per call would hold the batch.
	planFailures = failureWords{handler: "handler failed to plan", garbage: "garbage plan",
		overran: "no plan within the deadline; process replaced", overranWhy: "overran a plan's deadline",
		brokenWhy: "failed a plan call: "}
)

// callFailure names how a call to inst failed (err is neither nil nor a
// refusal) and retires the process when it is not to be trusted with
// another call; it returns the error to answer and the outcome to count.
func (p *pluginHandle) callFailure(ctx context.Context, inst *instance, op string, err error, w failureWords) (*CallError, int) {
	outcome := callFailed
	ce := &CallError{Plugin: p.entry.Name, Op: op, PID: inst.pid, Err: err}
	var remote *pluginapi.RemoteError
	switch {
	case errors.As(err, &remote):
		ce.Reason = w.handler
	case errors.Is(err, pluginapi.ErrInvalidResult):
		ce.Reason = w.garbage
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || pastDeadline(ctx):
		// (gRPC's own timer can fire a moment before ctx's: ask the clock.)
		ce.Reason = w.overran
		outcome = callTimeout
		p.retire(inst, "overran", w.overranWhy)
	case errors.Is(ctx.Err(), context.Canceled):
		ce.Reason = "call cancelled"
	default:
		// A transport failure: the process died (a panic, a kill) or broke
		// the protocol. Either way it is not trusted with another call.
		reason := "broken"
		ce.Reason = "plugin connection failed; process replaced"
		if w.waitExit && waitExited(inst, 500*time.Millisecond) {
			ce.Reason = "plugin process died during the call; restarting it on the next call"
			reason = "died"
		}
		p.retire(inst, reason, w.brokenWhy+err.Error())
	}
	return ce, outcome
}

// pastDeadline reports whether ctx has a deadline that has passed (or is
// within the few milliseconds by which gRPC's rounded timeout can run
// ahead of it).
func pastDeadline(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d.Add(-20*time.Millisecond))
}

// acquire returns the running instance (starting one if needed) with a
// reference held, or, for a handle unloaded by a reload between Lookup and
// this call, the handler now serving op.
func (p *pluginHandle) acquire(ctx context.Context, op string) (*instance, pluginapi.Handler, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h.isClosed() {
		return nil, nil, ErrClosed
	}
	if p.unloaded {
		cur, ok := p.h.Lookup(op)
		if !ok || cur.Handler == pluginapi.Handler(p) || cur.Kind != p.kinds[op] {
			return nil, nil, fmt.Errorf("unloaded by a plugin reload, and no loaded plugin serves %s as a %s operation", op, p.kinds[op])
		}
		return nil, cur.Handler, nil
	}
	if p.inst != nil && p.inst.client.Exited() {
		p.retireLocked(p.inst, "exited", "process exited")
	}
	if p.inst == nil {
		if p.startErr != nil && time.Since(p.startAt) < p.h.restartBackoff {
			return nil, nil, p.startErr
		}
		inst, info, err := p.h.launch(ctx, p.entry)
		p.startAt, p.startErr = time.Now(), err
		if err != nil {
			p.h.met.restarts.WithLabelValues(p.entry.Name, "failed").Inc()
			return nil, nil, err
		}
		if !sameHandler(info, p.info) {
			p.h.met.restarts.WithLabelValues(p.entry.Name, "failed").Inc()
			p.h.killNow(inst)
			p.startErr = fmt.Errorf("restarted plugin reports %s@%s with other operations than %s@%s", info.Name, info.Version, p.info.Name, p.info.Version)
			return nil, nil, p.startErr
		}
		p.inst = inst
		p.h.met.restarts.WithLabelValues(p.entry.Name, "ok").Inc()
		p.h.log.Warn("plugin restarted", "plugin", p.entry.Name, "pid", inst.pid)
	}
	p.inst.refs++
	return p.inst, nil, nil
}

func sameHandler(a, b pluginapi.Info) bool {
	return a.Name == b.Name && reflect.DeepEqual(a.Ops, b.Ops) && reflect.DeepEqual(a.Migrations, b.Migrations)
}

func (p *pluginHandle) release(inst *instance) {
	p.mu.Lock()
	inst.refs--
	kill := inst.retired && inst.refs == 0 && !inst.killed
	if kill {
		inst.killed = true
	}
	p.mu.Unlock()
	if kill {
		p.h.killLater(inst, "retired; its last call returned")
	}
}

// retire takes inst out of service: no new calls; killed when its calls
// in flight have returned. failure is the reason counted in
// plugin_failures_total ("" for a retirement that is no failure).
func (p *pluginHandle) retire(inst *instance, failure, why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.retireLocked(inst, failure, why)
}

func (p *pluginHandle) retireLocked(inst *instance, failure, why string) {
	if p.inst == inst {
		p.inst = nil
	}
	if inst.retired {
		return
	}
	inst.retired = true
	if failure != "" {
		p.h.met.retired.WithLabelValues(p.entry.Name, failure).Inc()
	}
	if inst.refs == 0 && !inst.killed {
		inst.killed = true
		p.h.killLater(inst, why)
	}
}

// unload retires the handle for good (a reload replaced or dropped it).
func (p *pluginHandle) unload() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unloaded = true
	if p.inst != nil {
		p.retireLocked(p.inst, "", "unloaded by a reload")
	}
}

// waitExited reports whether inst's process exits within d (a crash is
// seen by the call a little before go-plugin reaps the process).
func waitExited(inst *instance, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !inst.client.Exited() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}
