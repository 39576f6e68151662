package worker

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rideshare-dbaas/rideshare/internal/metrics"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
)

// Write outcomes (rideshare_worker_writes_total{outcome}).
const (
	writeApplied      = iota // committed and answered 200
	writeDuplicate           // answered from _writes: the id was applied or refused before
	writeRefused             // the operation said no, or the write was invalid (4xx)
	writeFailed              // the handler failed (502): nothing applied, retry may work
	writeDeadLettered        // failed on its last allowed delivery (500), dead-lettered
	nWriteOutcomes
)

var writeOutcomeNames = [nWriteOutcomes]string{"applied", "duplicate", "refused", "failed", "dead_lettered"}

// Read outcomes (rideshare_worker_reads_total{outcome}).
const (
	readOK          = iota // answered 200
	readRefused            // the operation said no, or the read was invalid (4xx)
	readFailed             // the handler failed (502)
	readTimeout            // the handler overran its deadline (502)
	readMinSeq             // the slave did not reach the read's min_seq in time (503)
	readUnavailable        // the database could not be read (503)
	nReadOutcomes
)

var readOutcomeNames = [nReadOutcomes]string{"ok", "refused", "failed", "timeout", "min_seq_timeout", "unavailable"}

// workerMetrics are the worker's Prometheus metrics. Every label child is
// resolved here, once: the write and read paths only index arrays.
type workerMetrics struct {
	batchWrites    prometheus.Histogram // writes per group commit
	commitSeconds  prometheus.Histogram // transaction start to durable commit
	confirmSeconds prometheus.Histogram // sync publish confirmed and fence checked, per finisher round
	writes         [nWriteOutcomes]prometheus.Counter
	poisonRetries  prometheus.Counter
	reads          [nReadOutcomes]prometheus.Counter
	snapshots      prometheus.Counter
	repairsLog     prometheus.Counter
	repairsSnap    prometheus.Counter
}

// newWorkerMetrics registers the worker's metrics on reg (a private
// registry when nil, so that a Worker built by a test needs none).
func newWorkerMetrics(reg prometheus.Registerer, w *Worker) *workerMetrics {
	reg = metrics.OrPrivate(reg)
	ns, sub := metrics.Namespace, "worker"
	writes := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "writes_total",
		Help: "Writes answered by this worker as master, by outcome: applied, duplicate (idempotency hit), refused (4xx), failed (handler failure, 502), dead_lettered."},
		[]string{"outcome"})
	reads := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "reads_total",
		Help: "Reads answered by this worker as slave, by outcome: ok, refused (4xx), failed (502), timeout (handler overran), min_seq_timeout (the slave did not reach the read's min_seq in time), unavailable."},
		[]string{"outcome"})
	repairs := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "repairs_served_total",
		Help: "Repair requests this worker answered as master, by kind: log (a range of entries) or snapshot."},
		[]string{"kind"})
	m := &workerMetrics{
		batchWrites: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "group_commit_writes",
			Help:    "Writes run in one group commit (one transaction, one fsync).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "group_commit_seconds",
			Help:    "Time from a group commit's start to its durable commit (the handlers' work and the fsync).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}),
		confirmSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "group_commit_confirm_seconds",
			Help:    "Time the finisher took to get committed batches confirmed on the sync stream and to check the fence, before acking them.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}),
		poisonRetries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "poison_retries_total",
			Help: "Write deliveries sent back to the queue because a write of theirs failed alone (before their last allowed delivery)."}),
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "snapshots_installed_total",
			Help: "Snapshots of the master this worker installed (a new slave, or a resync)."}),
	}
	for i, name := range writeOutcomeNames {
		m.writes[i] = writes.WithLabelValues(name)
	}
	for i, name := range readOutcomeNames {
		m.reads[i] = reads.WithLabelValues(name)
	}
	m.repairsLog, m.repairsSnap = repairs.WithLabelValues("log"), repairs.WithLabelValues("snapshot")
	reg.MustRegister(m.batchWrites, m.commitSeconds, m.confirmSeconds, writes, m.poisonRetries, reads, repairs, m.snapshots,
		replicationCollector{w})
	return m
}

// writeOutcome classifies a write's final reply.
func writeOutcome(wr *write) int {
	switch s := wr.reply.Status; {
	case wr.dup:
		// Answered from _writes: the retry of a write already applied or
		// refused, whatever its first answer was.
		return writeDuplicate
	case s == 200:
		return writeApplied
	case s >= 400 && s < 500:
		return writeRefused
	case s == 500:
		return writeDeadLettered
	}
	return writeFailed
}

// replicationCollector reports the worker's position as it is at scrape
// time: applied sequence number, epoch and role.
type replicationCollector struct{ w *Worker }

var (
	descApplied = prometheus.NewDesc(metrics.Namespace+"_worker_applied_seq",
		"Sequence number of the last log entry this worker applied.", nil, nil)
	descEpoch = prometheus.NewDesc(metrics.Namespace+"_worker_epoch",
		"Epoch of this worker: the one it is master of, else that of the last entry it applied.", nil, nil)
	descRole = prometheus.NewDesc(metrics.Namespace+"_worker_role",
		"1 for this worker's current role (master or slave), 0 for the other.", []string{"role"}, nil)
)

func (c replicationCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descApplied
	ch <- descEpoch
	ch <- descRole
}

func (c replicationCollector) Collect(ch chan<- prometheus.Metric) {
	w := c.w
	w.mu.Lock()
	role, masterEpoch := w.role, w.masterEpoch
	w.mu.Unlock()
	var seq, epoch uint64
	if st := w.store.Load(); st != nil {
		seq, epoch = st.Applied()
	}
	if role == wire.RoleMaster {
		epoch = masterEpoch
	}
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(seq))
	ch <- prometheus.MustNewConstMetric(descEpoch, prometheus.GaugeValue, float64(epoch))
	for _, r := range []string{wire.RoleMaster, wire.RoleSlave} {
		v := 0.0
		if r == role {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descRole, prometheus.GaugeValue, v, r)
	}
}
