package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rideshare-dbaas/rideshare/internal/metrics"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
)

// The operators' side of the API: what the cluster page and the rideshare
// CLI read (cluster, events, scale, plugins, traefik), the scaling
// endpoint, /metrics and the page itself. Admin routes go through o.guard.

// opsRoutes adds the operators' routes to r.
func (o *Orchestrator) opsRoutes(r chi.Router) {
	r.Get("/api/v1/cluster", o.handleCluster)
	r.Get("/api/v1/events", o.handleEvents)
	r.Get("/api/v1/plugins", o.handlePlugins)
	r.Get("/api/v1/scale", o.handleScaleGet)
	r.With(o.guard.Wrap).Put("/api/v1/scale", o.handleScalePin)
	r.With(o.guard.Wrap).Delete("/api/v1/scale", o.handleScaleRelease)
	r.Get("/api/v1/traefik/http/{kind}", o.handleTraefik)
	r.Get("/metrics", o.met.Handler().ServeHTTP)
	r.Get("/api/v1/prometheus/targets", o.handlePromTargets)
	o.uiRoutes(r)
}

// withLag fills each worker's lag behind the master.
func withLag(view []WorkerView, masterID string) {
	var head uint64
	for _, v := range view {
		if v.ID == masterID {
			head = v.Applied
		}
	}
	for i := range view {
		if view[i].Applied < head {
			view[i].Lag = head - view[i].Applied
		} else {
			view[i].Lag = 0
		}
	}
}

// Cluster is everything the cluster page and `rideshare status` show, in
// one answer (GET /api/v1/cluster).
type Cluster struct {
	Time       time.Time    `json:"time"`
	Dev        bool         `json:"dev"`         // dev mode
	AdminOpen  bool         `json:"admin_open"`  // admin endpoints answer without a token
	Ready      bool         `json:"ready"`       // a master is registered and ready
	Master     string       `json:"master"`      // its id ("" when none)
	RabbitMQ   bool         `json:"rabbitmq"`    // connected to RabbitMQ
	Runtime    string       `json:"runtime"`     // how workers run
	Workers    []WorkerView `json:"workers"`     // by pid
	Autoscaler ScaleState   `json:"autoscaler"`  // window, reads, decision
	Events     []Event      `json:"events"`      // the latest, oldest first
	TraefikAPI bool         `json:"traefik_api"` // the routing view is available
}

// runtimeName names the runtime for operators.
func (o *Orchestrator) runtimeName() string {
	if n, ok := o.rt.(interface{ Name() string }); ok {
		return n.Name()
	}
	return fmt.Sprintf("%T", o.rt)
}

func (o *Orchestrator) clusterState() Cluster {
	view, master, ready := o.cluster.snapshot()
	ev := o.events.since(0)
	if len(ev) > 50 {
		ev = ev[len(ev)-50:]
	}
	return Cluster{
		Time: time.Now(), Dev: o.opts.Dev, AdminOpen: o.guard.Open(), Ready: ready, Master: master,
		RabbitMQ: o.caller.Connected(), Runtime: o.runtimeName(), Workers: view,
		Autoscaler: o.scaler.state(), Events: ev, TraefikAPI: o.opts.TraefikAPI != "",
	}
}

func (o *Orchestrator) handleCluster(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, o.clusterState())
}

// GET /api/v1/events?after=SEQ: the events after SEQ (default all kept).
func (o *Orchestrator) handleEvents(w http.ResponseWriter, r *http.Request) {
	var after uint64
	if s := r.URL.Query().Get("after"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, `"after" must be a sequence number (a non-negative integer)`)
			return
		}
		after = n
	}
	writeJSON(w, http.StatusOK, o.events.since(after))
}

// LoadedPlugin is one plugin version and the workers that run it.
type LoadedPlugin struct {
	Name    string   `json:"name"`
	Version string   `json:"version"`
	SHA256  string   `json:"sha256"`
	Workers []string `json:"workers"`
}

func (o *Orchestrator) handlePlugins(w http.ResponseWriter, _ *http.Request) {
	view, _, _ := o.cluster.snapshot()
	byKey := map[wire.PluginInfo]*LoadedPlugin{}
	for _, v := range view {
		for _, p := range v.Plugins {
			lp := byKey[p]
			if lp == nil {
				lp = &LoadedPlugin{Name: p.Name, Version: p.Version, SHA256: p.SHA256}
				byKey[p] = lp
			}
			lp.Workers = append(lp.Workers, v.ID)
		}
	}
	out := make([]LoadedPlugin, 0, len(byKey))
	for _, lp := range byKey {
		sort.Strings(lp.Workers)
		out = append(out, *lp)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Version+out[i].SHA256 < out[j].Version+out[j].SHA256
	})
	writeJSON(w, http.StatusOK, out)
}

func (o *Orchestrator) handleScaleGet(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, o.scaler.state())
}

type scaleBody struct {
	Slaves *int `json:"slaves"`
}

// PUT /api/v1/scale {"slaves": n}: pin the slave count.
func (o *Orchestrator) handleScalePin(w http.ResponseWriter, r *http.Request) {
	var b scaleBody
	if !decodeBody(w, r, 4096, &b) {
		return
	}
	if b.Slaves == nil {
		writeError(w, http.StatusBadRequest, `"slaves" is required (DELETE /api/v1/scale hands the count back to the autoscaler)`)
		return
	}
	d, err := o.scaler.pin(*b.Slaves)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	o.log.Info("slave count pinned by an operator", "slaves", d.Slaves)
	writeJSON(w, http.StatusOK, o.scaler.state())
}

// DELETE /api/v1/scale: hand the count back to the autoscaler.
func (o *Orchestrator) handleScaleRelease(w http.ResponseWriter, _ *http.Request) {
	d := o.scaler.release()
	o.log.Info("slave count handed back to the autoscaler", "slaves", d.Slaves)
	writeJSON(w, http.StatusOK, o.scaler.state())
}

// traefikClient has its own deadline: the page polls, and a Traefik that
// hangs must not pile up requests.
var traefikClient = &http.Client{Timeout: 3 * time.Second}

// GET /api/v1/traefik/http/{routers|services}: Traefik's JSON API, proxied
// so the page stays same-origin (and Traefik's API stays on loopback).
func (o *Orchestrator) handleTraefik(w http.ResponseWriter, r *http.Request) {
	kind := chi.URLParam(r, "kind")
	if kind != "routers" && kind != "services" {
		writeError(w, http.StatusNotFound, "only routers and services are proxied")
		return
	}
	if o.opts.TraefikAPI == "" {
		writeError(w, http.StatusNotFound, "no Traefik API configured (start the orchestrator with --traefik-api)")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.opts.TraefikAPI+"/api/http/"+kind, nil)
	if err != nil {
		writeError(w, http.StatusBadGateway, "bad Traefik API URL: "+err.Error())
		return
	}
	resp, err := traefikClient.Do(req)
	if err != nil {
		writeError(w, http.StatusBadGateway, "Traefik's API does not answer: "+err.Error())
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err == nil && resp.StatusCode == http.StatusOK && !json.Valid(body) {
		err = errors.New("not JSON")
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		writeError(w, http.StatusBadGateway, fmt.Sprintf("Traefik's API answered %d (%v)", resp.StatusCode, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// countDB wraps a DBaaS handler to count its outcome.
func (o *Orchestrator) countDB(kind string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sw := metrics.NewStatusWriter(w)
		h(sw, r)
		o.obs.m.requests.WithLabelValues(kind, outcome(sw.Status())).Inc()
	}
}
