package pluginapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

// idHandler answers with the request id its handler calls see: Execute's
// result, and each plan's constant result "<ctx id>/<call id>".
type idHandler struct{}

func (idHandler) Info(context.Context) (pluginapi.Info, error) { return pluginapi.Info{}, nil }

func (idHandler) Execute(ctx context.Context, op string, params json.RawMessage, db pluginapi.DB) (json.RawMessage, error) {
	return json.Marshal(pluginapi.RequestID(ctx))
}

func (idHandler) Plan(ctx context.Context, calls []pluginapi.Call) []pluginapi.PlanResult {
	out := make([]pluginapi.PlanResult, len(calls))
	for i, c := range calls {
		res, _ := json.Marshal(pluginapi.RequestID(ctx) + "/" + c.RequestID)
		out[i].Plan = &pluginapi.Plan{Result: res}
	}
	return out
}

// The worker's request id reaches the handler's context through the
// plugin boundary (gRPC metadata), per call on Plan, as it does in
// process.
func TestGRPCAdapter_RequestIDCrosses(t *testing.T) {
	remote := mustConn(t, idHandler{})
	for _, h := range []struct {
		name string
		h    interface {
			pluginapi.Handler
			pluginapi.Planner
		}
	}{{"plugin", remote}, {"in process", idHandler{}}} {
		t.Run(h.name, func(t *testing.T) {
			for _, id := range []string{"t-exec", ""} {
				res, err := h.h.Execute(pluginapi.WithRequestID(context.Background(), id), "x", nil, &recDB{})
				if err != nil {
					t.Fatal(err)
				}
				if want, _ := json.Marshal(id); string(res) != string(want) {
					t.Errorf("Execute with id %q: the handler saw %s", id, res)
				}
			}
			calls := []pluginapi.Call{{Op: "a", RequestID: "t-1"}, {Op: "b"}, {Op: "c", RequestID: "t-3"}}
			res := h.h.Plan(context.Background(), calls)
			var got []string
			for _, r := range res {
				if r.Err != nil {
					t.Fatal(r.Err)
				}
				var s string
				_ = json.Unmarshal(r.Plan.Result, &s)
				got = append(got, s)
			}
			want := []string{"t-1/t-1", "/", "t-3/t-3"}
			if h.name == "in process" { // one context for the whole request
				want = []string{"/t-1", "/", "/t-3"}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("plans saw %q, want %q", got, want)
			}
		})
	}
}
