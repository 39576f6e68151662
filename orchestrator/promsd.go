package orchestrator

import (
	"net/http"
)

// PromTargets is one target group of Prometheus' HTTP service discovery
// (https://prometheus.io/docs/prometheus/latest/http_sd/).
type PromTargets struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// GET /api/v1/prometheus/targets: where Prometheus scrapes the DBaaS. The
// orchestrator itself, at the address this request reached it on (label
// kind=orchestrator), then every live worker that published a metrics
// address (kind=worker, worker=<id>). A worker that is gone is not listed
// at the next refresh. The role is not a target label: it changes on a
// failover, and every series of the promoted worker would start anew
// (rate and increase restart); rideshare_worker_role carries it.
func (o *Orchestrator) handlePromTargets(w http.ResponseWriter, r *http.Request) {
	view, _, _ := o.cluster.snapshot()
	out := make([]PromTargets, 0, len(view)+1)
	out = append(out, PromTargets{Targets: []string{r.Host}, Labels: map[string]string{"kind": "orchestrator"}})
	for _, v := range view {
		if v.Metrics == "" {
			continue // not registered yet, or it serves no metrics
		}
		out = append(out, PromTargets{Targets: []string{v.Metrics},
			Labels: map[string]string{"kind": "worker", "worker": v.ID}})
	}
	writeJSON(w, http.StatusOK, out)
}
