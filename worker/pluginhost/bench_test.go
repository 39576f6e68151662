package pluginhost

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
	"github.com/rideshare-dbaas/rideshare/worker/plugins/rideshare"
)

// BenchmarkExecute runs one read operation (users.exists: one SELECT back
// through the worker's DB) through the in-process twin and through the
// real plugin process, on the same kind of SQLite snapshot. Results are in
// docs/benchmarks.md.
//
//	go test -run '^$' -bench BenchmarkExecute -benchmem ./worker/pluginhost/
func BenchmarkExecute(b *testing.B) {
	h, _ := mustHost(b, Config{Dir: mustPluginDir(b, plug{"rideshare", bins.rideshare, "rideshare-plugin"})})
	ctx := context.Background()
	twin := rideshare.New()
	info, _ := twin.Info(ctx)
	st := mustStore(b, info)
	if _, _, err := writeOp(ctx, st, twin, "users.add", `{"username":"zoe","password":"p"}`); err != nil {
		b.Fatal(err)
	}
	params := json.RawMessage(`{"username":"zoe"}`)
	plug := mustLookup(b, h, "users.exists")
	withID := pluginapi.WithRequestID(ctx, "t-0123456789abcdef0123456789abcdef")
	for _, bc := range []struct {
		name string
		h    pluginapi.Handler
		ctx  context.Context
	}{
		{"in-process", twin, ctx},
		{"plugin", plug, ctx},
		{"plugin with request id", plug, withID}, // the id as gRPC metadata
	} {
		b.Run(bc.name, func(b *testing.B) {
			db, done, err := st.Reader(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer done()
			b.ReportAllocs()
			for b.Loop() {
				res, err := bc.h.Execute(bc.ctx, "users.exists", params, db)
				if err != nil || string(res) != `{"exists":true}` {
					b.Fatalf("%s, %v", res, err)
				}
			}
		})
	}
}

// BenchmarkCallMetrics is what the metrics add to every plugin call: the
// clock read, one map read, a counter and a histogram.
//
//	go test -run '^$' -bench BenchmarkCallMetrics -benchmem ./worker/pluginhost/
func BenchmarkCallMetrics(b *testing.B) {
	m := newHostMetrics(nil, &Host{})
	ops := m.opMetricsFor("rideshare", pluginapi.Info{Ops: []pluginapi.Op{{Name: "users.exists", Kind: pluginapi.Read}}}, methodExecute)
	b.ReportAllocs()
	for b.Loop() {
		observe(ops, "users.exists", time.Now(), callOK)
	}
}
