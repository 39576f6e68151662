package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Targets of issue 5.
const (
	TargetMasterP99 = 2 * time.Second // master kill → next successful write, p99
	TargetSlaveMax  = 3 * time.Second // slave kill → replacement serving reads
)

// Stats summarises durations in seconds.
type Stats struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_s"`
	P99 float64 `json:"p99_s"`
	Max float64 `json:"max_s"`
}

// statsOf uses the nearest-rank percentile.
func statsOf(xs []float64) Stats {
	if len(xs) == 0 {
		return Stats{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return Stats{N: len(s), P50: rank(0.50), P99: rank(0.99), Max: s[len(s)-1]}
}

// Report is the outcome of a run (the JSON of --report).
type Report struct {
	RunID   string    `json:"run_id"`
	Seed    uint64    `json:"seed"`
	Started time.Time `json:"started"`
	Machine Machine   `json:"machine"`
	Options struct {
		Clients       int     `json:"clients"`
		DurationS     float64 `json:"duration_s"`
		MasterKills   int     `json:"master_kills"`
		SlaveKills    int     `json:"slave_kills"`
		RabbitRestart string  `json:"rabbit_restart"`
		ZKExpiry      string  `json:"zk_expiry"`
		ZKTimeoutS    float64 `json:"zk_timeout_s"`
		MinSlaves     int     `json:"min_slaves"`
		MaxSlaves     int     `json:"max_slaves"`
		ScaleWindowS  float64 `json:"scale_window_s"`
	} `json:"options"`
	Stack       StackInfo `json:"stack"`
	LoadSeconds float64   `json:"load_s"`

	Writes struct {
		Logical      int            `json:"logical"`        // distinct write ids sent
		Acked        int            `json:"acked"`          // acknowledged (200 or a refusal)
		Unacked      int            `json:"unacked"`        // still unanswered when the run ended
		Attempts     int            `json:"attempts"`       // HTTP requests
		Retries      int            `json:"retries"`        // resends of an id
		PerSecond    float64        `json:"acked_per_s"`    // over the load phase
		ByOp         map[string]int `json:"acked_by_op"`    // acknowledged, per operation
		MaxAttempts  int            `json:"max_attempts"`   // most attempts one id needed
		HTTPStatuses map[string]int `json:"http_statuses"`  // "write 503": n
		RYWChecked   int            `json:"ryw_checked"`    // read-your-writes reads answered
		RYWUncertain int            `json:"ryw_unanswered"` // read-your-writes reads never answered in 30 s
		RYWCut       int            `json:"ryw_cut_by_end"` // read-your-writes reads cut off by the end of the load
		Reads        int            `json:"reads"`
		ReadRetries  int            `json:"read_retries"`
	} `json:"writes"`

	Events  []Event        `json:"events"`
	Counts  map[string]int `json:"fault_counts"`
	Skipped []string       `json:"faults_not_injected,omitempty"`

	MasterKill    Stats    `json:"master_kill_to_next_write"`
	SlaveKill     Stats    `json:"slave_kill_to_replacement_ready"`
	TargetsMet    bool     `json:"targets_met"`
	TargetsMissed []string `json:"targets_missed,omitempty"`

	Final       Final       `json:"final"`
	Violations  []Violation `json:"violations"`
	Incomplete  []string    `json:"incomplete,omitempty"`
	DataDirKept string      `json:"data_dir_kept,omitempty"`
}

// Machine is where the run ran.
type Machine struct {
	NumCPU   int    `json:"num_cpu"`
	Nproc    string `json:"nproc"`
	Free     string `json:"free_g"`
	Kernel   string `json:"kernel"`
	GoOS     string `json:"goos"`
	GoArch   string `json:"goarch"`
	GoVer    string `json:"go"`
	Hostname string `json:"hostname"`
}

func machine() Machine {
	out := func(name string, args ...string) string {
		b, err := exec.Command(name, args...).Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	h, _ := os.Hostname()
	return Machine{NumCPU: runtime.NumCPU(), Nproc: out("nproc"), Free: out("free", "-g"), Kernel: out("uname", "-sr"),
		GoOS: runtime.GOOS, GoArch: runtime.GOARCH, GoVer: runtime.Version(), Hostname: h}
}

func newReport(c *Chaos, o Options) *Report {
	r := &Report{RunID: c.runID, Seed: o.Seed, Started: time.Now(), Machine: machine()}
	r.Options.Clients, r.Options.DurationS = o.Clients, o.Duration.Seconds()
	r.Options.MasterKills, r.Options.SlaveKills = o.MasterKills, o.SlaveKills
	r.Options.RabbitRestart, r.Options.ZKExpiry = o.RabbitRestart, o.ZKExpiry
	r.Options.ZKTimeoutS = o.ZKTimeout.Seconds()
	r.Options.MinSlaves, r.Options.MaxSlaves, r.Options.ScaleWindowS = o.MinSlaves, o.MaxSlaves, o.ScaleWindow.Seconds()
	return r
}

func (r *Report) fill(rec *recorder, in *injector, fin Final) {
	writes := rec.snapshotWrites()
	r.Writes.ByOp = map[string]int{}
	r.Writes.Logical = len(writes)
	for _, w := range writes {
		if w.Acked {
			r.Writes.Acked++
			r.Writes.ByOp[w.Op]++
		} else {
			r.Writes.Unacked++
		}
		r.Writes.MaxAttempts = max(r.Writes.MaxAttempts, w.Attempts)
	}
	rec.mu.Lock()
	r.Writes.Attempts, r.Writes.Retries = rec.attempts, rec.retries
	r.Writes.HTTPStatuses = map[string]int{}
	for k, v := range rec.status {
		r.Writes.HTTPStatuses[k] = v
	}
	r.Writes.RYWChecked, r.Writes.RYWUncertain, r.Writes.RYWCut = rec.rywChecked, rec.rywUncertain, rec.rywCut
	r.Writes.Reads, r.Writes.ReadRetries = rec.reads, rec.readRetries
	rec.mu.Unlock()
	if r.LoadSeconds > 0 {
		r.Writes.PerSecond = float64(r.Writes.Acked) / r.LoadSeconds
	}

	r.Events = in.events
	r.Skipped = in.skipped
	r.Counts = map[string]int{}
	var mk, sk []float64
	for _, e := range in.events {
		if e.Injected {
			r.Counts[e.Kind]++
		}
		if !e.Recovered {
			continue
		}
		switch e.Kind {
		case FaultMasterKill:
			mk = append(mk, e.Seconds)
		case FaultSlaveKill:
			sk = append(sk, e.Seconds)
		}
	}
	r.MasterKill, r.SlaveKill = statsOf(mk), statsOf(sk)
	if r.MasterKill.N > 0 && r.MasterKill.P99 >= TargetMasterP99.Seconds() {
		r.TargetsMissed = append(r.TargetsMissed, fmt.Sprintf("master kill → next write p99 %.3fs ≥ %s", r.MasterKill.P99, TargetMasterP99))
	}
	if r.SlaveKill.N > 0 && r.SlaveKill.Max >= TargetSlaveMax.Seconds() {
		r.TargetsMissed = append(r.TargetsMissed, fmt.Sprintf("slave kill → replacement ready max %.3fs ≥ %s", r.SlaveKill.Max, TargetSlaveMax))
	}
	r.TargetsMet = len(r.TargetsMissed) == 0
	r.Final = fin
	r.Violations = rec.snapshotViolations()
	if r.Counts[FaultMasterKill] < r.Options.MasterKills {
		r.Incomplete = append(r.Incomplete, fmt.Sprintf("%d of %d master kills made", r.Counts[FaultMasterKill], r.Options.MasterKills))
	}
	if r.Counts[FaultSlaveKill] < r.Options.SlaveKills {
		r.Incomplete = append(r.Incomplete, fmt.Sprintf("%d of %d slave kills made", r.Counts[FaultSlaveKill], r.Options.SlaveKills))
	}
	for _, k := range in.planned {
		if (k == FaultRabbitRestart || k == FaultZKExpirySlave || k == FaultZKExpiryMaster) && r.Counts[k] == 0 {
			r.Incomplete = append(r.Incomplete, k+" not made")
		}
	}
	if len(r.Skipped) > 0 {
		r.Incomplete = append(r.Incomplete, fmt.Sprintf("faults not injected before the run ended: %v", r.Skipped))
	}
}

// Failed reports whether the run must exit non-zero: a violated guarantee,
// or a fault plan not carried out.
func (r *Report) Failed() bool { return len(r.Violations) > 0 || len(r.Incomplete) > 0 }

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Summary prints the human-readable table.
func (r *Report) Summary(w io.Writer) {
	fmt.Fprintf(w, "chaos run %s (seed %d): %d clients, %.0fs of load, %d CPUs\n", r.RunID, r.Seed, r.Options.Clients, r.LoadSeconds, r.Machine.NumCPU)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "writes acknowledged\t%d (%.0f/s; %v)\n", r.Writes.Acked, r.Writes.PerSecond, r.Writes.ByOp)
	fmt.Fprintf(tw, "writes unanswered at the end\t%d\n", r.Writes.Unacked)
	fmt.Fprintf(tw, "HTTP write attempts / resends\t%d / %d (most for one id: %d)\n", r.Writes.Attempts, r.Writes.Retries, r.Writes.MaxAttempts)
	fmt.Fprintf(tw, "read-your-writes checks\t%d answered, %d unanswered for 30s, %d cut off by the end\n", r.Writes.RYWChecked, r.Writes.RYWUncertain, r.Writes.RYWCut)
	kinds := []string{FaultMasterKill, FaultSlaveKill, FaultRabbitRestart, FaultZKExpirySlave, FaultZKExpiryMaster}
	var faults []string
	for _, k := range kinds {
		if n := r.Counts[k]; n > 0 {
			faults = append(faults, fmt.Sprintf("%s %d", k, n))
		}
	}
	fmt.Fprintf(tw, "faults injected\t%s\n", strings.Join(faults, ", "))
	fmt.Fprintf(tw, "final master seq\t%d (converged in %.1fs: %v)\n", r.Final.MasterSeq, r.Final.ConvergeSeconds, r.Final.Converged)
	if r.Final.ChecksumsSkipped != "" {
		fmt.Fprintf(tw, "replica checksums\tskipped: %s\n", r.Final.ChecksumsSkipped)
	} else {
		fmt.Fprintf(tw, "replicas identical\t%v (%d workers)\n", r.Final.ReplicasIdentical, len(r.Final.Workers))
		for _, wc := range r.Final.Workers {
			fmt.Fprintf(tw, "  %s %s pid %d\tseq %d sha256 %.16s rows %v\n", wc.Role, wc.ID, wc.PID, wc.Applied, wc.Checksum, wc.Rows)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "unavailability\tn\tp50\tp99\tmax\ttarget\t\n")
	row := func(name string, s Stats, target string) {
		fmt.Fprintf(tw, "%s\t%d\t%.3fs\t%.3fs\t%.3fs\t%s\t\n", name, s.N, s.P50, s.P99, s.Max, target)
	}
	row("master kill → next write", r.MasterKill, "p99 < 2s")
	row("slave kill → replacement ready", r.SlaveKill, "< 3s")
	for _, e := range r.Events {
		if e.Kind == FaultRabbitRestart || e.Kind == FaultZKExpirySlave || e.Kind == FaultZKExpiryMaster {
			row(e.Kind, statsOf([]float64{e.Seconds}), "-")
		}
	}
	tw.Flush()
	for _, e := range r.Events {
		if e.Kind == FaultRabbitRestart || e.Kind == FaultZKExpirySlave || e.Kind == FaultZKExpiryMaster || !e.Recovered {
			fmt.Fprintf(w, "  %s at +%.1fs pid %d: recovered %v after %.3fs; %s\n", e.Kind, e.Offset, e.PID, e.Recovered, e.Seconds, e.Note)
		}
	}
	fmt.Fprintln(w)
	if len(r.TargetsMissed) > 0 {
		fmt.Fprintf(w, "targets missed: %s\n", strings.Join(r.TargetsMissed, "; "))
	}
	if len(r.Incomplete) > 0 {
		fmt.Fprintf(w, "INCOMPLETE: %s\n", strings.Join(r.Incomplete, "; "))
	}
	if len(r.Violations) == 0 {
		fmt.Fprintln(w, "violations: none")
	} else {
		fmt.Fprintf(w, "VIOLATIONS: %d\n", len(r.Violations))
		for _, v := range r.Violations {
			fmt.Fprintf(w, "  [%s] %s\n", v.Kind, v.Detail)
		}
	}
	if r.DataDirKept != "" {
		fmt.Fprintf(w, "data and logs kept in %s\n", r.DataDirKept)
	}
}
