package pluginhost

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rideshare-dbaas/rideshare/internal/metrics"
	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

// Call outcomes (rideshare_worker_plugin_calls_total{outcome}).
const (
	callOK      = iota // answered (a plan call answered "interactive" counts too)
	callRefused        // the operation's own refusal (*pluginapi.Error)
	callFailed         // any other failure (*CallError)
	callTimeout        // no answer within the deadline
	nCallOutcomes
)

var callOutcomeNames = [nCallOutcomes]string{"ok", "refused", "failed", "timeout"}

// Call methods: what the worker asked the plugin.
const (
	methodExecute = "execute"
	methodPlan    = "plan"
)

// hostMetrics are the plugin host's Prometheus metrics.
type hostMetrics struct {
	calls    *prometheus.CounterVec   // plugin, op, method, outcome
	seconds  *prometheus.HistogramVec // plugin, op, method
	retired  *prometheus.CounterVec   // plugin, reason
	restarts *prometheus.CounterVec   // plugin, outcome
	reloadOK prometheus.Counter
	reloadKO prometheus.Counter
}

func newHostMetrics(reg prometheus.Registerer, h *Host) *hostMetrics {
	reg = metrics.OrPrivate(reg)
	ns, sub := metrics.Namespace, "worker"
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "plugin_reloads_total",
		Help: "Loads of the plugin manifest (the first one, SIGHUP, a changed manifest), by outcome: ok, or failed (the loaded plugins stay)."},
		[]string{"outcome"})
	m := &hostMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "plugin_calls_total",
			Help: "Calls to handler plugins, by plugin, operation, method (execute, or plan) and outcome: ok, refused (the operation's answer), failed, timeout."},
			[]string{"plugin", "op", "method", "outcome"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "plugin_call_seconds",
			Help:    "Time a call waited for its plugin's answer, by plugin, operation and method (the calls of one plan request each count its whole time).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5}},
			[]string{"plugin", "op", "method"}),
		retired: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "plugin_failures_total",
			Help: "Plugin processes taken out of service, by plugin and reason: exited (found dead), died (during a call), overran (a call's deadline), broken (a transport failure)."},
			[]string{"plugin", "reason"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "plugin_restarts_total",
			Help: "Plugin processes started again after a failure, by plugin and outcome: ok, or failed."},
			[]string{"plugin", "outcome"}),
		reloadOK: reloads.WithLabelValues("ok"),
		reloadKO: reloads.WithLabelValues("failed"),
	}
	reg.MustRegister(m.calls, m.seconds, m.retired, m.restarts, reloads, loadedCollector{h})
	return m
}

// opMetrics are one operation's label children for one method, resolved
// when its plugin is loaded: a call only indexes them.
type opMetrics struct {
	outcomes [nCallOutcomes]prometheus.Counter
	seconds  prometheus.Observer
}

// opMetricsFor resolves the children of every operation of info.
func (m *hostMetrics) opMetricsFor(plugin string, info pluginapi.Info, method string) map[string]*opMetrics {
	out := make(map[string]*opMetrics, len(info.Ops))
	for _, op := range info.Ops {
		om := &opMetrics{seconds: m.seconds.WithLabelValues(plugin, op.Name, method)}
		for i, name := range callOutcomeNames {
			om.outcomes[i] = m.calls.WithLabelValues(plugin, op.Name, method, name)
		}
		out[op.Name] = om
	}
	return out
}

// observe counts one call of op (nothing for an op the plugin did not
// declare: the registry never routes one here).
func observe(ops map[string]*opMetrics, op string, start time.Time, outcome int) {
	if om := ops[op]; om != nil {
		om.outcomes[outcome].Inc()
		om.seconds.Observe(time.Since(start).Seconds())
	}
}

// callOutcome classifies what a call returned.
func callOutcome(err error) int {
	if err == nil || errors.Is(err, pluginapi.ErrInteractive) {
		return callOK
	}
	if _, refused := pluginapi.AsError(err); refused {
		return callRefused
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return callTimeout
	}
	return callFailed
}

// loadedCollector reports the loaded plugin set at scrape time: one
// series per plugin and version, so a reload leaves no stale one.
type loadedCollector struct{ h *Host }

var descLoaded = prometheus.NewDesc(metrics.Namespace+"_worker_plugin_loaded",
	"1 for every handler plugin loaded, by name and version.", []string{"plugin", "version"}, nil)

func (c loadedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descLoaded }

func (c loadedCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.h.cur.Load()
	if s == nil {
		return
	}
	for _, p := range s.plugins {
		ch <- prometheus.MustNewConstMetric(descLoaded, prometheus.GaugeValue, 1, p.entry.Name, p.info.Version)
	}
}
