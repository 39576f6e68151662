package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/loadgen"
)

// Loads of the side-by-side table.
const (
	LoadWrite = "write"
	LoadRead  = "read"
)

// Measure is one load on one side: what the clients saw and what the
// processes used meanwhile.
type Measure struct {
	Result
	Usage Usage `json:"usage"`
	// Batches is the master's group commits in the window (our writes).
	Batches *BatchStats `json:"batches,omitempty"`
	// Env is what the fixed steps took meanwhile.
	Env Env `json:"env"`
}

// Row is one line of the side-by-side table: the same load on both sides,
// one measurement per round.
type Row struct {
	Load       string    `json:"load"` // LoadWrite or LoadRead
	Clients    int       `json:"clients"`
	Ours       string    `json:"ours"`   // what our side runs
	Theirs     string    `json:"theirs"` // what rqlite runs
	OursRuns   []Measure `json:"ours_runs"`
	TheirsRuns []Measure `json:"theirs_runs"`
}

// SlavesRow compares writes with one slave and with many.
type SlavesRow struct {
	Clients  int       `json:"clients"`
	Slaves   int       `json:"slaves"`
	OneRuns  []Measure `json:"one_slave_runs"`
	ManyRuns []Measure `json:"many_slaves_runs"`
}

// MixMeasure is one run of the public API mix.
type MixMeasure struct {
	Requests         int64           `json:"requests"`
	Throughput       float64         `json:"throughput_rps"`
	Latency          loadgen.Latency `json:"latency_ms"`
	Errors           int64           `json:"errors"`
	UnexpectedErrors int64           `json:"unexpected_errors"`
	Usage            Usage           `json:"usage"`
	Env              Env             `json:"env"`
}

// MixRow compares the public API mix through Traefik and direct.
type MixRow struct {
	Clients     int          `json:"clients"`
	TraefikRuns []MixMeasure `json:"traefik_runs"`
	DirectRuns  []MixMeasure `json:"direct_runs"`
}

// PprofLine is one function of `go tool pprof -top`.
type PprofLine struct {
	Flat, FlatPct, Cum, CumPct string
	Func                       string
}

// PprofTopTable is a parsed `go tool pprof -top`.
type PprofTopTable struct {
	Summary string      `json:"summary"` // e.g. "Duration: 8.11s, Total samples = 3.20s (39.46%)"
	Lines   []PprofLine `json:"lines"`
}

// ParsePprofTop parses the text of `go tool pprof -top`.
func ParsePprofTop(s string) PprofTopTable {
	var t PprofTopTable
	inTable := false
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Duration:"):
			t.Summary = strings.TrimSpace(line)
		case strings.Contains(line, "flat%") && strings.Contains(line, "cum%"):
			inTable = true
		case inTable:
			f := strings.Fields(line)
			if len(f) < 6 {
				continue
			}
			t.Lines = append(t.Lines, PprofLine{Flat: f[0], FlatPct: f[1], Cum: f[3], CumPct: f[4], Func: strings.Join(f[5:], " ")})
		}
	}
	return t
}

// ProfileReading is one profiled load: CPU by process from /proc and the
// top functions of the orchestrator, the master and a slave.
type ProfileReading struct {
	Load    string                   `json:"load"`
	Clients int                      `json:"clients"`
	Result  Result                   `json:"result"`
	Usage   Usage                    `json:"usage"`
	Files   map[string]string        `json:"files"` // orchestrator, master, slave → .pprof
	Top     map[string]PprofTopTable `json:"top"`
	// Breakdown is each profile's CPU time by category (Categories).
	Breakdown map[string]Breakdown `json:"breakdown"`
	// Batches is the master's group commits (write loads).
	Batches *BatchStats `json:"batches,omitempty"`
	Env     Env         `json:"env"`
}

// Machine says where and on what the run happened.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	MemTotal string `json:"mem_total"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
	RabbitMQ string `json:"rabbitmq"`
	ZK       string `json:"zookeeper"`
	Commit   string `json:"commit"`
	LoadAvg  string `json:"loadavg_before"`
}

// DescribeMachine collects Machine; what it cannot read stays empty.
func DescribeMachine(ctx context.Context, repo string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for l := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				m.MemTotal = fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	out := func(name string, args ...string) string {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = repo
		b, err := cmd.Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	m.RabbitMQ = out("dpkg-query", "-W", "-f", "${Version}", "rabbitmq-server")
	m.ZK = out("dpkg-query", "-W", "-f", "${Version}", "zookeeper")
	m.Commit = out("git", "rev-parse", "--short", "HEAD")
	if m.Commit != "" && out("git", "status", "--porcelain", "--untracked-files=no") != "" {
		m.Commit += " (with uncommitted changes)"
	}
	return m
}

// OptionsSummary is the run's shape, for the report.
type OptionsSummary struct {
	Clients        []int   `json:"clients"`
	CompareClients int     `json:"compare_clients"`
	Duration       float64 `json:"duration_seconds"`
	Warmup         float64 `json:"warmup_seconds"`
	Rounds         int     `json:"rounds"`
	Slaves         int     `json:"slaves"`
	MixClients     int     `json:"mix_clients"`
	MixDuration    float64 `json:"mix_duration_seconds"`
	Seeds          int     `json:"seeds"`
}

func (o Options) summary() OptionsSummary {
	return OptionsSummary{Clients: o.Clients, CompareClients: o.CompareClients, Duration: o.Duration.Seconds(),
		Warmup: o.Warmup.Seconds(), Rounds: o.Rounds, Slaves: o.Slaves, MixClients: o.MixClients,
		MixDuration: o.MixDuration.Seconds(), Seeds: o.Seeds}
}

// Report is the outcome of a run.
type Report struct {
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished"`
	Machine  Machine        `json:"machine"`
	Options  OptionsSummary `json:"options"`
	Disk     DiskSync       `json:"disk"`
	// Idle is the shared servers' CPU with every stack idle, one sample
	// before each round of the side-by-side table.
	Idle       []Usage          `json:"idle,omitempty"`
	RoundTrips RoundTrips       `json:"round_trips"`
	Rows       []Row            `json:"rows"`
	Slaves     SlavesRow        `json:"slaves"`
	Mix        MixRow           `json:"mix"`
	Profiles   []ProfileReading `json:"profiles,omitempty"`
	Targets    []Target         `json:"targets"`
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Check is the smoke's verdict on the harness (never on speed): every load
// ran, was served at least once and, with strict, without an error.
func (r *Report) Check(strict bool) error {
	var errs []error
	check := func(what string, ms []Measure) {
		if len(ms) == 0 {
			errs = append(errs, fmt.Errorf("%s: not measured", what))
		}
		for _, m := range ms {
			switch {
			case m.Requests == 0:
				errs = append(errs, fmt.Errorf("%s: no request served (%d errors%s)", what, m.Errors, firstErr(m.Result)))
			case strict && m.Errors > 0:
				errs = append(errs, fmt.Errorf("%s: %d errors%s", what, m.Errors, firstErr(m.Result)))
			}
			if len(m.Usage.Kinds) == 0 {
				errs = append(errs, fmt.Errorf("%s: no process usage sampled", what))
			}
		}
	}
	if len(r.Rows) == 0 {
		errs = append(errs, errors.New("no side-by-side rows"))
	}
	for _, row := range r.Rows {
		what := fmt.Sprintf("%s %d clients", row.Load, row.Clients)
		check(what+" ours", row.OursRuns)
		check(what+" "+row.Theirs, row.TheirsRuns)
	}
	check("write 1 slave", r.Slaves.OneRuns)
	check(fmt.Sprintf("write %d slaves", r.Slaves.Slaves), r.Slaves.ManyRuns)
	for label, ms := range map[string][]MixMeasure{"mix Traefik": r.Mix.TraefikRuns, "mix direct": r.Mix.DirectRuns} {
		if len(ms) == 0 {
			errs = append(errs, fmt.Errorf("%s: not measured", label))
		}
		for _, m := range ms {
			if m.Requests == 0 || (strict && m.UnexpectedErrors > 0) {
				errs = append(errs, fmt.Errorf("%s: %d requests, %d unexpected errors", label, m.Requests, m.UnexpectedErrors))
			}
		}
	}
	for _, p := range r.Profiles {
		// An idle process has an empty profile (the master under reads).
		lines := 0
		for _, t := range p.Top {
			lines += len(t.Lines)
		}
		if p.Result.Requests == 0 || lines == 0 {
			errs = append(errs, fmt.Errorf("profile %s %d clients: %d requests, %d functions", p.Load, p.Clients, p.Result.Requests, lines))
		}
	}
	if len(r.Targets) == 0 {
		errs = append(errs, errors.New("no targets"))
	}
	return errors.Join(errs...)
}

// ---- ranges and ratios ----

// span is the range of values over rounds.
type span struct{ lo, hi float64 }

func spanOf(xs []float64) span {
	if len(xs) == 0 {
		return span{math.NaN(), math.NaN()}
	}
	s := span{xs[0], xs[0]}
	for _, x := range xs[1:] {
		s.lo, s.hi = min(s.lo, x), max(s.hi, x)
	}
	return s
}

// format prints a range "lo–hi" (one number when they round alike).
func (s span) format(digits int) string {
	if math.IsNaN(s.lo) {
		return "–"
	}
	lo, hi := num(s.lo, digits), num(s.hi, digits)
	if lo == hi {
		return lo
	}
	return lo + "–" + hi
}

// num prints x with digits significant digits (at least the units),
// thousands grouped with a narrow space: 0.17, 9.52, 31.4, 114, 2 527.
func num(x float64, digits int) string {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return strconv.FormatFloat(x, 'f', 0, 64)
	}
	decimals := max(digits-1-int(math.Floor(math.Log10(math.Abs(x)))), 0)
	s := strconv.FormatFloat(x, 'f', decimals, 64)
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range intPart {
		if i > 0 && len(intPart) > 4 && (len(intPart)-i)%3 == 0 {
			b.WriteString("\u202f")
		}
		b.WriteRune(c)
	}
	if frac != "" {
		b.WriteString("." + frac)
	}
	return b.String()
}

func tput(ms []Measure) span {
	return spanOf(pick(ms, func(m Measure) float64 { return m.Throughput }))
}
func p50(ms []Measure) span {
	return spanOf(pick(ms, func(m Measure) float64 { return m.Latency.P50 }))
}
func p99(ms []Measure) span {
	return spanOf(pick(ms, func(m Measure) float64 { return m.Latency.P99 }))
}

func pick[T any](xs []T, f func(T) float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// pairRatio is the range of a/b taken round by round (the two sides of a
// round ran back to back, so their ratio cancels slow drifts).
func pairRatio(a, b []float64) span {
	n := min(len(a), len(b))
	var rs []float64
	for i := range n {
		if b[i] > 0 {
			rs = append(rs, a[i]/b[i])
		}
	}
	return spanOf(rs)
}

// ---- targets ----

// Verdicts of a target, from the range of a measured ratio.
const (
	Met        = "met"
	NotMet     = "not met"
	Borderline = "borderline (the rounds disagree)"
	Unmeasured = "not measured by make bench"
)

// Target is one goal of issue 11 with its measured value and verdict.
type Target struct {
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Verdict  string `json:"verdict"`
}

// verdict: every round meets the goal, none does, or some do.
func verdict(s span, atLeast bool, goal float64) string {
	if math.IsNaN(s.lo) {
		return "–"
	}
	lo, hi := s.lo, s.hi
	if !atLeast {
		lo, hi = -hi, -lo
		goal = -goal
	}
	switch {
	case lo >= goal:
		return Met
	case hi < goal:
		return NotMet
	default:
		return Borderline
	}
}

// Targets are issue 11's targets, evaluated on rep at compare clients.
func Targets(rep *Report, compare int) []Target {
	var out []Target
	find := func(load string, clients int, theirs string) *Row {
		for i := range rep.Rows {
			r := &rep.Rows[i]
			if r.Load == load && r.Clients == clients && (theirs == "" || strings.Contains(r.Theirs, theirs)) {
				return r
			}
		}
		return nil
	}
	ratio := func(r *Row, f func(Measure) float64) span {
		return pairRatio(pick(r.OursRuns, f), pick(r.TheirsRuns, f))
	}
	thr := func(m Measure) float64 { return m.Throughput }
	if r := find(LoadWrite, compare, ""); r != nil {
		s := ratio(r, thr)
		out = append(out, Target{fmt.Sprintf("db/write ≥ 1.5 × rqlite, %d clients", compare),
			s.format(2) + " ×", verdict(s, true, 1.5)})
	}
	if r := find(LoadWrite, 1, ""); r != nil {
		s := ratio(r, func(m Measure) float64 { return m.Latency.P50 })
		out = append(out, Target{"1-client write p50 ≤ rqlite's",
			fmt.Sprintf("%s vs %s ms (%s ×)", p50(r.OursRuns).format(3), p50(r.TheirsRuns).format(3), s.format(2)),
			verdict(s, false, 1)})
	}
	if r := find(LoadRead, compare, LevelWeak); r != nil {
		s := ratio(r, thr)
		out = append(out, Target{fmt.Sprintf("db/read (strong) ≥ 1 × rqlite weak, %d clients", compare),
			s.format(2) + " ×", verdict(s, true, 1)})
	}
	if sl := rep.Slaves; len(sl.OneRuns) > 0 {
		s := pairRatio(pick(sl.ManyRuns, thr), pick(sl.OneRuns, thr))
		out = append(out, Target{fmt.Sprintf("writes with %d slaves ≥ 0.8 × with 1 slave, %d clients", sl.Slaves, sl.Clients),
			fmt.Sprintf("%s × (%s vs %s writes/s)", s.format(2), tput(sl.ManyRuns).format(3), tput(sl.OneRuns).format(3)),
			verdict(s, true, 0.8)})
	}
	if mx := rep.Mix; len(mx.TraefikRuns) > 0 {
		mt := func(m MixMeasure) float64 { return m.Throughput }
		s := spanOf(pick(mx.TraefikRuns, mt))
		// Today's 230–247 req/s at 16 clients (docs/benchmarks.md): the
		// goal is 3 × the better of the two.
		out = append(out, Target{fmt.Sprintf("public API mix through Traefik ≥ 3 × today's 230–247 req/s, i.e. ≥ 741, %d clients", mx.Clients),
			s.format(3) + " req/s", verdict(s, true, 3*247)})
		mp := func(m MixMeasure) float64 { return m.Latency.P99 }
		r := pairRatio(pick(mx.TraefikRuns, mp), pick(mx.DirectRuns, mp))
		out = append(out, Target{"public API mix p99 through Traefik ≤ 1.5 × direct",
			fmt.Sprintf("%s vs %s ms (%s ×)", spanOf(pick(mx.TraefikRuns, mp)).format(3), spanOf(pick(mx.DirectRuns, mp)).format(3), r.format(2)),
			verdict(r, false, 1.5)})
	}
	out = append(out, Target{"every guarantee kept: correctness tests, acceptance, 4-minute make chaos with zero violations",
		"make test, make chaos", Unmeasured})
	return out
}

// ---- Markdown ----

// Markdown writes the report as the Markdown section of docs/benchmarks.md.
func (r *Report) Markdown(w io.Writer) error {
	var b bytes.Buffer
	m := r.Machine
	o := r.Options
	fmt.Fprintf(&b, "Run of %s UTC (%.0f min), commit %s. Machine: %d × %s, %s RAM, kernel %s, %s; RabbitMQ %s, ZooKeeper %s; load average before the run %s.\n",
		r.Started.Format("2006-01-02 15:04"), r.Finished.Sub(r.Started).Minutes(), orDash(m.Commit), m.CPUs, orDash(m.CPUModel),
		orDash(m.MemTotal), orDash(m.Kernel), m.Go, orDash(m.RabbitMQ), orDash(m.ZK), orDash(m.LoadAvg))
	fmt.Fprintf(&b, "Each load: exactly N client goroutines on keep-alive connections, %gs warm-up, %gs measured; %d rounds, the sides' order reversed every round; ranges are min–max over the rounds, ratios are ours ÷ rqlite taken round by round.",
		o.Warmup, o.Duration, o.Rounds)
	b.WriteString("\n\n")

	if len(r.Rows) == 0 {
		b.WriteString("(side-by-side table not run: -phases)\n")
	} else {
		b.WriteString("| load | clients | ours req/s | ours p50 ms | ours p99 ms | rqlite | rqlite req/s | rqlite p50 ms | rqlite p99 ms | ours ÷ rqlite (req/s) |\n")
		b.WriteString("|---|--:|--:|--:|--:|---|--:|--:|--:|--:|\n")
	}
	var errNotes []string
	for _, row := range r.Rows {
		load := "write: `users.add` / `INSERT`"
		level := "execute"
		if row.Load == LoadRead {
			load = "read: `users.exists` strong / point `SELECT`"
			level = LevelWeak
			if strings.Contains(row.Theirs, LevelLinearizable) {
				level = LevelLinearizable
			}
		}
		thr := pairRatio(pick(row.OursRuns, func(m Measure) float64 { return m.Throughput }),
			pick(row.TheirsRuns, func(m Measure) float64 { return m.Throughput }))
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | **%s ×** |\n", load, row.Clients,
			tput(row.OursRuns).format(3), p50(row.OursRuns).format(3), p99(row.OursRuns).format(3), level,
			tput(row.TheirsRuns).format(3), p50(row.TheirsRuns).format(3), p99(row.TheirsRuns).format(3), thr.format(2))
		errNotes = append(errNotes, errorNotes(fmt.Sprintf("%s %d clients, ours", row.Load, row.Clients), row.OursRuns)...)
		errNotes = append(errNotes, errorNotes(fmt.Sprintf("%s %d clients, rqlite %s", row.Load, row.Clients, level), row.TheirsRuns)...)
	}
	sl := r.Slaves
	if len(sl.OneRuns) > 0 {
		fmt.Fprintf(&b, "\n**Writes with %d slaves vs 1 slave** (`users.add`, %d clients, a second stack pinned to %d slaves, rounds alternating):\n\n",
			sl.Slaves, sl.Clients, sl.Slaves)
		b.WriteString("| slaves | writes/s | p50 ms | p99 ms |\n|--:|--:|--:|--:|\n")
		fmt.Fprintf(&b, "| 1 | %s | %s | %s |\n", tput(sl.OneRuns).format(3), p50(sl.OneRuns).format(3), p99(sl.OneRuns).format(3))
		fmt.Fprintf(&b, "| %d | %s | %s | %s |\n", sl.Slaves, tput(sl.ManyRuns).format(3), p50(sl.ManyRuns).format(3), p99(sl.ManyRuns).format(3))
		errNotes = append(errNotes, errorNotes("write 1 slave", sl.OneRuns)...)
		errNotes = append(errNotes, errorNotes(fmt.Sprintf("write %d slaves", sl.Slaves), sl.ManyRuns)...)
	}

	mx := r.Mix
	if len(mx.TraefikRuns) > 0 {
		fmt.Fprintf(&b, "\n**Public API mix** (`internal/loadgen` default mix, %d clients, %gs a run on emptied tables, 1 master + 1 slave):\n\n", mx.Clients, o.MixDuration)
		b.WriteString("| path | req/s | p50 ms | p99 ms | errors (unexpected) |\n|---|--:|--:|--:|--:|\n")
		for _, p := range []struct {
			label string
			ms    []MixMeasure
		}{{"through Traefik", mx.TraefikRuns}, {"direct", mx.DirectRuns}} {
			var errs, unexp int64
			for _, m := range p.ms {
				errs, unexp = errs+m.Errors, unexp+m.UnexpectedErrors
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %d (%d) |\n", p.label,
				spanOf(pick(p.ms, func(m MixMeasure) float64 { return m.Throughput })).format(3),
				spanOf(pick(p.ms, func(m MixMeasure) float64 { return m.Latency.P50 })).format(3),
				spanOf(pick(p.ms, func(m MixMeasure) float64 { return m.Latency.P99 })).format(3), errs, unexp)
		}
	}

	b.WriteString("\n**Targets** (issue 11; a verdict holds when every round agrees):\n\n| target | measured | verdict |\n|---|---|---|\n")
	for _, t := range r.Targets {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.Goal, t.Measured, t.Verdict)
	}

	r.writeRoundTrips(&b)
	r.writeBatches(&b)
	r.writeEnv(&b)
	r.writeCPU(&b)
	r.writeRSS(&b)
	r.writeProfiles(&b)
	if len(errNotes) > 0 {
		b.WriteString("\nErrors during the loads (not counted in the throughput or the latencies):\n\n")
		for _, n := range errNotes {
			b.WriteString("- " + n + "\n")
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// tableHeader writes a Markdown table's header: left-aligned lead
// columns, right-aligned (numeric) cols, left-aligned tail columns.
func tableHeader(b *bytes.Buffer, lead, cols, tail []string) {
	b.WriteString("|")
	for _, c := range slices.Concat(lead, cols, tail) {
		b.WriteString(" " + c + " |")
	}
	b.WriteString("\n|")
	for range lead {
		b.WriteString("---|")
	}
	for range cols {
		b.WriteString("--:|")
	}
	for range tail {
		b.WriteString("---|")
	}
	b.WriteString("\n")
}

// nClients is "1 client" or "N clients".
func nClients(n int) string {
	if n == 1 {
		return "1 client"
	}
	return strconv.Itoa(n) + " clients"
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func errorNotes(what string, ms []Measure) []string {
	var n int64
	first := ""
	for _, m := range ms {
		n += m.Errors
		if first == "" {
			first = m.FirstError
		}
	}
	if n == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%s: %d errors, first: `%s`", what, n, first)}
}

// cpuKinds are the columns of the CPU tables: the process kinds that
// appear in any measure.
func cpuKinds(ms []Measure) []string {
	seen := map[string]bool{}
	for _, m := range ms {
		for _, k := range m.Usage.Kinds {
			seen[k.Kind] = true
		}
	}
	var out []string
	for _, k := range Kinds {
		if seen[k] {
			out = append(out, k)
		}
	}
	return out
}

// writeRoundTrips: the fixed steps of a write batch, each timed alone.
func (r *Report) writeRoundTrips(b *bytes.Buffer) {
	rt := r.RoundTrips
	fmt.Fprintf(b, "\n**Fixed steps, each timed alone** (%d times, one at a time, on the shared servers, during the run): the floor under a write batch's latency, whatever the CPU does.\n\n", rt.N)
	b.WriteString("| step | p50 ms | p99 ms | in our write path today |\n|---|--:|--:|---|\n")
	for _, s := range []struct {
		what string
		l    loadgen.Latency
		use  string
	}{
		{"disk: 4 KiB write + fdatasync", r.Disk.Fdatasync, "the master's commit (1 per batch), RabbitMQ's quorum WAL, each slave's apply; rqlite's BoltDB commit is 2"},
		{"disk: 4 KiB write + fsync", r.Disk.Fsync, "SQLite's commit uses fsync unless built with fdatasync"},
		{"ZooKeeper sync + get of one znode", rt.ZKSyncGet, "the master's fence check: 2 per batch (before the commit, after the sync publish)"},
		{"RabbitMQ publish + confirm, quorum queue, persistent", rt.QuorumConfirm, "the orchestrator's publish to writeQ: 1 per write, before the master sees it"},
		{"RabbitMQ publish + confirm, transient queue", rt.TransientConfirm, "the master's sync-stream publish: 1 per batch; every read's publish to readQ"},
	} {
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", s.what, num(s.l.P50, 3), num(s.l.P99, 3), s.use)
	}
}

// writeBatches: the master's group commits under our write loads.
func (r *Report) writeBatches(b *bytes.Buffer) {
	type line struct {
		label string
		ms    []Measure
	}
	var lines []line
	for _, row := range r.Rows {
		if row.Load == LoadWrite {
			lines = append(lines, line{nClients(row.Clients) + ", 1 slave", row.OursRuns})
		}
	}
	if sl := r.Slaves; len(sl.ManyRuns) > 0 {
		lines = append(lines, line{fmt.Sprintf("%d clients, 1 slave (slaves comparison)", sl.Clients), sl.OneRuns},
			line{fmt.Sprintf("%d clients, %d slaves", sl.Clients, sl.Slaves), sl.ManyRuns})
	}
	var rows []string
	for _, l := range lines {
		var bs []BatchStats
		for _, m := range l.ms {
			if m.Batches != nil && m.Batches.Batches > 0 {
				bs = append(bs, *m.Batches)
			}
		}
		if len(bs) == 0 {
			continue
		}
		f := func(g func(BatchStats) float64) string {
			if sp := spanOf(pick(bs, g)); sp.hi > 0 {
				return sp.format(3)
			}
			return "–" // not in this master's lines
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %s / %s | %s / %s | %s |", l.label,
			f(func(s BatchStats) float64 { return float64(s.Batches) / r.Options.Duration }),
			f(func(s BatchStats) float64 { return s.WritesMean }),
			spanOf(pick(bs, func(s BatchStats) float64 { return float64(s.WritesMax) })).format(1),
			f(func(s BatchStats) float64 { return s.Commit.P50 }), f(func(s BatchStats) float64 { return s.Commit.P99 }),
			f(func(s BatchStats) float64 { return s.Total.P50 }), f(func(s BatchStats) float64 { return s.Total.P99 }),
			spanOf(pick(bs, func(s BatchStats) float64 { return 100 * s.Busy })).format(2)))
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("\n**Group commit on the master** (its own account: one `batch committed` debug line per batch; \"commit\" is the group commit's transaction: the handlers and the SQLite commit, and before the pipelined master the fence check too; \"batch\", which only the serial master logged, adds the sync-stream publish with its confirm, the second fence check and the ack; \"busy\" is the share of the window spent in batches, or in transactions when there is no batch time):\n\n")
	b.WriteString("| load | batches/s | writes per batch | largest batch | commit p50 / p99 ms | batch p50 / p99 ms | busy % |\n|---|--:|--:|--:|--:|--:|--:|\n")
	for _, row := range rows {
		b.WriteString(row + "\n")
	}
}

// loadLine is a labelled series of measures: one line of the CPU and
// environment tables.
type loadLine struct {
	label string
	ms    []Measure
}

// loadLines are every measured load, ours then rqlite's for each row.
func (r *Report) loadLines() []loadLine {
	var lines []loadLine
	for _, row := range r.Rows {
		if row.Load == LoadRead && strings.Contains(row.Theirs, LevelLinearizable) {
			lines = append(lines, loadLine{fmt.Sprintf("rqlite read linearizable, %d cl.", row.Clients), row.TheirsRuns})
			continue
		}
		lines = append(lines, loadLine{fmt.Sprintf("ours %s, %d cl.", row.Load, row.Clients), row.OursRuns})
		theirs := "rqlite " + row.Load
		if row.Load == LoadRead {
			theirs += " weak"
		}
		lines = append(lines, loadLine{fmt.Sprintf("%s, %d cl.", theirs, row.Clients), row.TheirsRuns})
	}
	if len(r.Slaves.ManyRuns) > 0 {
		lines = append(lines,
			loadLine{fmt.Sprintf("ours write, %d cl., 1 slave (slaves comparison)", r.Slaves.Clients), r.Slaves.OneRuns},
			loadLine{fmt.Sprintf("ours write, %d cl., %d slaves", r.Slaves.Clients, r.Slaves.Slaves), r.Slaves.ManyRuns})
	}
	return lines
}

// writeEnv: what the fixed steps took while each load ran.
func (r *Report) writeEnv(b *bytes.Buffer) {
	lines := r.loadLines()
	seen := false
	for _, l := range lines {
		for _, m := range l.ms {
			seen = seen || m.Env.Samples > 0
		}
	}
	if !seen {
		return
	}
	fmt.Fprintf(b, "\n**The environment during each load** (the fixed steps above, probed every %s while the load ran; p50 over the rounds, and the largest single probe): a load whose disk, ZooKeeper or RabbitMQ was slow meanwhile ran on a slower machine.\n\n", EnvInterval)
	tableHeader(b, []string{"load"}, []string{"fdatasync p50 ms", "max", "ZooKeeper sync + get p50 ms", "max", "quorum confirm p50 ms", "max"}, nil)
	for _, l := range lines {
		var env []Env
		for _, m := range l.ms {
			if m.Env.Samples > 0 {
				env = append(env, m.Env)
			}
		}
		if len(env) == 0 {
			continue
		}
		f := func(g func(Env) float64) string { return spanOf(pick(env, g)).format(2) }
		mx := func(g func(Env) float64) string { return num(spanOf(pick(env, g)).hi, 2) }
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", l.label,
			f(func(e Env) float64 { return e.Fdatasync.P50 }), mx(func(e Env) float64 { return e.Fdatasync.Max }),
			f(func(e Env) float64 { return e.ZK.P50 }), mx(func(e Env) float64 { return e.ZK.Max }),
			f(func(e Env) float64 { return e.Quorum.P50 }), mx(func(e Env) float64 { return e.Quorum.Max }))
	}
}

// writeCPU: CPU time per request by process kind, summed over the rounds.
func (r *Report) writeCPU(b *bytes.Buffer) {
	lines := r.loadLines()
	var all []Measure
	for _, l := range lines {
		all = append(all, l.ms...)
	}
	kinds := cpuKinds(all)
	if len(kinds) == 0 {
		return
	}
	idleRate := r.idleRates()
	idleWin := time.Duration(0)
	for _, u := range r.Idle {
		idleWin += u.Window
	}
	b.WriteString("\n**CPU per request by process** (ms of CPU per served request, from `/proc/PID/stat` over the measured windows, all rounds; " +
		"\"machine\" is every process on the machine, so machine − sum is what ran beside the bench. RabbitMQ and ZooKeeper serve other users of the machine too: ")
	if idleWin > 0 {
		fmt.Fprintf(b, "the lowest idle background sampled before the rounds (RabbitMQ %.0f ms, ZooKeeper %.0f ms of CPU a second) is taken off their columns, which are thus upper bounds", 1000*idleRate[KindRabbitMQ], 1000*idleRate[KindZooKeeper])
	} else {
		b.WriteString("their columns hold what else they served meanwhile")
	}
	b.WriteString("):\n\n")
	tableHeader(b, []string{"load"}, slices.Concat(kinds, []string{"sum", "machine", "machine busy"}), nil)
	for _, l := range lines {
		var req int64
		var win, busy, machine time.Duration
		perKind := map[string]time.Duration{}
		for _, m := range l.ms {
			req += m.Requests
			win += m.Usage.MachineAll
			busy += m.Usage.MachineBusy
			for _, k := range m.Usage.Kinds {
				perKind[k.Kind] += netCPU(k, m.Usage.Window, idleRate)
			}
		}
		machine = busy
		if req == 0 {
			continue
		}
		perReq := func(d time.Duration) string {
			return strconv.FormatFloat(float64(d)/float64(time.Millisecond)/float64(req), 'f', 3, 64)
		}
		fmt.Fprintf(b, "| %s |", l.label)
		var sum time.Duration
		for _, k := range kinds {
			if d, ok := perKind[k]; ok {
				sum += d
				fmt.Fprintf(b, " %s |", perReq(d))
			} else {
				b.WriteString(" |")
			}
		}
		pct := 0.0
		if win > 0 {
			pct = 100 * float64(busy) / float64(win)
		}
		fmt.Fprintf(b, " %s | %s | %.0f %% |\n", perReq(sum), perReq(machine), pct)
	}
}

// idleRates is the shared servers' idle background, CPU time per unit of
// time, by kind (from Idle): they serve the other users of the machine
// too. The lowest sample is taken, so what is left is an upper bound of
// what our load cost them.
func (r *Report) idleRates() map[string]float64 {
	rate := map[string]float64{}
	for i, u := range r.Idle {
		if u.Window <= 0 {
			continue
		}
		for _, kind := range []string{KindRabbitMQ, KindZooKeeper} {
			x := float64(u.Of(kind).CPU) / float64(u.Window)
			if old, ok := rate[kind]; !ok || i == 0 || x < old {
				rate[kind] = x
			}
		}
	}
	return rate
}

// netCPU is a kind's CPU in a window less the servers' idle background.
func netCPU(k KindUsage, window time.Duration, idle map[string]float64) time.Duration {
	if k.Kind != KindRabbitMQ && k.Kind != KindZooKeeper {
		return k.CPU
	}
	return max(k.CPU-time.Duration(idle[k.Kind]*float64(window)), 0)
}

// writeRSS: the largest RSS of each process kind under load, over every
// measured window.
func (r *Report) writeRSS(b *bytes.Buffer) {
	type agg struct {
		procs         int
		maxRSS, total int64
	}
	byKind := map[string]*agg{}
	add := func(u Usage) {
		for _, k := range u.Kinds {
			a := byKind[k.Kind]
			if a == nil {
				a = &agg{}
				byKind[k.Kind] = a
			}
			a.procs = max(a.procs, k.Procs)
			a.maxRSS = max(a.maxRSS, k.MaxRSS)
			a.total = max(a.total, k.SumRSS)
		}
	}
	for _, row := range r.Rows {
		for _, m := range append(append([]Measure{}, row.OursRuns...), row.TheirsRuns...) {
			add(m.Usage)
		}
	}
	for _, m := range append(append([]Measure{}, r.Slaves.OneRuns...), r.Slaves.ManyRuns...) {
		add(m.Usage)
	}
	for _, m := range append(append([]MixMeasure{}, r.Mix.TraefikRuns...), r.Mix.DirectRuns...) {
		add(m.Usage)
	}
	if len(byKind) == 0 {
		return
	}
	b.WriteString("\n**RSS under load** (largest sample over every measured window, sampled every 250 ms; " +
		"for the 8-slave stack too, so \"processes\" is the most seen at once):\n\n")
	b.WriteString("| process | processes | largest one MiB | all of the kind MiB |\n|---|--:|--:|--:|\n")
	mib := func(x int64) string { return strconv.FormatFloat(float64(x)/(1<<20), 'f', 1, 64) }
	for _, k := range Kinds {
		if a := byKind[k]; a != nil {
			fmt.Fprintf(b, "| %s | %d | %s | %s |\n", k, a.procs, mib(a.maxRSS), mib(a.total))
		}
	}
}

// writeProfiles: the profiled loads, their CPU by process and the top
// functions of each Go process.
func (r *Report) writeProfiles(b *bytes.Buffer) {
	if len(r.Profiles) == 0 {
		return
	}
	idle := r.idleRates()
	b.WriteString("\n**CPU profiles** (our stack alone, after the rounds; each Go process's samples by category: the library nearest the sample's leaf — a write(2) under gRPC is plugin RPC, an allocation under encoding/json is JSON — else own code, GC, runtime; `go tool pprof -top FILE` for the rest):\n")
	for _, p := range r.Profiles {
		fmt.Fprintf(b, "\n*%s, %s*: %s req/s, p50 %s ms.", p.Load, nClients(p.Clients),
			num(p.Result.Throughput, 3), num(p.Result.Latency.P50, 3))
		if p.Result.Requests > 0 {
			b.WriteString(" CPU ms per request (servers net of their idle background):")
			var sum time.Duration
			for _, k := range p.Usage.Kinds {
				cpu := netCPU(k, p.Usage.Window, idle)
				sum += cpu
				fmt.Fprintf(b, " %s %.2f;", k.Kind, float64(cpu)/float64(time.Millisecond)/float64(p.Result.Requests))
			}
			fmt.Fprintf(b, " sum %.2f", float64(sum)/float64(time.Millisecond)/float64(p.Result.Requests))
			if p.Usage.MachineAll > 0 {
				fmt.Fprintf(b, "; machine busy %.0f %%", 100*float64(p.Usage.MachineBusy)/float64(p.Usage.MachineAll))
			}
			b.WriteString(".")
		}
		if p.Env.Samples > 0 {
			fmt.Fprintf(b, " Meanwhile fdatasync p50 %s ms (max %s), ZooKeeper sync + get %s (%s), quorum confirm %s (%s).",
				num(p.Env.Fdatasync.P50, 2), num(p.Env.Fdatasync.Max, 2), num(p.Env.ZK.P50, 2), num(p.Env.ZK.Max, 2),
				num(p.Env.Quorum.P50, 2), num(p.Env.Quorum.Max, 2))
		}
		if bs := p.Batches; bs != nil && bs.Batches > 0 {
			fmt.Fprintf(b, " The master: %s batches/s of %.1f writes (largest %d), batch p50 %s ms, busy %.0f %%.",
				num(float64(bs.Batches)/p.Usage.Window.Seconds(), 3), bs.WritesMean, bs.WritesMax, num(bs.Total.P50, 3), 100*bs.Busy)
		}
		b.WriteString("\n\n")
		// CPU by category: the columns that hold anything.
		var cats []string
		for _, c := range Categories {
			for _, bd := range p.Breakdown {
				if bd.By[c] > 0 {
					cats = append(cats, c)
					break
				}
			}
		}
		tableHeader(b, []string{"process"}, append([]string{"CPU ms / request (profile)"}, cats...),
			[]string{"top functions (flat, runtime left out)"})
		for _, name := range []string{"orchestrator", "master", "slave"} {
			bd, ok := p.Breakdown[name]
			if !ok {
				continue
			}
			perReq := "–"
			if p.Result.Requests > 0 {
				perReq = strconv.FormatFloat(float64(bd.Total)/float64(time.Millisecond)/
					(p.Result.Throughput*float64(r.profileSeconds(p))), 'f', 2, 64)
			}
			fmt.Fprintf(b, "| %s | %s |", name, perReq)
			for _, c := range cats {
				if sh := bd.Share(c); sh > 0 {
					fmt.Fprintf(b, " %.0f %% |", 100*sh)
				} else {
					b.WriteString(" |")
				}
			}
			// The runtime's and the kernel's entry points (Syscall6,
			// futex) top every list: the columns above say what called them.
			var fs []string
			for _, l := range p.Top[name].Lines {
				if len(fs) == 4 {
					break
				}
				if strings.HasPrefix(l.Func, "runtime.") || strings.HasPrefix(l.Func, "internal/runtime/") ||
					strings.HasPrefix(l.Func, "syscall.") || strings.HasPrefix(l.Func, "mem") {
					continue
				}
				fs = append(fs, fmt.Sprintf("`%s` %s", shortFunc(l.Func), l.FlatPct))
			}
			fmt.Fprintf(b, " %s |\n", strings.Join(fs, ", "))
		}
	}
}

// profileSeconds is the length of a reading's profiles, from pprof's
// summary ("Duration: 8s, ..."), else the measured window.
func (r *Report) profileSeconds(p ProfileReading) float64 {
	for _, t := range p.Top {
		if d, ok := strings.CutPrefix(t.Summary, "Duration: "); ok {
			d, _, _ = strings.Cut(d, ",")
			if v, err := time.ParseDuration(d); err == nil && v > 0 {
				return v.Seconds()
			}
		}
	}
	return p.Result.Elapsed
}

// shortFunc drops the module path of a function name:
// github.com/rideshare-dbaas/rideshare/worker.(*Worker).commitBatch → worker.(*Worker).commitBatch.
func shortFunc(f string) string {
	if i := strings.LastIndex(f, "/"); i >= 0 {
		return f[i+1:]
	}
	return f
}

// Markers of the generated section in docs/benchmarks.md.
const (
	BeginMarker = "<!-- make bench: begin (generated by cmd/bench; edit outside the markers) -->"
	EndMarker   = "<!-- make bench: end -->"
)

// ReplaceSection puts section between the markers of doc (appending
// markers and section at the end when doc has none).
func ReplaceSection(doc, section []byte) ([]byte, error) {
	i := bytes.Index(doc, []byte(BeginMarker))
	j := bytes.Index(doc, []byte(EndMarker))
	switch {
	case i < 0 && j < 0:
		out := append(bytes.TrimRight(doc, "\n"), "\n\n"+BeginMarker+"\n"...)
		out = append(out, section...)
		return append(out, "\n"+EndMarker+"\n"...), nil
	case i < 0 || j < i:
		return nil, errors.New("docs: the bench markers are missing or out of order")
	}
	var out []byte
	out = append(out, doc[:i+len(BeginMarker)]...)
	out = append(out, '\n')
	out = append(out, bytes.TrimRight(section, "\n")...)
	out = append(out, '\n')
	out = append(out, doc[j:]...)
	return out, nil
}
