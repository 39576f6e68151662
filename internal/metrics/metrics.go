// Package metrics is the Prometheus side of every RideShare binary: one
// registry per component instance (not the global default, so that tests
// can run several orchestrators in one process), the Go and process
// collectors, the /metrics handler, and HTTP middleware that counts
// requests by chi route pattern (never the raw path: usernames and ride ids
// would explode the series) and status, with latency histograms.
//
// Components define their own metrics on Registerer() with the rideshare_
// namespace. The worker does the same (batch sizes, replication, plugin
// calls) and serves them with Serve: nothing here is orchestrator-specific.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every RideShare metric.
const Namespace = "rideshare"

// Unmatched is the route label of requests no route matched (404s and
// chi's 405s): one series for them all.
const Unmatched = "unmatched"

// Registry is one component's metrics.
type Registry struct {
	reg  *prometheus.Registry
	own  prometheus.Registerer // reg, adding the component label
	reqs *prometheus.CounterVec
	lat  *prometheus.HistogramVec
}

// New returns a registry with the Go runtime and process collectors and
// the HTTP request metrics, every series labelled component=<component>.
func New(component string) *Registry {
	reg := prometheus.NewRegistry()
	wrapped := prometheus.WrapRegistererWith(prometheus.Labels{"component": component}, reg)
	wrapped.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r := &Registry{reg: reg, own: wrapped}
	r.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "http", Name: "requests_total",
		Help: "HTTP requests served, by chi route pattern, method and status code.",
	}, []string{"route", "method", "code"})
	r.lat = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "http", Name: "request_duration_seconds",
		Help:    "Time to serve an HTTP request, by chi route pattern and method.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route", "method"})
	wrapped.MustRegister(r.reqs, r.lat)
	return r
}

// OrPrivate returns reg, or a new registry nobody serves when reg is nil:
// a component built without metrics (in a unit test) registers there.
func OrPrivate(reg prometheus.Registerer) prometheus.Registerer {
	if reg == nil {
		return prometheus.NewRegistry()
	}
	return reg
}

// Registerer is where a component registers its own metrics (already
// labelled with its component name).
func (r *Registry) Registerer() prometheus.Registerer { return r.own }

// Gatherer is what /metrics exposes (tests read it).
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Handler serves the registry in the Prometheus text format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg})
}

// Observer sees every request the middleware measured (tests record which
// statuses each route produced: package apirecord).
type Observer func(route, method string, status int)

// Middleware measures requests; use it with chi's Router.Use, so that the
// route pattern is known once the request has been routed. observe may be
// nil.
func (r *Registry) Middleware(observe Observer) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			start := time.Now()
			sw := NewStatusWriter(w)
			next.ServeHTTP(sw, req)
			route := Unmatched
			// chi's own 404 and 405 answers have no route pattern.
			if rc := chi.RouteContext(req.Context()); rc != nil && len(rc.RoutePatterns) > 0 {
				if p := rc.RoutePattern(); p != "" {
					route = p
				}
			}
			status := sw.Status()
			method := normMethod(req.Method)
			r.reqs.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
			r.lat.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
			if observe != nil {
				observe(route, method, status)
			}
		})
	}
}

// normMethod keeps the method label bounded: a client can send any token.
func normMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// StatusWriter remembers the status a handler answered. Every piece of
// middleware that needs the status (metrics, request logs, the
// orchestrator's DBaaS counters) uses this one.
type StatusWriter struct {
	http.ResponseWriter
	status int
}

// NewStatusWriter wraps w.
func NewStatusWriter(w http.ResponseWriter) *StatusWriter { return &StatusWriter{ResponseWriter: w} }

// Status is the status answered (200 when the handler wrote a body without
// one, or nothing at all).
func (s *StatusWriter) Status() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}

// WriteHeader records the first status.
func (s *StatusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *StatusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush lets streaming handlers through.
func (s *StatusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (s *StatusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Serve serves the registry's /metrics on addr (host:port; port 0 picks
// one) until ctx is done, for a process with no HTTP API of its own (the
// worker). It returns the address to publish: the one listened on, with
// an unspecified host (0.0.0.0, ::) given as 127.0.0.1.
func (r *Registry) Serve(ctx context.Context, addr string, log *slog.Logger) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", r.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	tcp := ln.Addr().(*net.TCPAddr)
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	public := net.JoinHostPort(host, strconv.Itoa(tcp.Port))
	log.Info("metrics listening", "addr", public)
	return public, nil
}
