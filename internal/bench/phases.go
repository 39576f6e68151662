package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/loadgen"
)

// mix runs the public API mix (internal/loadgen, its default mix) through
// Traefik and straight to the services, alternating, each run on emptied
// tables (-clear), on the 1-slave stack.
func (b *Bench) mix(ctx context.Context, e *env) (MixRow, error) {
	o := b.opts
	procs, err := e.one.Procs(ctx)
	if err != nil {
		return MixRow{}, err
	}
	procs = append(append(procs, e.servers...), e.self)
	row := MixRow{Clients: o.MixClients}
	paths := []struct {
		label string
		opts  loadgen.Options
	}{
		{"Traefik", loadgen.Options{URL: e.one.LBURL}},
		{"direct", loadgen.Options{UsersURL: e.one.UsersURL, RidesURL: e.one.RidesURL}},
	}
	for round := range o.Rounds {
		order := []int{0, 1}
		if round%2 == 1 {
			order = []int{1, 0}
		}
		ms := make([]MixMeasure, 2)
		for _, i := range order {
			lo := paths[i].opts
			lo.Clients, lo.Duration, lo.Timeout, lo.Clear = o.MixClients, o.MixDuration, o.Timeout, true
			lo.Seed = uint64(round + 1) // the same call sequence on both paths
			var rep *loadgen.Report
			var u Usage
			var env Env
			// With MinRequests (the smoke), a run that a stall of the
			// machine left empty is run again, up to 3 times.
			for try := 0; try < 3; try++ {
				g, err := loadgen.New(lo)
				if err != nil {
					return MixRow{}, err
				}
				smp := NewSampler(procs, 250*time.Millisecond)
				smp.Begin()
				stopWatch := e.prober.Watch(ctx)
				rep, err = g.Run(ctx)
				env = stopWatch()
				smp.End()
				if err != nil {
					return MixRow{}, fmt.Errorf("public API mix %s: %w", paths[i].label, err)
				}
				if u, err = smp.Usage(); err != nil {
					return MixRow{}, err
				}
				if o.MinRequests == 0 || rep.Total.Requests-rep.Total.Errors >= o.MinRequests {
					break
				}
			}
			t := rep.Total
			ms[i] = MixMeasure{Requests: t.Requests, Throughput: t.Throughput, Latency: t.Latency,
				Errors: t.Errors, UnexpectedErrors: t.UnexpectedErrors, Usage: u, Env: env}
			b.logf("%-44s %11s: %8.1f req/s  p50 %7.2f ms  p99 %7.2f ms  errors %d (unexpected %d)",
				fmt.Sprintf("round %d/%d: public API mix %s", round+1, o.Rounds, paths[i].label), nClients(o.MixClients),
				t.Throughput, t.Latency.P50, t.Latency.P99, t.Errors, t.UnexpectedErrors)
		}
		row.TraefikRuns = append(row.TraefikRuns, ms[0])
		row.DirectRuns = append(row.DirectRuns, ms[1])
	}
	return row, nil
}

// profiles takes CPU profiles of the orchestrator, the master and one
// slave of the 1-slave stack under three of our loads.
func (b *Bench) profiles(ctx context.Context, e *env) ([]ProfileReading, error) {
	o := b.opts
	if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
		return nil, err
	}
	master, slave, err := e.one.WorkerPprof(ctx)
	if err != nil {
		return nil, err
	}
	procs, err := e.dbaasProcs(ctx, e.one)
	if err != nil {
		return nil, err
	}
	targets := []struct{ name, addr string }{{"orchestrator", e.one.PprofAddr}, {"master", master}, {"slave", slave}}
	loads := []struct {
		load    string
		clients int
		op      Op
	}{
		{LoadWrite, 1, func(ctx context.Context, cl int, seq int64) error {
			return e.ours.AddUser(ctx, e.unique("p1", cl, seq))
		}},
		{LoadWrite, o.CompareClients, func(ctx context.Context, cl int, seq int64) error {
			return e.ours.AddUser(ctx, e.unique("pn", cl, seq))
		}},
		{LoadRead, o.CompareClients, func(ctx context.Context, cl int, seq int64) error {
			return e.ours.UserExists(ctx, e.pick(cl, seq))
		}},
	}
	var out []ProfileReading
	for _, l := range loads {
		pr := ProfileReading{Load: l.load, Clients: l.clients, Files: map[string]string{}, Top: map[string]PprofTopTable{},
			Breakdown: map[string]Breakdown{}}
		smp := NewSampler(procs, 250*time.Millisecond)
		var stopWatch func() Env
		var wg sync.WaitGroup
		errs := make([]error, len(targets))
		spec := Spec{Clients: l.clients, Warmup: o.Warmup, Duration: time.Duration(o.ProfileSeconds)*time.Second + 500*time.Millisecond,
			MinRequests: o.MinRequests,
			OnMeasure: func(begin bool) {
				if !begin {
					smp.End()
					return
				}
				smp.Begin()
				stopWatch = e.prober.Watch(ctx)
				for i, t := range targets {
					path := filepath.Join(o.ProfileDir, fmt.Sprintf("%s-c%d-%s.pprof", l.load, l.clients, t.name))
					pr.Files[t.name] = path
					wg.Go(func() { errs[i] = CPUProfile(ctx, t.addr, o.ProfileSeconds, path) })
				}
			}}
		res, err := e.run(ctx, spec, l.op)
		wg.Wait()
		if stopWatch != nil {
			pr.Env = stopWatch()
		}
		if err != nil {
			return nil, err
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		smp.End()
		if pr.Usage, err = smp.Usage(); err != nil {
			return nil, err
		}
		pr.Result = res
		if l.load == LoadWrite {
			bs, err := e.one.Batches(ctx, pr.Usage.Begin, pr.Usage.End)
			if err != nil {
				return nil, err
			}
			pr.Batches = &bs
		}
		for _, t := range targets {
			top, err := PprofTop(ctx, pr.Files[t.name], 30)
			if err != nil {
				return nil, err
			}
			pr.Top[t.name] = ParsePprofTop(top)
			if pr.Breakdown[t.name], err = ProfileBreakdown(ctx, pr.Files[t.name]); err != nil {
				return nil, err
			}
			if err := os.WriteFile(strings.TrimSuffix(pr.Files[t.name], ".pprof")+".top.txt", []byte(top), 0o644); err != nil {
				return nil, err
			}
		}
		b.logf("profiled %s, %s: %.1f req/s; profiles in %s", l.load, nClients(l.clients), res.Throughput, o.ProfileDir)
		out = append(out, pr)
	}
	return out, nil
}
