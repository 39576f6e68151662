package bench

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/loadgen"
)

func TestNum(t *testing.T) {
	for _, tt := range []struct {
		x      float64
		digits int
		want   string
	}{
		{0.1712, 2, "0.17"},
		{0.0512, 2, "0.051"},
		{1.5, 2, "1.5"},
		{9.524, 3, "9.52"},
		{31.44, 3, "31.4"},
		{114.2, 3, "114"},
		{2527.4, 3, "2527"},
		{12345.6, 3, "12\u202f346"},
		{0, 3, "0"},
	} {
		if got := num(tt.x, tt.digits); got != tt.want {
			t.Errorf("num(%v, %d) = %q, want %q", tt.x, tt.digits, got, tt.want)
		}
	}
}

func TestSpanAndRatios(t *testing.T) {
	if got := spanOf([]float64{94, 101, 97}).format(3); got != "94.0–101" {
		t.Errorf("span = %q", got)
	}
	if got := spanOf([]float64{5, 5}).format(3); got != "5.00" {
		t.Errorf("span of equal values = %q", got)
	}
	if got := spanOf(nil).format(3); got != "–" {
		t.Errorf("empty span = %q", got)
	}
	// Round by round: 100/500 and 110/550 are both 0.2.
	if got := pairRatio([]float64{100, 110}, []float64{500, 550}).format(2); got != "0.20" {
		t.Errorf("pair ratio = %q", got)
	}
}

func TestVerdict(t *testing.T) {
	for _, tt := range []struct {
		name    string
		s       span
		atLeast bool
		goal    float64
		want    string
	}{
		{"all above", span{1.6, 1.8}, true, 1.5, Met},
		{"all below", span{0.1, 0.2}, true, 1.5, NotMet},
		{"straddles", span{1.4, 1.6}, true, 1.5, Borderline},
		{"at most, all below", span{0.5, 0.9}, false, 1, Met},
		{"at most, all above", span{6, 7}, false, 1, NotMet},
		{"at most, straddles", span{0.9, 1.1}, false, 1, Borderline},
		{"no data", span{math.NaN(), math.NaN()}, true, 1, "–"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := verdict(tt.s, tt.atLeast, tt.goal); got != tt.want {
				t.Errorf("verdict(%v, %v, %v) = %q, want %q", tt.s, tt.atLeast, tt.goal, got, tt.want)
			}
		})
	}
}

func TestParsePprofTop(t *testing.T) {
	const out = `File: worker
Type: cpu
Time: 2026-12-02 01:00:00 UTC
Duration: 8.11s, Total samples = 3.20s (39.46%)
Showing nodes accounting for 2.10s, 65.63% of 3.20s total
Dropped 120 nodes (cum <= 0.02s)
      flat  flat%   sum%        cum   cum%
     0.90s 28.12% 28.12%      0.90s 28.12%  internal/runtime/syscall/linux.Syscall6
     0.20s  6.25% 34.38%      1.10s 34.38%  github.com/rideshare-dbaas/rideshare/worker.(*Worker).commitBatch
`
	got := ParsePprofTop(out)
	if got.Summary != "Duration: 8.11s, Total samples = 3.20s (39.46%)" {
		t.Errorf("summary %q", got.Summary)
	}
	want := []PprofLine{
		{"0.90s", "28.12%", "0.90s", "28.12%", "internal/runtime/syscall/linux.Syscall6"},
		{"0.20s", "6.25%", "1.10s", "34.38%", "github.com/rideshare-dbaas/rideshare/worker.(*Worker).commitBatch"},
	}
	if len(got.Lines) != len(want) {
		t.Fatalf("lines %+v", got.Lines)
	}
	for i := range want {
		if got.Lines[i] != want[i] {
			t.Errorf("line %d = %+v, want %+v", i, got.Lines[i], want[i])
		}
	}
}

func TestReplaceSection(t *testing.T) {
	doc := "# B\n\nintro\n" + BeginMarker + "\nold table\n" + EndMarker + "\n\n## after\n"
	got, err := ReplaceSection([]byte(doc), []byte("new table\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := "# B\n\nintro\n" + BeginMarker + "\nnew table\n" + EndMarker + "\n\n## after\n"
	if string(got) != want {
		t.Errorf("replaced:\n%s\nwant:\n%s", got, want)
	}
	got, err = ReplaceSection([]byte("# B\n"), []byte("table"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(got), BeginMarker+"\ntable\n"+EndMarker+"\n") {
		t.Errorf("appended: %q", got)
	}
	for _, bad := range []string{EndMarker + "\n" + BeginMarker, BeginMarker + " only", EndMarker + " only"} {
		if _, err := ReplaceSection([]byte(bad), []byte("x")); err == nil {
			t.Errorf("ReplaceSection(%q) accepted broken markers", bad)
		}
	}
}

// measure is a Measure with a throughput and latencies.
func measure(rps, p50, p99 float64) Measure {
	return Measure{
		Result: Result{Requests: int64(rps * 5), Throughput: rps, Elapsed: 5, Latency: loadgen.Latency{P50: p50, P99: p99}},
		Usage: Usage{Window: 5 * time.Second, MachineAll: 10 * time.Second, MachineBusy: 9 * time.Second,
			Kinds: []KindUsage{{Kind: KindMaster, Procs: 1, CPU: time.Second, MaxRSS: 30 << 20, SumRSS: 30 << 20}}},
	}
}

func sampleReport() *Report {
	rep := &Report{
		Started: time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC), Finished: time.Date(2026, 12, 2, 1, 7, 0, 0, time.UTC),
		Options: OptionsSummary{Duration: 5, Warmup: 1, Rounds: 2, MixDuration: 10},
		Rows: []Row{
			{Load: LoadWrite, Clients: 1, Ours: "w", Theirs: "/db/execute INSERT",
				OursRuns: []Measure{measure(94, 9.5, 20), measure(101, 9.4, 21)}, TheirsRuns: []Measure{measure(552, 1.5, 3), measure(584, 1.4, 3)}},
			{Load: LoadWrite, Clients: 16, Ours: "w", Theirs: "/db/execute INSERT",
				OursRuns: []Measure{measure(4000, 3, 9), measure(4200, 3, 9)}, TheirsRuns: []Measure{measure(2527, 5, 16), measure(2642, 5, 16)}},
			{Load: LoadRead, Clients: 16, Ours: "r", Theirs: "/db/query SELECT, level=weak",
				OursRuns: []Measure{measure(478, 31, 60), measure(493, 30, 60)}, TheirsRuns: []Measure{measure(470, 1.3, 4), measure(500, 1.3, 4)}},
			{Load: LoadRead, Clients: 16, Ours: "r", Theirs: "/db/query SELECT, level=linearizable",
				OursRuns: []Measure{measure(478, 31, 60), measure(493, 30, 60)}, TheirsRuns: []Measure{measure(9000, 1.3, 4), measure(9100, 1.3, 4)}},
		},
		Slaves: SlavesRow{Clients: 16, Slaves: 8, OneRuns: []Measure{measure(300, 50, 90), measure(280, 50, 90)},
			ManyRuns: []Measure{measure(180, 80, 120), measure(190, 80, 120)}},
		Mix: MixRow{Clients: 16,
			TraefikRuns: []MixMeasure{{Requests: 4000, Throughput: 240, Latency: loadgen.Latency{P50: 60, P99: 150}}},
			DirectRuns:  []MixMeasure{{Requests: 4000, Throughput: 250, Latency: loadgen.Latency{P50: 55, P99: 140}}}},
	}
	rep.Targets = Targets(rep, 16)
	return rep
}

func TestTargets(t *testing.T) {
	rep := sampleReport()
	want := map[string]string{
		"db/write ≥ 1.5 × rqlite, 16 clients":                   Met,        // 4000/2527 = 1.58, 4200/2642 = 1.59
		"1-client write p50 ≤ rqlite's":                         NotMet,     // 9.5 vs 1.5
		"db/read (strong) ≥ 1 × rqlite weak, 16 clients":        Borderline, // 478/470 = 1.02, 493/500 = 0.99
		"writes with 8 slaves ≥ 0.8 × with 1 slave, 16 clients": NotMet,
		"public API mix p99 through Traefik ≤ 1.5 × direct":     Met,
	}
	got := map[string]string{}
	for _, tg := range rep.Targets {
		got[tg.Goal] = tg.Verdict
	}
	for goal, v := range want {
		if got[goal] != v {
			t.Errorf("%s: verdict %q, want %q (all: %+v)", goal, got[goal], v, rep.Targets)
		}
	}
	if len(rep.Targets) != 7 {
		t.Errorf("%d targets, want 7: %+v", len(rep.Targets), rep.Targets)
	}
}

func TestMarkdownAndCheck(t *testing.T) {
	rep := sampleReport()
	var b bytes.Buffer
	if err := rep.Markdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| write: `users.add` / `INSERT` | 1 | 94.0–101 | 9.40–9.50 |",
		"| linearizable |",
		"**0.17 ×**",
		"**Writes with 8 slaves vs 1 slave**",
		"| through Traefik | 240 |",
		"**Targets**",
		"**CPU per request by process**",
		"**RSS under load**",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if err := rep.Check(true); err != nil {
		t.Errorf("Check: %v", err)
	}
	rep.Rows[0].OursRuns[1].Requests = 0
	rep.Mix.DirectRuns = nil
	err := rep.Check(false)
	if err == nil || !strings.Contains(err.Error(), "write 1 clients ours: no request served") || !strings.Contains(err.Error(), "mix direct: not measured") {
		t.Errorf("Check of a broken report: %v", err)
	}
	rep = sampleReport()
	rep.Rows[1].TheirsRuns[0].Errors = 3
	if rep.Check(false) != nil || rep.Check(true) == nil {
		t.Error("strict Check must fail on errors, lenient must not")
	}
}

func TestParseTracesAndCategories(t *testing.T) {
	const traces = `File: worker
Type: cpu
Duration: 8s, Total samples = 1.75s (21.87%)
-----------+-------------------------------------------------------
      70ms   internal/runtime/syscall/linux.Syscall6
             syscall.write
             net.(*conn).Write
             github.com/rabbitmq/amqp091-go.(*Channel).PublishWithContext
             github.com/rideshare-dbaas/rideshare/worker.(*Worker).reply
-----------+-------------------------------------------------------
      30ms   runtime.mallocgc
             encoding/json.Marshal
             google.golang.org/grpc.(*ClientConn).Invoke
-----------+-------------------------------------------------------
      20ms   modernc.org/sqlite/lib._sqlite3VdbeExec
             database/sql.(*DB).QueryContext
             github.com/rideshare-dbaas/rideshare/worker.(*Worker).serveRead
-----------+-------------------------------------------------------
      10ms   runtime.scanobject
             runtime.gcDrain
             runtime.gcBgMarkWorker
-----------+-------------------------------------------------------
      10ms   runtime.futex
             runtime.notesleep
             runtime.mstart
-----------+-------------------------------------------------------
      10ms   github.com/rideshare-dbaas/rideshare/worker.(*Worker).isSlave (inline)
             github.com/rideshare-dbaas/rideshare/worker.(*Worker).serveRead
`
	b, err := parseTraces(traces)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{
		CatAMQP: 70 * time.Millisecond, CatJSON: 30 * time.Millisecond, CatSQLite: 20 * time.Millisecond,
		CatGC: 10 * time.Millisecond, CatRuntime: 10 * time.Millisecond, CatOwn: 10 * time.Millisecond,
	}
	if b.Total != 150*time.Millisecond {
		t.Errorf("total %v, want 150ms", b.Total)
	}
	for cat, d := range want {
		if b.By[cat] != d {
			t.Errorf("%s: %v, want %v (all: %v)", cat, b.By[cat], d, b.By)
		}
	}
	if got := b.Share(CatAMQP); math.Abs(got-70.0/150) > 1e-9 {
		t.Errorf("share %v", got)
	}
}
