// Package nomadfake is an HTTP double of the part of Nomad's HTTP API that
// RideShare uses: the orchestrator's nomad runtime (job scale and scale
// status, job allocations, allocation info, signal and stop, status) and
// Traefik's Nomad provider (service list and service registrations). No
// Nomad agent may be installed by the project, so tests run against this.
//
// It is a fake scheduler over real processes, not a mock: a job with one
// task group whose count it keeps, placing an allocation by starting the
// task's command as a real child process with the Nomad environment
// (NOMAD_ALLOC_ID, NOMAD_SHORT_ALLOC_ID, NOMAD_ALLOC_DIR, …, also
// interpolated into the arguments as Nomad does), restarting a task that
// dies in place (same allocation, same allocation directory) under a
// restart policy, rescheduling a failed allocation as a new one, stopping
// the allocations with the highest name index on scale-in, and refusing a
// scale request while the deployment of the previous one is active.
// Responses have Nomad's shapes (the api package's types), headers
// (X-Nomad-Index, …) and error texts; blocking queries (?index=&wait=)
// return on change or after the wait. Faults (an error status, a delay)
// can be injected per endpoint.
package nomadfake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	nomad "github.com/hashicorp/nomad/api"
)

// Options describe the job the double runs.
type Options struct {
	Job, Group, Task string // default rideshare-worker, worker, worker
	Count            int    // initial count (default 2)
	Min, Max         int    // the group's scaling block (default 1, 10)

	// Command and Args are the task's (raw_exec-like). ${NOMAD_*} in Args
	// is interpolated from the allocation's environment.
	Command string
	Args    []string
	Env     []string // extra environment, KEY=VALUE
	// Dir holds one directory per allocation (Dir/<alloc id>/alloc, which
	// is NOMAD_ALLOC_DIR) and the task's log (Dir/<alloc id>.log).
	Dir string

	KillTimeout     time.Duration // stop: SIGTERM, then SIGKILL after this (default 5 s)
	RestartDelay    time.Duration // before a dead task runs again in place (default 1 s)
	RestartAttempts int           // restarts allowed per RestartInterval (default 3)
	RestartInterval time.Duration // default 5 min
	RescheduleDelay time.Duration // before a failed allocation is replaced (default 1 s)
	// MinHealthyTime: a placed allocation is healthy once its task has run
	// this long; until every allocation a scale-out placed is healthy, its
	// deployment is active and further scale requests are refused
	// (default 1 s).
	MinHealthyTime time.Duration
	// MaxWait caps a blocking query's wait (default 10 s; Nomad's is 10 min).
	MaxWait time.Duration
	Logger  *slog.Logger
}

func (o *Options) defaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.Job, "rideshare-worker")
	def(&o.Group, "worker")
	def(&o.Task, "worker")
	if o.Count == 0 {
		o.Count = 2
	}
	if o.Min == 0 {
		o.Min = 1
	}
	if o.Max == 0 {
		o.Max = 10
	}
	durs := []struct {
		d *time.Duration
		v time.Duration
	}{
		{&o.KillTimeout, 5 * time.Second}, {&o.RestartDelay, time.Second}, {&o.RestartInterval, 5 * time.Minute},
		{&o.RescheduleDelay, time.Second}, {&o.MinHealthyTime, time.Second}, {&o.MaxWait, 10 * time.Second},
	}
	for _, x := range durs {
		if *x.d == 0 {
			*x.d = x.v
		}
	}
	if o.RestartAttempts == 0 {
		o.RestartAttempts = 3
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Fault makes matching requests fail or stall. Times 0 means every
// matching request until cleared.
type Fault struct {
	Method string        // "" = any
	Path   string        // regular expression on the URL path
	Status int           // answer this status with Body (0: no error)
	Body   string        // the error text, as Nomad writes it (text/plain)
	Delay  time.Duration // stall this long (or until the client gives up) first
	Times  int
}

// Service is a Nomad-native service registration the double serves to
// Traefik's Nomad provider.
type Service struct {
	Name    string
	Address string
	Port    int
	Tags    []string
}

// Server is the running double.
type Server struct {
	opts Options
	log  *slog.Logger
	lis  net.Listener
	srv  *http.Server
	wg   sync.WaitGroup

	spawn chan func() // the spawner thread: tasks die with this process

	mu        sync.Mutex
	index     uint64
	changed   chan struct{} // closed and replaced on every index bump
	closed    bool
	job       job
	allocs    []*alloc // every allocation ever placed, oldest first
	faults    []*Fault
	services  map[string][]*nomad.ServiceRegistration
	scaleReqs []nomad.ScalingRequest
	signals   []string // "alloc task signal", for tests
}

type job struct {
	version, createIndex, modifyIndex, jobModifyIndex uint64
	count                                             int
	events                                            []nomad.ScalingEvent
	deploying                                         []*alloc // placed by the last scale-out, not all healthy yet
}

type alloc struct {
	id, name     string
	nameIndex    int
	version      uint64
	desired      string // run, stop
	client       string // pending, running, complete, failed
	desiredDesc  string
	task         nomad.TaskState
	healthy      bool
	createIndex  uint64
	modifyIndex  uint64
	createTime   int64
	restartTimes []time.Time
	cmd          *exec.Cmd
	done         chan struct{} // closed when the current process ended
	stopping     bool          // a stop (SIGTERM) is under way
	replaced     bool          // a replacement was placed for it
}

// Start places Count allocations and serves the API on 127.0.0.1:0.
func Start(opts Options) (*Server, error) {
	opts.defaults()
	if opts.Command == "" || opts.Dir == "" {
		return nil, errors.New("nomadfake: Command and Dir are required")
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("nomadfake: %w", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("nomadfake: %w", err)
	}
	s := &Server{opts: opts, log: opts.Logger, lis: lis, changed: make(chan struct{}),
		services: map[string][]*nomad.ServiceRegistration{}, spawn: make(chan func())}
	go s.spawner()
	s.mu.Lock()
	s.index = 10
	s.job = job{version: 0, createIndex: 10, modifyIndex: 10, jobModifyIndex: 10, count: opts.Count}
	for i := range opts.Count {
		s.placeLocked(i)
	}
	s.mu.Unlock()
	s.srv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); _ = s.srv.Serve(lis) }()
	return s, nil
}

// spawner starts every task from one goroutine locked to its OS thread
// for the process's lifetime (as orchestrator.Process does with
// DieWithParent): Pdeathsig fires when the forking thread ends, and the Go
// runtime may retire an idle thread.
func (s *Server) spawner() {
	runtime.LockOSThread() // never unlocked
	for f := range s.spawn {
		f()
	}
}

// URL is the address to give the Nomad client (NOMAD_ADDR).
func (s *Server) URL() string { return "http://" + s.lis.Addr().String() }

// Close stops serving and kills every task process (SIGKILL) and waits
// for them.
func (s *Server) Close() {
	_ = s.srv.Close() // blocking queries end with their connections
	s.mu.Lock()
	s.closed = true
	var dones []chan struct{}
	for _, a := range s.allocs {
		if a.cmd != nil && a.done != nil {
			_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
			dones = append(dones, a.done)
		}
	}
	s.bumpLocked()
	s.mu.Unlock()
	for _, d := range dones {
		select {
		case <-d:
		case <-time.After(10 * time.Second):
		}
	}
	s.wg.Wait()
}

// Inject adds a fault; Clear removes them all.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// Clear removes every fault.
func (s *Server) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// RegisterService adds a service instance (for Traefik's Nomad provider).
func (s *Server) RegisterService(svc Service) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	id := newID()
	s.services[svc.Name] = append(s.services[svc.Name], &nomad.ServiceRegistration{
		ID:          "_nomad-task-" + id + "-" + svc.Name,
		ServiceName: svc.Name, Namespace: "default", NodeID: "node-fake", Datacenter: "dc1",
		JobID: svc.Name, AllocID: id, Tags: slices.Clone(svc.Tags), Address: svc.Address, Port: svc.Port,
		CreateIndex: s.index, ModifyIndex: s.index,
	})
	s.bumpLocked()
}

// DeregisterServices removes every instance of a service.
func (s *Server) DeregisterServices(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.services, name)
	s.index++
	s.bumpLocked()
}

// Count is the group's count.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.job.count
}

// ScaleRequests returns the scale requests Nomad accepted or refused, in order.
func (s *Server) ScaleRequests() []nomad.ScalingRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.scaleReqs)
}

// Signals returns the signals delivered, as "alloc-id task SIGNAL".
func (s *Server) Signals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.signals)
}

// Running returns the ids of the allocations whose task runs, with the
// pid of its process.
func (s *Server) Running() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, a := range s.allocs {
		if a.client == nomad.AllocClientStatusRunning && a.task.State == "running" && a.cmd != nil {
			out[a.id] = a.cmd.Process.Pid
		}
	}
	return out
}

// JobModifyIndex is the job's current modify index (moves on every scale).
func (s *Server) JobModifyIndex() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.job.jobModifyIndex
}

// BumpJob changes the job as a concurrent `nomad job run` would (its
// modify index moves), so a scale request carrying the old index loses
// its compare-and-set.
func (s *Server) BumpJob() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	s.job.version++
	s.job.modifyIndex, s.job.jobModifyIndex = s.index, s.index
	s.bumpLocked()
}

// Register re-registers the job as `nomad job run` without
// -preserve-counts does: the group's count becomes the jobspec's.
func (s *Server) Register(count int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	s.job.version++
	s.job.count = count
	s.job.modifyIndex, s.job.jobModifyIndex = s.index, s.index
	s.applyCountLocked()
	s.bumpLocked()
}

func (s *Server) bumpLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// touchLocked records a change of a's state at a new index.
func (s *Server) touchLocked(a *alloc) {
	s.index++
	a.modifyIndex = s.index
	s.bumpLocked()
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (s *Server) event(a *alloc, typ, msg string) {
	a.task.Events = append(a.task.Events, &nomad.TaskEvent{Type: typ, Time: time.Now().UnixNano(), DisplayMessage: msg, Message: msg})
	if len(a.task.Events) > 10 {
		a.task.Events = a.task.Events[len(a.task.Events)-10:]
	}
}

// placeLocked creates an allocation with name index i and starts its task.
func (s *Server) placeLocked(i int) *alloc {
	s.index++
	a := &alloc{
		id: newID(), nameIndex: i, name: fmt.Sprintf("%s.%s[%d]", s.opts.Job, s.opts.Group, i),
		version: s.job.version, desired: nomad.AllocDesiredStatusRun, client: nomad.AllocClientStatusPending,
		createIndex: s.index, modifyIndex: s.index, createTime: time.Now().UnixNano(),
		task: nomad.TaskState{State: "pending"},
	}
	s.allocs = append(s.allocs, a)
	s.event(a, nomad.TaskReceived, "Task received by client")
	s.startLocked(a)
	return a
}

var interp = regexp.MustCompile(`\$\{(NOMAD_[A-Z_]+)\}`)

// startLocked runs a's task process.
func (s *Server) startLocked(a *alloc) {
	if s.closed {
		return
	}
	allocDir := filepath.Join(s.opts.Dir, a.id, "alloc")
	_ = os.MkdirAll(allocDir, 0o755)
	env := map[string]string{
		"NOMAD_ALLOC_ID": a.id, "NOMAD_SHORT_ALLOC_ID": a.id[:8], "NOMAD_ALLOC_NAME": a.name,
		"NOMAD_ALLOC_INDEX": strconv.Itoa(a.nameIndex), "NOMAD_ALLOC_DIR": allocDir,
		"NOMAD_TASK_DIR": filepath.Join(s.opts.Dir, a.id, s.opts.Task, "local"),
		"NOMAD_JOB_ID":   s.opts.Job, "NOMAD_JOB_NAME": s.opts.Job, "NOMAD_GROUP_NAME": s.opts.Group,
		"NOMAD_TASK_NAME": s.opts.Task, "NOMAD_NAMESPACE": "default", "NOMAD_REGION": "global", "NOMAD_DC": "dc1",
	}
	args := make([]string, len(s.opts.Args))
	for i, arg := range s.opts.Args {
		args[i] = interp.ReplaceAllStringFunc(arg, func(m string) string { return env[interp.FindStringSubmatch(m)[1]] })
	}
	logf, err := os.OpenFile(filepath.Join(s.opts.Dir, a.id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.failLocked(a, "Driver Failure", err.Error())
		return
	}
	cmd := exec.Command(s.opts.Command, args...)
	cmd.Env = append(os.Environ(), s.opts.Env...)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: the tasks die with the test process however it dies (the
	// kernel sends it when the forking thread ends: see spawner).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	errc := make(chan error, 1)
	s.spawn <- func() { errc <- cmd.Start() }
	if err := <-errc; err != nil {
		logf.Close()
		s.failLocked(a, nomad.TaskDriverFailure, err.Error())
		return
	}
	a.cmd, a.done = cmd, make(chan struct{})
	a.client = nomad.AllocClientStatusRunning
	a.task.State, a.task.StartedAt, a.task.FinishedAt = "running", time.Now(), time.Time{}
	s.event(a, nomad.TaskStarted, "Task started by client")
	s.touchLocked(a)
	s.log.Info("task started", "alloc", a.id, "name", a.name, "pid", cmd.Process.Pid)
	done := a.done
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		err := cmd.Wait()
		logf.Close()
		s.exited(a, cmd, err)
		close(done)
	}()
	go func() { // healthy after MinHealthyTime of running
		defer s.wg.Done()
		select {
		case <-done:
		case <-time.After(s.opts.MinHealthyTime):
			s.mu.Lock()
			if a.cmd == cmd && !a.healthy {
				a.healthy = true
				s.touchLocked(a)
			}
			s.mu.Unlock()
		}
	}()
}

func (s *Server) failLocked(a *alloc, typ, msg string) {
	a.task.State, a.task.Failed, a.task.FinishedAt = "dead", true, time.Now()
	a.client = nomad.AllocClientStatusFailed
	s.event(a, typ, msg)
	s.touchLocked(a)
	s.rescheduleLocked(a)
}

// exited applies the restart policy to a task process that ended.
func (s *Server) exited(a *alloc, cmd *exec.Cmd, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.cmd != cmd {
		return
	}
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	s.event(a, nomad.TaskTerminated, fmt.Sprintf("Exit Code: %d (%v)", code, err))
	a.task.FinishedAt = time.Now()
	s.log.Info("task exited", "alloc", a.id, "err", err)
	if a.desired != nomad.AllocDesiredStatusRun || s.closed {
		a.task.State, a.client = "dead", nomad.AllocClientStatusComplete
		s.event(a, nomad.TaskKilled, "Task successfully killed")
		s.touchLocked(a)
		return
	}
	// Restart policy (mode "fail"): restart in place while attempts remain.
	now := time.Now()
	recent := a.restartTimes[:0]
	for _, t := range a.restartTimes {
		if now.Sub(t) < s.opts.RestartInterval {
			recent = append(recent, t)
		}
	}
	a.restartTimes = recent
	if len(recent) >= s.opts.RestartAttempts {
		s.event(a, nomad.TaskNotRestarting, "Exceeded allowed attempts 3 in interval 5m0s and mode is \"fail\"")
		s.failLocked(a, "Alloc Unhealthy", "Unhealthy because of failed task")
		return
	}
	a.restartTimes = append(a.restartTimes, now)
	a.task.State = "pending"
	a.task.Restarts++
	a.task.LastRestart = now
	a.healthy = false
	s.event(a, nomad.TaskRestarting, fmt.Sprintf("Task restarting in %s", s.opts.RestartDelay))
	s.touchLocked(a)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		time.Sleep(s.opts.RestartDelay)
		s.mu.Lock()
		defer s.mu.Unlock()
		if a.cmd == cmd && a.desired == nomad.AllocDesiredStatusRun {
			s.startLocked(a)
		}
	}()
}

// rescheduleLocked replaces a failed allocation after RescheduleDelay,
// under the same name, if the group still wants that slot.
func (s *Server) rescheduleLocked(a *alloc) {
	if a.replaced {
		return
	}
	a.replaced = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		time.Sleep(s.opts.RescheduleDelay)
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed && a.nameIndex < s.job.count && !s.slotTakenLocked(a.nameIndex) {
			s.placeLocked(a.nameIndex)
		}
	}()
}

func (s *Server) slotTakenLocked(i int) bool {
	for _, a := range s.allocs {
		if a.nameIndex == i && a.desired == nomad.AllocDesiredStatusRun && !terminal(a.client) {
			return true
		}
	}
	return false
}

func terminal(client string) bool {
	return client == nomad.AllocClientStatusComplete || client == nomad.AllocClientStatusFailed || client == nomad.AllocClientStatusLost
}

// stopLocked stops a's task: its kill signal (SIGTERM), SIGKILL after
// KillTimeout.
func (s *Server) stopLocked(a *alloc, why string) {
	a.desired, a.desiredDesc = nomad.AllocDesiredStatusStop, why
	s.touchLocked(a)
	if a.cmd == nil || a.stopping || a.task.State != "running" {
		if a.task.State != "running" {
			a.task.State, a.client = "dead", nomad.AllocClientStatusComplete
		}
		return
	}
	a.stopping = true
	s.event(a, nomad.TaskKilling, "Sent interrupt. Waiting 5s before force killing")
	cmd, done := a.cmd, a.done
	_ = cmd.Process.Signal(syscall.SIGTERM)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-done:
		case <-time.After(s.opts.KillTimeout):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}()
}

// liveLocked returns the allocations that count toward the group, by name index.
func (s *Server) liveLocked() []*alloc {
	var out []*alloc
	for _, a := range s.allocs {
		if a.desired == nomad.AllocDesiredStatusRun && !terminal(a.client) {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].nameIndex < out[j].nameIndex })
	return out
}

func (s *Server) deploymentActiveLocked() bool {
	for _, a := range s.job.deploying {
		if a.desired == nomad.AllocDesiredStatusRun && !terminal(a.client) && !a.healthy {
			return true
		}
	}
	return false
}

// ---- HTTP ----

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status/leader", func(w http.ResponseWriter, r *http.Request) {
		s.reply(w, r, 0, "127.0.0.1:4647")
	})
	mux.HandleFunc("GET /v1/job/{job}/scale", s.handleScaleStatus)
	mux.HandleFunc("PUT /v1/job/{job}/scale", s.handleScale)
	mux.HandleFunc("POST /v1/job/{job}/scale", s.handleScale)
	mux.HandleFunc("GET /v1/job/{job}/allocations", s.handleJobAllocs)
	mux.HandleFunc("GET /v1/allocation/{id}", s.handleAllocInfo)
	mux.HandleFunc("PUT /v1/allocation/{id}/stop", s.handleAllocStop)
	mux.HandleFunc("POST /v1/allocation/{id}/stop", s.handleAllocStop)
	mux.HandleFunc("PUT /v1/client/allocation/{id}/signal", s.handleSignal)
	mux.HandleFunc("POST /v1/client/allocation/{id}/signal", s.handleSignal)
	mux.HandleFunc("GET /v1/services", s.handleServices)
	mux.HandleFunc("GET /v1/service/{name}", s.handleService)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.fault(w, r) {
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// fault applies the first matching injected fault; it reports whether it answered.
func (s *Server) fault(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	var f *Fault
	for i, x := range s.faults {
		if (x.Method == "" || x.Method == r.Method) && regexp.MustCompile(x.Path).MatchString(r.URL.Path) {
			c := *x
			f = &c
			if x.Times > 0 {
				if x.Times--; x.Times == 0 {
					s.faults = slices.Delete(s.faults, i, i+1)
				}
			}
			break
		}
	}
	s.mu.Unlock()
	if f == nil {
		return false
	}
	if f.Delay > 0 {
		select {
		case <-r.Context().Done():
			return true
		case <-time.After(f.Delay):
		}
	}
	if f.Status == 0 {
		return false
	}
	s.fail(w, f.Status, f.Body)
	return true
}

// fail answers an error the way Nomad's HTTP agent does: the status and
// the error text as a plain body.
func (s *Server) fail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = fmt.Fprint(w, msg)
}

// reply writes v as JSON with Nomad's query meta headers.
func (s *Server) reply(w http.ResponseWriter, _ *http.Request, index uint64, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Nomad-Index", strconv.FormatUint(index, 10))
	h.Set("X-Nomad-LastContact", "0")
	h.Set("X-Nomad-KnownLeader", "true")
	_ = json.NewEncoder(w).Encode(v)
}

// block implements a blocking query: with ?index=N it waits until the
// state index passes N, the wait (?wait=, default 5 min, capped by
// MaxWait, plus up to wait/16 of jitter as Nomad adds) ends or the client
// leaves. It returns with s.mu held.
func (s *Server) block(r *http.Request) {
	q := r.URL.Query()
	want, _ := strconv.ParseUint(q.Get("index"), 10, 64)
	wait := 5 * time.Minute
	if ws := q.Get("wait"); ws != "" {
		if d, err := time.ParseDuration(ws); err == nil {
			wait = d
		} else if ms, err := strconv.Atoi(ws); err == nil {
			wait = time.Duration(ms) * time.Millisecond
		}
	}
	wait = min(wait, s.opts.MaxWait)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	s.mu.Lock()
	for want > 0 && s.index <= want && !s.closed {
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			s.mu.Lock()
			return
		case <-r.Context().Done():
			s.mu.Lock()
			return
		}
		s.mu.Lock()
	}
}

func (s *Server) jobMatches(w http.ResponseWriter, r *http.Request) bool {
	if r.PathValue("job") != s.opts.Job {
		s.fail(w, http.StatusNotFound, fmt.Sprintf("job %q not found", r.PathValue("job")))
		return false
	}
	return true
}

func (s *Server) handleScaleStatus(w http.ResponseWriter, r *http.Request) {
	if !s.jobMatches(w, r) {
		return
	}
	s.block(r)
	tg := nomad.TaskGroupScaleStatus{Desired: s.job.count, Events: slices.Clone(s.job.events)}
	for _, a := range s.allocs {
		if a.desired != nomad.AllocDesiredStatusRun || terminal(a.client) {
			continue
		}
		tg.Placed++
		if a.task.State == "running" {
			tg.Running++
		}
		if a.healthy {
			tg.Healthy++
		}
	}
	st := nomad.JobScaleStatusResponse{
		JobID: s.opts.Job, Namespace: "default", JobCreateIndex: s.job.createIndex,
		JobModifyIndex: s.job.jobModifyIndex, TaskGroups: map[string]nomad.TaskGroupScaleStatus{s.opts.Group: tg},
	}
	idx := s.index
	s.mu.Unlock()
	s.reply(w, r, idx, st)
}

// handleScale is POST /v1/job/:job/scale, with Nomad's checks in Nomad's
// order: the group, the scaling block's bounds, an active deployment, the
// compare-and-set on the job modify index.
func (s *Server) handleScale(w http.ResponseWriter, r *http.Request) {
	if !s.jobMatches(w, r) {
		return
	}
	var req nomad.ScalingRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		s.fail(w, http.StatusBadRequest, "Unable to decode request body: "+err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scaleReqs = append(s.scaleReqs, req)
	group := req.Target["Group"]
	switch {
	case group == "":
		s.fail(w, http.StatusBadRequest, "missing task group name for scaling action")
		return
	case group != s.opts.Group:
		s.fail(w, http.StatusBadRequest, fmt.Sprintf("task group %q specified for scaling does not exist in job", group))
		return
	case req.Count != nil && *req.Count < 0:
		s.fail(w, http.StatusBadRequest, "scaling action count can't be negative")
		return
	}
	prev := s.job.count
	ev := nomad.ScalingEvent{Count: req.Count, PreviousCount: int64(prev), Message: req.Message, Error: req.Error,
		Meta: req.Meta, Time: uint64(time.Now().UnixNano())}
	if req.Count != nil {
		n := int(*req.Count)
		if n < s.opts.Min {
			s.fail(w, http.StatusBadRequest, fmt.Sprintf("group count was less than scaling policy minimum: %d < %d", n, s.opts.Min))
			return
		}
		if n > s.opts.Max {
			s.fail(w, http.StatusBadRequest, fmt.Sprintf("group count was greater than scaling policy maximum: %d > %d", n, s.opts.Max))
			return
		}
		if s.deploymentActiveLocked() {
			s.fail(w, http.StatusBadRequest, "job scaling blocked due to active deployment")
			return
		}
		if req.JobModifyIndex > 0 && req.JobModifyIndex != s.job.jobModifyIndex {
			s.fail(w, http.StatusInternalServerError, fmt.Sprintf("Enforcing job modify index %d: job exists with conflicting job modify index: %d",
				req.JobModifyIndex, s.job.jobModifyIndex))
			return
		}
		s.index++
		s.job.version++
		s.job.count = n
		s.job.modifyIndex, s.job.jobModifyIndex = s.index, s.index
		s.applyCountLocked()
	}
	evalID := newID()
	ev.EvalID = &evalID
	s.index++
	ev.CreateIndex = s.index
	s.job.events = append([]nomad.ScalingEvent{ev}, s.job.events...)
	s.bumpLocked()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Nomad-Index", strconv.FormatUint(s.index, 10))
	_ = json.NewEncoder(w).Encode(nomad.JobRegisterResponse{EvalID: evalID, EvalCreateIndex: s.index, JobModifyIndex: s.job.jobModifyIndex})
}

// applyCountLocked places or stops allocations to match the count:
// missing name indexes are placed, the highest ones stopped.
func (s *Server) applyCountLocked() {
	live := s.liveLocked()
	s.job.deploying = nil
	if len(live) > s.job.count {
		for _, a := range live[s.job.count:] {
			s.stopLocked(a, "alloc not needed due to job update")
		}
		return
	}
	for i := 0; len(s.liveLocked()) < s.job.count; i++ {
		if !s.slotTakenLocked(i) {
			s.job.deploying = append(s.job.deploying, s.placeLocked(i))
		}
	}
}

func (s *Server) stub(a *alloc) *nomad.AllocationListStub {
	ts := a.task
	ts.Events = slices.Clone(a.task.Events)
	st := &nomad.AllocationListStub{
		ID: a.id, EvalID: a.id, Name: a.name, Namespace: "default", NodeID: "node-fake", NodeName: "fake",
		JobID: s.opts.Job, JobType: "service", JobVersion: a.version, TaskGroup: s.opts.Group,
		DesiredStatus: a.desired, DesiredDescription: a.desiredDesc, ClientStatus: a.client,
		TaskStates:  map[string]*nomad.TaskState{s.opts.Task: &ts},
		CreateIndex: a.createIndex, ModifyIndex: a.modifyIndex, CreateTime: a.createTime, ModifyTime: time.Now().UnixNano(),
	}
	if a.healthy {
		st.DeploymentStatus = &nomad.AllocDeploymentStatus{Healthy: new(true)}
	}
	return st
}

func (s *Server) handleJobAllocs(w http.ResponseWriter, r *http.Request) {
	if !s.jobMatches(w, r) {
		return
	}
	s.block(r)
	out := make([]*nomad.AllocationListStub, 0, len(s.allocs))
	for _, a := range s.allocs {
		out = append(out, s.stub(a))
	}
	idx := s.index
	s.mu.Unlock()
	s.reply(w, r, idx, out)
}

func (s *Server) findLocked(id string) *alloc {
	for _, a := range s.allocs {
		if a.id == id {
			return a
		}
	}
	return nil
}

func (s *Server) handleAllocInfo(w http.ResponseWriter, r *http.Request) {
	s.block(r)
	a := s.findLocked(r.PathValue("id"))
	if a == nil {
		s.mu.Unlock()
		s.fail(w, http.StatusNotFound, "alloc not found")
		return
	}
	st := s.stub(a)
	full := nomad.Allocation{
		ID: st.ID, EvalID: st.EvalID, Name: st.Name, Namespace: st.Namespace, NodeID: st.NodeID, NodeName: st.NodeName,
		JobID: st.JobID, TaskGroup: st.TaskGroup, DesiredStatus: st.DesiredStatus, DesiredDescription: st.DesiredDescription,
		ClientStatus: st.ClientStatus, TaskStates: st.TaskStates, DeploymentStatus: st.DeploymentStatus,
		CreateIndex: st.CreateIndex, ModifyIndex: st.ModifyIndex, AllocModifyIndex: st.ModifyIndex,
		CreateTime: st.CreateTime, ModifyTime: st.ModifyTime,
	}
	idx := s.index
	s.mu.Unlock()
	s.reply(w, r, idx, full)
}

// handleAllocStop stops an allocation and places its replacement (same
// name, new id): Nomad's "stop and reschedule".
func (s *Server) handleAllocStop(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	a := s.findLocked(r.PathValue("id"))
	if a == nil {
		s.mu.Unlock()
		s.fail(w, http.StatusNotFound, "alloc not found")
		return
	}
	if a.desired == nomad.AllocDesiredStatusRun && !terminal(a.client) {
		s.stopLocked(a, "alloc is being migrated")
		a.replaced = true
		if a.nameIndex < s.job.count {
			s.placeLocked(a.nameIndex)
		}
	}
	evalID := newID()
	s.index++
	s.bumpLocked()
	idx := s.index
	s.mu.Unlock()
	s.reply(w, r, idx, nomad.AllocStopResponse{EvalID: evalID})
}

// signals the double delivers; any other name is delivered as SIGINT, as
// raw_exec does ("unknown signal to send to task, using SIGINT instead").
var signalByName = map[string]syscall.Signal{
	"SIGKILL": syscall.SIGKILL, "SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT, "SIGHUP": syscall.SIGHUP,
	"SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2, "SIGQUIT": syscall.SIGQUIT,
}

// handleSignal is POST /v1/client/allocation/:id/signal.
func (s *Server) handleSignal(w http.ResponseWriter, r *http.Request) {
	var req nomad.AllocSignalRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		s.fail(w, http.StatusBadRequest, "Unable to decode request body: "+err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.findLocked(r.PathValue("id"))
	switch {
	case a == nil:
		s.fail(w, http.StatusNotFound, fmt.Sprintf("Unknown allocation %q", r.PathValue("id")))
		return
	case req.Task != "" && req.Task != s.opts.Task:
		s.fail(w, http.StatusInternalServerError, "Task not found")
		return
	case a.cmd == nil || a.task.State != "running":
		s.fail(w, http.StatusInternalServerError, "Task not running")
		return
	}
	sig, ok := signalByName[strings.ToUpper(req.Signal)]
	if !ok {
		sig = syscall.SIGINT
	}
	s.event(a, nomad.TaskSignaling, "Task being sent signal "+req.Signal)
	s.signals = append(s.signals, a.id+" "+s.opts.Task+" "+req.Signal)
	_ = a.cmd.Process.Signal(sig)
	s.touchLocked(a)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Nomad-Index", "0")
	h.Set("X-Nomad-LastContact", "0")
	h.Set("X-Nomad-KnownLeader", "true")
	_, _ = fmt.Fprint(w, `{"Index":0}`)
}

func (s *Server) handleServices(w http.ResponseWriter, r *http.Request) {
	s.block(r)
	stub := &nomad.ServiceRegistrationListStub{Namespace: "default"}
	names := make([]string, 0, len(s.services))
	for n := range s.services {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		var tags []string
		for _, reg := range s.services[n] {
			for _, t := range reg.Tags {
				if !slices.Contains(tags, t) {
					tags = append(tags, t)
				}
			}
		}
		stub.Services = append(stub.Services, &nomad.ServiceRegistrationStub{ServiceName: n, Tags: tags})
	}
	idx := s.index
	s.mu.Unlock()
	out := []*nomad.ServiceRegistrationListStub{}
	if len(stub.Services) > 0 {
		out = append(out, stub)
	}
	s.reply(w, r, idx, out)
}

// tagFilter is the one filter expression the double understands, the one
// Traefik's provider sends: Tags contains "traefik.enable=true".
var tagFilter = regexp.MustCompile(`^Tags contains "([^"]*)"$`)

func (s *Server) handleService(w http.ResponseWriter, r *http.Request) {
	var want string
	if f := r.URL.Query().Get("filter"); f != "" {
		m := tagFilter.FindStringSubmatch(f)
		if m == nil {
			s.fail(w, http.StatusBadRequest, fmt.Sprintf("failed to read filter expression: unsupported by the double: %q", f))
			return
		}
		want = m[1]
	}
	s.block(r)
	out := []*nomad.ServiceRegistration{}
	for _, reg := range s.services[r.PathValue("name")] {
		if want == "" || slices.Contains(reg.Tags, want) {
			c := *reg
			out = append(out, &c)
		}
	}
	idx := s.index
	s.mu.Unlock()
	s.reply(w, r, idx, out)
}
