// Package bench is the side-by-side benchmark of `make bench`: our DBaaS
// (a stack like `make run`'s, 1 master + 1 slave) against one rqlite node,
// in one run, with the same HTTP load tool, the same number of clients and
// alternating rounds so that the machine's noise hits both sides. It also
// measures writes with many slaves against one, the public API mix
// through Traefik and direct (internal/loadgen), the CPU and RSS of every
// process kind under load, the fsync latency of the disk, and takes CPU
// profiles of the orchestrator and the workers. The report is one table
// with ratios (ours ÷ rqlite) and the targets of issue 11, in Markdown
// (docs/benchmarks.md) and JSON.
//
// Options → New → Run(ctx) → Report; cmd/bench is the command.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/loadgen"
)

// Options configure a run. Zero values take the defaults of Defaults.
type Options struct {
	Repo    string // the repository: scripts/run.sh and bin/
	WorkDir string // state of the stacks and of rqlite, profiles (default <Repo>/.bench)
	Rqlited string // rqlite's binary (default <Repo>/bin/rqlited)
	// Name prefixes the stacks' names (NAME-1, NAME-N): ZooKeeper roots
	// and queue prefixes on the shared servers.
	Name      string
	AMQPURL   string   // RabbitMQ the stacks use (default amqp://127.0.0.1:5672/)
	ZKServers []string // ZooKeeper the stacks use (default 127.0.0.1:2181)
	// PortBase: the 1-slave stack uses PortBase.., the N-slave stack
	// PortBase+100.., rqlite PortBase+400 and +401.
	PortBase int

	Clients        []int         // client counts of the side-by-side table
	CompareClients int           // client count of the slaves comparison (and the targets)
	Duration       time.Duration // measured time of one load
	Warmup         time.Duration // unmeasured time before it
	Rounds         int           // alternating rounds; results are ranges over them
	Slaves         int           // slave count compared with 1
	MixClients     int           // public API mix: clients
	MixDuration    time.Duration // public API mix: measured time of one run
	Seeds          int           // users created before the reads (read targets)
	Probes         int           // round trips timed per step (disk, ZooKeeper, RabbitMQ)
	Timeout        time.Duration // one request
	// MinRequests extends each load until that many calls succeeded
	// (Spec.MinRequests; the smoke's 1: a stall must not empty a load).
	MinRequests int64
	Idle        time.Duration // the shared servers' idle background is sampled this long before each round

	// ProfileDir: when set, CPU profiles of the orchestrator, the master
	// and a slave are taken under three loads (1-client writes, 16-client
	// writes, 16-client reads; ProfileSeconds each) after the rounds.
	ProfileDir     string
	ProfileSeconds int

	// Phases to run (nil: all): PhaseGrid, PhaseSlaves, PhaseProfiles
	// (with ProfileDir), PhaseMix. A report of some phases has only their
	// tables and targets.
	Phases []string

	// Progress gets a line per load (nil: discarded).
	Progress io.Writer
}

// The phases of a run, in the order they run.
const (
	PhaseGrid     = "grid"     // the side-by-side table
	PhaseSlaves   = "slaves"   // writes with Slaves slaves vs 1
	PhaseProfiles = "profiles" // CPU profiles (needs ProfileDir)
	PhaseMix      = "mix"      // the public API mix, Traefik vs direct
)

// AllPhases lists every phase.
var AllPhases = []string{PhaseGrid, PhaseSlaves, PhaseProfiles, PhaseMix}

func (o Options) runs(phase string) bool {
	return len(o.Phases) == 0 || slices.Contains(o.Phases, phase)
}

// Defaults are the options of `make bench`: a full run takes about 6 min.
func Defaults() Options {
	return Options{
		Name:           "bench",
		PortBase:       20000, // below Linux's ephemeral range (32768-60999): no outgoing connection can hold these ports
		Clients:        []int{1, 16, 64},
		CompareClients: 16,
		Duration:       5 * time.Second,
		Warmup:         time.Second,
		Rounds:         2,
		Slaves:         8,
		MixClients:     16,
		MixDuration:    10 * time.Second,
		Seeds:          256,
		Probes:         200,
		Timeout:        10 * time.Second,
		Idle:           2 * time.Second,
		ProfileSeconds: 8,
	}
}

// Smoke are the options of the harness's smoke in `make test`: every
// phase, tiny loads (it checks the harness, never the speed).
func Smoke() Options {
	o := Defaults()
	o.Name = "bench-smoke"
	o.PortBase = 19000
	o.Clients = []int{1, 4}
	o.CompareClients = 4
	o.Duration = 500 * time.Millisecond
	o.Warmup = 200 * time.Millisecond
	o.Rounds = 1
	o.Slaves = 2
	o.MixClients = 2
	o.MixDuration = time.Second
	o.Seeds = 16
	o.Probes = 20
	o.Idle = 500 * time.Millisecond
	o.MinRequests = 1
	o.ProfileSeconds = 1
	return o
}

// Bench runs the benchmark; make one with New.
type Bench struct {
	opts     Options
	progress io.Writer
	start    time.Time
}

// New checks the options.
func New(opts Options) (*Bench, error) {
	d := Defaults()
	if opts.Repo == "" {
		return nil, errors.New("bench: Repo is required")
	}
	if opts.WorkDir == "" {
		opts.WorkDir = filepath.Join(opts.Repo, ".bench")
	}
	if opts.Rqlited == "" {
		opts.Rqlited = filepath.Join(opts.Repo, "bin", "rqlited")
	}
	orDefault(&opts.Name, d.Name)
	orDefault(&opts.PortBase, d.PortBase)
	if len(opts.Clients) == 0 {
		opts.Clients = d.Clients
	}
	orDefault(&opts.CompareClients, d.CompareClients)
	orDefault(&opts.Duration, d.Duration)
	orDefault(&opts.Rounds, d.Rounds)
	orDefault(&opts.Slaves, d.Slaves)
	orDefault(&opts.MixClients, d.MixClients)
	orDefault(&opts.MixDuration, d.MixDuration)
	orDefault(&opts.Seeds, d.Seeds)
	orDefault(&opts.Idle, d.Idle)
	orDefault(&opts.Probes, d.Probes)
	orDefault(&opts.AMQPURL, "amqp://127.0.0.1:5672/")
	if len(opts.ZKServers) == 0 {
		opts.ZKServers = []string{"127.0.0.1:2181"}
	}
	orDefault(&opts.Timeout, d.Timeout)
	orDefault(&opts.ProfileSeconds, d.ProfileSeconds)
	for _, c := range append([]int{opts.CompareClients, opts.MixClients}, opts.Clients...) {
		if c < 1 || c > loadgen.MaxClients {
			return nil, fmt.Errorf("bench: clients must be 1..%d, got %d", loadgen.MaxClients, c)
		}
	}
	switch {
	case opts.Duration < 0 || opts.Warmup < 0 || opts.MixDuration < 0:
		return nil, errors.New("bench: durations must be positive")
	case opts.Rounds < 1 || opts.Rounds > 20:
		return nil, fmt.Errorf("bench: rounds must be 1..20, got %d", opts.Rounds)
	case opts.Slaves < 2 || opts.Slaves > 16:
		return nil, fmt.Errorf("bench: slaves must be 2..16, got %d", opts.Slaves)
	case opts.PortBase < 1024 || opts.PortBase > 65000:
		return nil, fmt.Errorf("bench: port base must be 1024..65000, got %d", opts.PortBase)
	case slices.ContainsFunc(opts.Phases, func(p string) bool { return !slices.Contains(AllPhases, p) }):
		return nil, fmt.Errorf("bench: phases must be among %v, got %v", AllPhases, opts.Phases)
	case opts.Seeds < 1:
		return nil, fmt.Errorf("bench: seeds must be at least 1, got %d", opts.Seeds)
	}
	p := opts.Progress
	if p == nil {
		p = io.Discard
	}
	return &Bench{opts: opts, progress: p, start: time.Now()}, nil
}

// orDefault sets *v to def when *v is its zero value.
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func (b *Bench) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, "bench: %5.0fs "+format+"\n", append([]any{time.Since(b.start).Seconds()}, args...)...)
}

// env is what the phases share.
type env struct {
	one     *Stack // 1 master + 1 slave
	rq      *RqliteNode
	servers []Proc
	self    Proc
	ours    DBaaS
	theirs  Rqlite
	seeds   []string
	runID   string
	// prober times the fixed steps, alone and while each load runs.
	prober *Prober
	// load numbers every load of the run, so that names made by unique
	// differ between loads (and rounds) that share a tag.
	load atomic.Int64
}

// Run runs every phase and returns the report. The stacks and rqlite are
// stopped before it returns, whatever happened.
func (b *Bench) Run(ctx context.Context) (*Report, error) {
	o := b.opts
	b.start = time.Now()
	rep := &Report{Started: b.start.UTC(), Options: o.summary()}
	rep.Machine = DescribeMachine(ctx, o.Repo)
	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil {
		return nil, err
	}
	e := &env{runID: strconv.FormatInt(time.Now().UnixNano(), 36), self: Proc{os.Getpid(), KindLoadTool}}
	client := NewHTTPClient(max(64, maxInt(o.Clients), o.CompareClients), o.Timeout)

	// rqlite and the 1-slave stack start together.
	b.logf("starting rqlite and stack %s-1 (1 master + 1 slave)...", o.Name)
	var wg sync.WaitGroup
	var errRq, errStack error
	wg.Go(func() {
		e.rq, errRq = StartRqlite(ctx, RqliteOptions{Binary: o.Rqlited, Dir: filepath.Join(o.WorkDir, "rqlite"), HTTPPort: o.PortBase + 400})
	})
	wg.Go(func() {
		e.one, errStack = StartStack(ctx, StackOptions{Repo: o.Repo, Name: o.Name + "-1", Dir: filepath.Join(o.WorkDir, "stack-1"),
			PortBase: o.PortBase, Slaves: 1, Pprof: o.ProfileDir != ""})
	})
	wg.Wait()
	defer func() {
		b.logf("stopping rqlite and stack %s-1", o.Name)
		e.rq.Stop()
		e.one.Stop()
	}()
	if err := errors.Join(errRq, errStack); err != nil {
		return nil, err
	}
	e.ours = DBaaS{URL: e.one.OrchURL, Client: client}
	e.theirs = Rqlite{URL: e.rq.URL, Client: client}
	e.servers = ServerProcs(portOf(o.AMQPURL, "5672"), portOf(o.ZKServers[0], "2181"))

	// The probes use the stack's own broker user (scripts/stack.sh makes
	// one per stack and keeps its URL beside the stack's state): the guest
	// account is not used, and on a fresh machine does not exist.
	amqpURL := o.AMQPURL
	if b, err := os.ReadFile(filepath.Join(e.one.Dir(), "amqp.url")); err == nil {
		amqpURL = strings.TrimSpace(string(b))
	}
	var err error
	if e.prober, err = NewProber(ctx, e.one.Dir(), amqpURL, o.ZKServers, o.Name); err != nil {
		return nil, err
	}
	defer e.prober.Close()
	if rep.RoundTrips, rep.Disk, err = e.prober.RoundTrips(ctx, o.Probes); err != nil {
		return nil, err
	}
	b.logf("one at a time: 4 KiB write+fdatasync p50 %.2f ms; ZooKeeper sync+get p50 %.2f ms; RabbitMQ publish+confirm p50 %.2f ms (quorum), %.2f ms (transient)",
		rep.Disk.Fdatasync.P50, rep.RoundTrips.ZKSyncGet.P50, rep.RoundTrips.QuorumConfirm.P50, rep.RoundTrips.TransientConfirm.P50)
	if err := b.seed(ctx, e); err != nil {
		return nil, err
	}
	if idle, err := b.idle(ctx, e.servers, o.Idle); err != nil {
		return nil, err
	} else {
		rep.Idle = append(rep.Idle, idle)
	}
	if o.runs(PhaseGrid) {
		var idles []Usage
		if rep.Rows, idles, err = b.grid(ctx, e); err != nil {
			return nil, err
		}
		rep.Idle = append(rep.Idle, idles...)
	}
	if o.runs(PhaseSlaves) {
		if rep.Slaves, err = b.slaves(ctx, e, client); err != nil {
			return nil, err
		}
	}
	if o.ProfileDir != "" && o.runs(PhaseProfiles) {
		if rep.Profiles, err = b.profiles(ctx, e); err != nil {
			return nil, err
		}
	}
	// Last: each mix run empties the tables (the seeded users too).
	if o.runs(PhaseMix) {
		if rep.Mix, err = b.mix(ctx, e); err != nil {
			return nil, err
		}
	}
	rep.Finished = time.Now().UTC()
	rep.Targets = Targets(rep, o.CompareClients)
	return rep, nil
}

// portOf is the port of a URL or host:port (def when it names none).
func portOf(addr, def string) string {
	if u, err := url.Parse(addr); err == nil && u.Port() != "" {
		return u.Port()
	}
	if _, p, err := net.SplitHostPort(addr); err == nil && p != "" {
		return p
	}
	return def
}

func maxInt(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// seed creates the users the reads look up, on both sides, 16 at a time.
func (b *Bench) seed(ctx context.Context, e *env) error {
	o := b.opts
	if err := e.theirs.Schema(ctx); err != nil {
		return fmt.Errorf("rqlite schema: %w", err)
	}
	e.seeds = make([]string, o.Seeds)
	for i := range e.seeds {
		e.seeds[i] = fmt.Sprintf("seed-%s-%d", e.runID, i)
	}
	b.logf("seeding %d users on each side...", o.Seeds)
	sem := make(chan struct{}, 16)
	errs := make([]error, len(e.seeds))
	var wg sync.WaitGroup
	for i, name := range e.seeds {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = errors.Join(e.ours.AddUser(ctx, name), e.theirs.AddUser(ctx, name))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("seeding: %w", err)
	}
	return nil
}

// A side of a comparison: a name, the operation and the processes whose
// CPU counts.
type side struct {
	label string
	op    Op
	procs []Proc
	// master, for our writes, is the stack whose master's batches are read.
	master *Stack
}

// measure runs one load and samples the processes over its measured phase.
func (b *Bench) measure(ctx context.Context, e *env, what string, clients int, s side) (Measure, error) {
	o := b.opts
	smp := NewSampler(s.procs, 250*time.Millisecond)
	var stopWatch func() Env
	spec := Spec{Clients: clients, Warmup: o.Warmup, Duration: o.Duration, MinRequests: o.MinRequests, OnMeasure: func(begin bool) {
		if begin {
			smp.Begin()
			stopWatch = e.prober.Watch(ctx)
		} else {
			smp.End()
		}
	}}
	res, err := e.run(ctx, spec, s.op)
	if err != nil {
		return Measure{}, err
	}
	smp.End() // in case the window's end fired before the last call returned
	u, err := smp.Usage()
	if err != nil {
		return Measure{}, err
	}
	m := Measure{Result: res, Usage: u}
	if stopWatch != nil {
		m.Env = stopWatch()
	}
	if s.master != nil {
		bs, err := s.master.Batches(ctx, u.Begin, u.End)
		if err != nil {
			return Measure{}, err
		}
		m.Batches = &bs
	}
	b.logf("%-44s %11s: %8.1f req/s  p50 %7.2f ms  p99 %7.2f ms  errors %d%s",
		what+" "+s.label, nClients(clients), res.Throughput, res.Latency.P50, res.Latency.P99, res.Errors, firstErr(res))
	return m, nil
}

func firstErr(r Result) string {
	if r.FirstError == "" {
		return ""
	}
	return " (first: " + r.FirstError + ")"
}

// idle samples procs for d while the bench sends nothing.
func (b *Bench) idle(ctx context.Context, procs []Proc, d time.Duration) (Usage, error) {
	smp := NewSampler(procs, 250*time.Millisecond)
	smp.Begin()
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	smp.End()
	if err := ctx.Err(); err != nil {
		return Usage{}, err
	}
	u, err := smp.Usage()
	if err == nil {
		b.logf("idle background over %s: RabbitMQ %.0f ms CPU/s, ZooKeeper %.0f ms CPU/s", d,
			perSecond(u, KindRabbitMQ), perSecond(u, KindZooKeeper))
	}
	return u, err
}

func perSecond(u Usage, kind string) float64 {
	if u.Window <= 0 {
		return 0
	}
	return float64(u.Of(kind).CPU) / float64(time.Millisecond) / u.Window.Seconds()
}

// dbaasProcs are the processes a DBaaS load reaches: the orchestrator,
// the workers and their plugins, RabbitMQ, ZooKeeper, and the load tool
// (the services and Traefik idle then).
func (e *env) dbaasProcs(ctx context.Context, s *Stack) ([]Proc, error) {
	all, err := s.Procs(ctx)
	if err != nil {
		return nil, err
	}
	var out []Proc
	for _, p := range all {
		switch p.Kind {
		case KindUsers, KindRides, KindTraefik:
		default:
			out = append(out, p)
		}
	}
	return append(append(out, e.servers...), e.self), nil
}

// unique makes a username no other call of the run uses.
func (e *env) unique(tag string, client int, seq int64) string {
	return tag + "-" + e.runID + "-" + strconv.FormatInt(e.load.Load(), 10) + "-" + strconv.Itoa(client) + "-" + strconv.FormatInt(seq, 10)
}

// run is Run for one load of the bench: a new load number first.
func (e *env) run(ctx context.Context, spec Spec, op Op) (Result, error) {
	e.load.Add(1)
	return Run(ctx, spec, op)
}

// pick is a seeded user, drawn per client and call.
func (e *env) pick(client int, seq int64) string {
	r := rand.New(rand.NewPCG(uint64(client), uint64(seq)))
	return e.seeds[r.IntN(len(e.seeds))]
}

// grid is the side-by-side table: every client count, writes then reads,
// each load on every side, the order of the sides reversed every round.
func (b *Bench) grid(ctx context.Context, e *env) ([]Row, []Usage, error) {
	o := b.opts
	ourProcs, err := e.dbaasProcs(ctx, e.one)
	if err != nil {
		return nil, nil, err
	}
	rqProcs := append([]Proc{{e.rq.PID(), KindRqlite}}, e.self)

	type load struct {
		row   *Row
		sides []side
	}
	var rows []*Row
	var loads []load
	var idles []Usage
	for _, c := range o.Clients {
		tag := "w" + strconv.Itoa(c)
		r := &Row{Load: LoadWrite, Clients: c, Ours: "db/write users.add", Theirs: "/db/execute INSERT"}
		rows = append(rows, r)
		loads = append(loads, load{r, []side{
			{"ours", func(ctx context.Context, cl int, seq int64) error {
				return e.ours.AddUser(ctx, e.unique(tag+"o", cl, seq))
			}, ourProcs, e.one},
			{"rqlite", func(ctx context.Context, cl int, seq int64) error {
				return e.theirs.AddUser(ctx, e.unique(tag+"r", cl, seq))
			}, rqProcs, nil},
		}})
	}
	for _, c := range o.Clients {
		weak := &Row{Load: LoadRead, Clients: c, Ours: "db/read users.exists (strong)", Theirs: "/db/query SELECT, level=weak"}
		lin := &Row{Load: LoadRead, Clients: c, Ours: weak.Ours, Theirs: "/db/query SELECT, level=linearizable"}
		rows = append(rows, weak, lin)
		loads = append(loads, load{weak, []side{
			{"ours", func(ctx context.Context, cl int, seq int64) error {
				return e.ours.UserExists(ctx, e.pick(cl, seq))
			}, ourProcs, nil},
			{"rqlite weak", func(ctx context.Context, cl int, seq int64) error {
				return e.theirs.UserExists(ctx, LevelWeak, e.pick(cl, seq))
			}, rqProcs, nil},
			{"rqlite linearizable", func(ctx context.Context, cl int, seq int64) error {
				return e.theirs.UserExists(ctx, LevelLinearizable, e.pick(cl, seq))
			}, rqProcs, nil},
		}})
	}
	for round := range o.Rounds {
		// The shared servers' background, with every stack idle: the CPU
		// table takes it off their columns.
		idle, err := b.idle(ctx, e.servers, o.Idle)
		if err != nil {
			return nil, nil, err
		}
		idles = append(idles, idle)
		for _, l := range loads {
			order := []int{0, 1, 2}[:len(l.sides)]
			if round%2 == 1 {
				for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
					order[i], order[j] = order[j], order[i]
				}
			}
			ms := make([]Measure, len(l.sides))
			for _, i := range order {
				m, err := b.measure(ctx, e, fmt.Sprintf("round %d/%d: %s", round+1, o.Rounds, l.row.Load), l.row.Clients, l.sides[i])
				if err != nil {
					return nil, nil, err
				}
				ms[i] = m
			}
			// The read load has one "ours" for two rows.
			l.row.OursRuns = append(l.row.OursRuns, ms[0])
			l.row.TheirsRuns = append(l.row.TheirsRuns, ms[1])
			if len(ms) == 3 {
				lin := rows[indexOf(rows, l.row)+1]
				lin.OursRuns = append(lin.OursRuns, ms[0])
				lin.TheirsRuns = append(lin.TheirsRuns, ms[2])
			}
		}
	}
	out := make([]Row, len(rows))
	for i, r := range rows {
		out[i] = *r
	}
	return out, idles, nil
}

func indexOf(rows []*Row, r *Row) int {
	for i, x := range rows {
		if x == r {
			return i
		}
	}
	panic("bench: row not found")
}

// slaves compares writes on the 1-slave stack with writes on a stack
// pinned to Slaves slaves, started for this phase only.
func (b *Bench) slaves(ctx context.Context, e *env, client *http.Client) (SlavesRow, error) {
	o := b.opts
	b.logf("starting stack %s-%d (1 master + %d slaves)...", o.Name, o.Slaves, o.Slaves)
	many, err := StartStack(ctx, StackOptions{Repo: o.Repo, Name: fmt.Sprintf("%s-%d", o.Name, o.Slaves),
		Dir: filepath.Join(o.WorkDir, fmt.Sprintf("stack-%d", o.Slaves)), PortBase: o.PortBase + 100, Slaves: o.Slaves})
	if err != nil {
		return SlavesRow{}, err
	}
	defer func() {
		b.logf("stopping stack %s-%d", o.Name, o.Slaves)
		many.Stop()
	}()
	oneProcs, err := e.dbaasProcs(ctx, e.one)
	if err != nil {
		return SlavesRow{}, err
	}
	manyProcs, err := e.dbaasProcs(ctx, many)
	if err != nil {
		return SlavesRow{}, err
	}
	manyDB := DBaaS{URL: many.OrchURL, Client: client}
	sides := []side{
		{"1 slave", func(ctx context.Context, cl int, seq int64) error {
			return e.ours.AddUser(ctx, e.unique("s1", cl, seq))
		}, oneProcs, e.one},
		{strconv.Itoa(o.Slaves) + " slaves", func(ctx context.Context, cl int, seq int64) error {
			return manyDB.AddUser(ctx, e.unique("sn", cl, seq))
		}, manyProcs, many},
	}
	row := SlavesRow{Clients: o.CompareClients, Slaves: o.Slaves}
	for round := range o.Rounds {
		order := []int{0, 1}
		if round%2 == 1 {
			order = []int{1, 0}
		}
		ms := make([]Measure, 2)
		for _, i := range order {
			if ms[i], err = b.measure(ctx, e, fmt.Sprintf("round %d/%d: write", round+1, o.Rounds), o.CompareClients, sides[i]); err != nil {
				return SlavesRow{}, err
			}
		}
		row.OneRuns = append(row.OneRuns, ms[0])
		row.ManyRuns = append(row.ManyRuns, ms[1])
	}
	return row, nil
}
