// Command bench is `make bench`: our DBaaS and one rqlite node side by side
// in one run (internal/bench), the table printed and, with -docs, written
// into docs/benchmarks.md between its markers.
//
//	bench -docs docs/benchmarks.md -json .bench/report.json -profile-dir .bench/profiles
//	bench -smoke -out /tmp/bench.md     # the harness check of make test (seconds, not speed)
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rideshare-dbaas/rideshare/internal/bench"
	"github.com/rideshare-dbaas/rideshare/internal/cmdutil"
	"github.com/rideshare-dbaas/rideshare/internal/zkutil"
)

func main() { os.Exit(run()) }

// intList is a flag of comma-separated client counts.
type intList []int

func (l *intList) String() string {
	s := make([]string, len(*l))
	for i, v := range *l {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("not a client count: %q", f)
		}
		out = append(out, n)
	}
	*l = out
	return nil
}

func run() int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	smoke := false
	for _, a := range os.Args[1:] {
		if a == "-smoke" || a == "--smoke" || a == "-smoke=true" || a == "--smoke=true" {
			smoke = true
		}
	}
	opts := bench.Defaults()
	if smoke {
		opts = bench.Smoke()
	}
	clients := intList(opts.Clients)
	fs.Bool("smoke", false, "the harness check of make test: every phase with tiny loads, errors fail the run (defaults below change)")
	fs.StringVar(&opts.Repo, "repo", ".", "the repository (scripts/run.sh, bin/)")
	fs.StringVar(&opts.WorkDir, "work-dir", "", "state of the stacks and rqlite (default <repo>/.bench, or a temporary directory with -smoke)")
	fs.StringVar(&opts.Rqlited, "rqlited", "", "rqlite binary (default <repo>/bin/rqlited; scripts/rqlite.sh builds it)")
	fs.StringVar(&opts.Name, "name", opts.Name, "stack name prefix (ZooKeeper root, queue prefix)")
	fs.IntVar(&opts.PortBase, "port-base", opts.PortBase, "ports: 1-slave stack BASE.., N-slave stack BASE+100.., rqlite BASE+400..401")
	fs.Var(&clients, "clients", "client counts of the side-by-side table, comma-separated")
	fs.IntVar(&opts.CompareClients, "compare-clients", opts.CompareClients, "clients of the slaves comparison and of the targets")
	fs.DurationVar(&opts.Duration, "duration", opts.Duration, "measured time of one load")
	fs.DurationVar(&opts.Warmup, "warmup", opts.Warmup, "unmeasured time before each load")
	fs.IntVar(&opts.Rounds, "rounds", opts.Rounds, "alternating rounds (results are ranges over them)")
	fs.IntVar(&opts.Slaves, "slaves", opts.Slaves, "slave count compared with 1")
	fs.IntVar(&opts.MixClients, "mix-clients", opts.MixClients, "public API mix: clients")
	fs.DurationVar(&opts.MixDuration, "mix-duration", opts.MixDuration, "public API mix: measured time of one run")
	fs.IntVar(&opts.Seeds, "seeds", opts.Seeds, "users created on each side before the reads")
	fs.IntVar(&opts.Probes, "probes", opts.Probes, "times each fixed step (disk sync, ZooKeeper sync+get, RabbitMQ confirm) is timed")
	fs.DurationVar(&opts.Timeout, "timeout", opts.Timeout, "timeout of one request")
	fs.DurationVar(&opts.Idle, "idle", opts.Idle, "the shared servers' idle background is sampled this long before each round")
	fs.StringVar(&opts.ProfileDir, "profile-dir", "", "take CPU profiles (orchestrator, master, slave) under 3 loads into this directory (off when empty)")
	fs.IntVar(&opts.ProfileSeconds, "profile-seconds", opts.ProfileSeconds, "length of each CPU profile")
	phases := fs.String("phases", strings.Join(bench.AllPhases, ","), "phases to run, comma-separated: "+strings.Join(bench.AllPhases, ", "))
	docs := fs.String("docs", "", "write the section between the markers of this file (docs/benchmarks.md)")
	out := fs.String("out", "", "also write the Markdown section to this file")
	jsonFile := fs.String("json", "", "also write the report as JSON to this file")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	opts.Clients = clients
	opts.Phases = strings.Split(*phases, ",")
	opts.Progress = os.Stderr
	// The servers the stacks use (scripts/stack.sh reads the same variables).
	if u := os.Getenv("AMQP_URL"); u != "" {
		opts.AMQPURL = u
	}
	if z := os.Getenv("ZK_SERVERS"); z != "" {
		opts.ZKServers = zkutil.SplitServers(z)
	}
	if smoke && opts.WorkDir == "" {
		dir, err := os.MkdirTemp("", "rideshare-bench-smoke-")
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
		opts.WorkDir = dir
	}
	if smoke && opts.ProfileDir == "" {
		opts.ProfileDir = filepath.Join(opts.WorkDir, "profiles")
	}
	if abs, err := filepath.Abs(opts.Repo); err == nil {
		opts.Repo = abs
	}
	b, err := bench.New(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 2
	}
	ctx, stop := cmdutil.SignalContext()
	defer stop()
	rep, err := b.Run(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	var md bytes.Buffer
	if err := rep.Markdown(&md); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	fmt.Println()
	os.Stdout.Write(md.Bytes())
	partial := len(opts.Phases) < len(bench.AllPhases)
	if partial && *docs != "" {
		// docs/benchmarks.md keeps full runs only.
		fmt.Fprintf(os.Stderr, "bench: a partial run (-phases %s) leaves %s alone (use -out)\n", *phases, *docs)
		*docs = ""
	}
	if err := writeOutputs(rep, md.Bytes(), *docs, *out, *jsonFile); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	if partial {
		return 0 // nothing to check it against
	}
	if err := rep.Check(smoke); err != nil {
		fmt.Fprintf(os.Stderr, "bench: the harness did not measure everything:\n%v\n", err)
		return 1
	}
	return 0
}

func writeOutputs(rep *bench.Report, md []byte, docs, out, jsonFile string) error {
	if docs != "" {
		doc, err := os.ReadFile(docs)
		if err != nil {
			return err
		}
		updated, err := bench.ReplaceSection(doc, md)
		if err != nil {
			return fmt.Errorf("%s: %w", docs, err)
		}
		if err := os.WriteFile(docs, updated, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: wrote the table into %s\n", docs)
	}
	if out != "" {
		if err := os.WriteFile(out, md, 0o644); err != nil {
			return err
		}
	}
	if jsonFile != "" {
		var buf bytes.Buffer
		if err := rep.WriteJSON(&buf); err != nil {
			return err
		}
		if err := os.WriteFile(jsonFile, buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}
