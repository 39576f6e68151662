package orchestrator

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rideshare-dbaas/rideshare/internal/metrics"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
)

// Event is one thing operators want to see happen: an election, a
// failover, a worker lost or started, a crash on request, a scaling
// decision. The orchestrator keeps the last ones in a ring buffer
// (GET /api/v1/events, the cluster page, rideshare watch).
type Event struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Worker  string    `json:"worker,omitempty"`
	PID     int       `json:"pid,omitempty"`
	Message string    `json:"message"`
}

// Event kinds.
const (
	EventElected  = "elected"  // the first master of a cluster
	EventFailover = "failover" // a slave took over from a master that is gone
	EventRevive   = "revive"   // the dead master restarted on its own data
	EventLost     = "lost"     // a worker vanished without being asked to
	EventRespawn  = "respawn"  // a replacement for a lost worker started
	EventStart    = "start"    // a worker started (cold start, scale-out)
	EventStop     = "stop"     // a slave stopped by scale-in
	EventCrash    = "crash"    // crash/master or crash/slave on request
	EventScale    = "scale"    // the desired slave count changed, and why
)

// eventRing keeps the last cap events.
type eventRing struct {
	mu   sync.Mutex
	buf  []Event
	next uint64
	cap  int
}

func newEventRing(capacity int) *eventRing { return &eventRing{cap: capacity} }

func (r *eventRing) add(e Event) Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	e.Seq = r.next
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if len(r.buf) == r.cap {
		copy(r.buf, r.buf[1:])
		r.buf = r.buf[:r.cap-1]
	}
	r.buf = append(r.buf, e)
	return e
}

// since returns the events with Seq > after, oldest first.
func (r *eventRing) since(after uint64) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []Event{}
	for _, e := range r.buf {
		if e.Seq > after {
			out = append(out, e)
		}
	}
	return out
}

// orchMetrics are the orchestrator's own Prometheus metrics.
type orchMetrics struct {
	requests  *prometheus.CounterVec // kind=read|write|clear, outcome
	workers   *prometheus.GaugeVec   // role, state
	failovers prometheus.Counter
	revives   prometheus.Counter
	respawns  prometheus.Counter
	lost      prometheus.Counter
	crashes   *prometheus.CounterVec // role
	decisions *prometheus.CounterVec // direction, reason
	desired   prometheus.Gauge
}

func newOrchMetrics(reg prometheus.Registerer, windowReads func() float64) *orchMetrics {
	ns, sub := metrics.Namespace, "dbaas"
	m := &orchMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "requests_total",
			Help: "DBaaS reads, writes and clears, by outcome: ok, refused (the operation said no), failed (handler failure), unavailable (no worker answered), bad_request."},
			[]string{"kind", "outcome"}),
		workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "workers",
			Help: "Live workers by role and state (starting: not registered in ZooKeeper yet)."}, []string{"role", "state"}),
		failovers: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "failovers_total",
			Help: "Elections that replaced a master that was gone."}),
		revives: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "revives_total",
			Help: "Dead masters restarted on their own data because no slave could take over."}),
		respawns: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "respawns_total",
			Help: "Workers started to replace workers that were lost."}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "workers_lost_total",
			Help: "Workers that vanished without being stopped by the orchestrator (crashes, kills)."}),
		crashes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "crashes_total",
			Help: "Workers killed on request (crash/master, crash/slave)."}, []string{"role"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "scale_decisions_total",
			Help: "Scaling decisions: direction up|down|same, reason autoscaler (a window ended), pinned or released (an operator)."},
			[]string{"direction", "reason"}),
		desired: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "desired_slaves",
			Help: "The number of slaves the orchestrator keeps."}),
	}
	reads := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "window_reads",
		Help: "db/read calls counted in the autoscaler's current window."}, windowReads)
	reg.MustRegister(m.requests, m.workers, m.failovers, m.revives, m.respawns, m.lost, m.crashes, m.decisions, m.desired, reads)
	return m
}

// outcome names a DBaaS reply status for the requests metric.
func outcome(status int) string {
	switch {
	case status < 300:
		return "ok"
	case status == 400 || status == 413:
		return "bad_request"
	case status == 404 || status == 409:
		return "refused"
	case status == 502:
		return "failed"
	case status == 503:
		return "unavailable"
	case status == 401:
		return "unauthorized"
	}
	return "other"
}

// observer turns what the cluster does into events and metrics. The
// cluster calls it at the few places where something happens; it keeps
// the little state needed to tell a respawn from a scale-out. A nil
// observer (an Orchestrator built by hand in a unit test) does nothing.
type observer struct {
	events *eventRing
	m      *orchMetrics

	// last is the latest view, for the lag collector.
	last atomic.Pointer[viewAt] // the latest view and when it came

	mu    sync.Mutex
	known map[string]int // workers seen alive at the last reconcile: id -> pid
	lost  int            // lost workers not replaced yet
}

func newObserver(events *eventRing, m *orchMetrics) *observer {
	return &observer{events: events, m: m, known: map[string]int{}}
}

// alive is called on every reconcile with the live workers and those the
// orchestrator is stopping on purpose; a worker that was alive before and
// is gone now without being stopped was lost.
func (ob *observer) alive(alive map[string]int, stopping map[string]bool) {
	if ob == nil {
		return
	}
	ob.mu.Lock()
	defer ob.mu.Unlock()
	for id, pid := range ob.known {
		if _, ok := alive[id]; ok {
			continue
		}
		if stopping[id] {
			continue
		}
		ob.lost++
		ob.m.lost.Inc()
		ob.events.add(Event{Kind: EventLost, Worker: id, PID: pid, Message: fmt.Sprintf("worker %s (pid %d) is gone", id, pid)})
	}
	ob.known = make(map[string]int, len(alive))
	for id, pid := range alive {
		ob.known[id] = pid
	}
}

// started is called for every worker the cluster starts.
func (ob *observer) started(in Instance) {
	if ob == nil {
		return
	}
	ob.mu.Lock()
	defer ob.mu.Unlock()
	ob.known[in.ID] = in.PID
	if ob.lost > 0 {
		ob.lost--
		ob.m.respawns.Inc()
		ob.events.add(Event{Kind: EventRespawn, Worker: in.ID, PID: in.PID, Message: fmt.Sprintf("started %s (pid %d) to replace a lost worker", in.ID, in.PID)})
		return
	}
	ob.events.add(Event{Kind: EventStart, Worker: in.ID, PID: in.PID, Message: fmt.Sprintf("started %s (pid %d)", in.ID, in.PID)})
}

// stopping is called when scale-in stops a slave.
func (ob *observer) stopping(in Instance) {
	if ob == nil {
		return
	}
	ob.events.add(Event{Kind: EventStop, Worker: in.ID, PID: in.PID, Message: fmt.Sprintf("scale-in: stopping slave %s (pid %d)", in.ID, in.PID)})
}

// elected is called after an election wrote the master record; prev is
// the record it replaced (exists false at a cold start).
func (ob *observer) elected(prev wire.MasterRecord, exists bool, id string, pid int, applied, epoch uint64) {
	if ob == nil {
		return
	}
	if exists && prev.ID != "" {
		ob.m.failovers.Inc()
		ob.events.add(Event{Kind: EventFailover, Worker: id, PID: pid,
			Message: fmt.Sprintf("%s (pid %d, seq %d) took over from %s, epoch %d", id, pid, applied, prev.ID, epoch)})
		return
	}
	ob.events.add(Event{Kind: EventElected, Worker: id, PID: pid, Message: fmt.Sprintf("%s (pid %d) is the first master, epoch %d", id, pid, epoch)})
}

// revived is called when the dead master was restarted on its own data.
func (ob *observer) revived(id string, pid int, epoch uint64) {
	if ob == nil {
		return
	}
	ob.m.revives.Inc()
	ob.mu.Lock()
	ob.known[id] = pid
	if ob.lost > 0 {
		ob.lost-- // the master's loss is answered by its revival
	}
	ob.mu.Unlock()
	ob.events.add(Event{Kind: EventRevive, Worker: id, PID: pid,
		Message: fmt.Sprintf("no slave could take over: restarted master %s (pid %d) on its own data, epoch %d", id, pid, epoch)})
}

// crashed is called when crash/* killed a worker.
func (ob *observer) crashed(in Instance, role string) {
	if ob == nil {
		return
	}
	ob.m.crashes.WithLabelValues(role).Inc()
	ob.events.add(Event{Kind: EventCrash, Worker: in.ID, PID: in.PID, Message: fmt.Sprintf("crash/%s killed %s (pid %d)", role, in.ID, in.PID)})
}

// view is called with every new API view of the workers.
func (ob *observer) view(view []WorkerView) {
	if ob == nil {
		return
	}
	ob.last.Store(&viewAt{view: view, at: time.Now()})
	ob.m.workers.Reset()
	for _, v := range view {
		ob.m.workers.WithLabelValues(v.Role, v.State).Inc()
	}
}

// decided records a scaling decision.
func (ob *observer) decided(d ScaleDecision, prev int) {
	if ob == nil {
		return
	}
	dir := "same"
	switch {
	case d.Slaves > prev:
		dir = "up"
	case d.Slaves < prev:
		dir = "down"
	}
	ob.m.decisions.WithLabelValues(dir, d.Reason).Inc()
	ob.m.desired.Set(float64(d.Slaves))
	if dir != "same" || d.Reason != ReasonAutoscaler {
		ob.events.add(Event{Kind: EventScale, Time: d.At, Message: fmt.Sprintf("slaves %d -> %d: %s", prev, d.Slaves, d.Why)})
	}
}

// lagCollector reports each slave's replication lag, in sequence numbers
// behind the master, from the latest view: a worker that is gone has no
// series at the next scrape.
type lagCollector struct{ ob *observer }

var descLag = prometheus.NewDesc(metrics.Namespace+"_dbaas_replication_lag",
	"Sequence numbers each slave is behind the master, as their ZooKeeper records last said.", []string{"worker"}, nil)

func (c lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descLag }

func (c lagCollector) Collect(ch chan<- prometheus.Metric) {
	last := c.ob.last.Load()
	if last == nil || time.Since(last.at) > lagFresh {
		// None yet, or the cluster loop has not published for a while
		// (ZooKeeper is lost): old numbers would look current.
		return
	}
	view := last.view
	master := false
	for _, v := range view {
		master = master || (v.Role == wire.RoleMaster && v.State == wire.StateReady)
	}
	if !master {
		return // no position to be behind of (a failover is under way)
	}
	for _, v := range view {
		// Only slaves with a record: a worker still starting has none,
		// and its applied 0 would read as the whole log.
		if v.Role == wire.RoleSlave && (v.State == wire.StateReady || v.State == wire.StateCatchingUp || v.State == wire.StateSyncing) {
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(v.Lag), v.ID)
		}
	}
}

// viewAt is a view of the workers and when the cluster loop published it.
type viewAt struct {
	view []WorkerView
	at   time.Time
}

// lagFresh is how old the last view may be for the lag gauge to report it:
// the cluster loop publishes one every second while it can reach
// ZooKeeper.
const lagFresh = 10 * time.Second
