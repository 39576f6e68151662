// Command chaos runs the DBaaS chaos run of issue 5 (see internal/chaos):
// clients write and read through the orchestrator while masters and slaves
// are killed, RabbitMQ is restarted and a worker's ZooKeeper session
// expires; at the end it checks that no acknowledged write was lost or
// applied twice, that the replicas are identical and that no read with
// min_seq saw older data. Exit status 1 on any violation (or when the fault
// plan could not be carried out), 2 on bad usage or a stack that did not
// start.
//
//	chaos --duration 4m --rabbit-restart node --zk-expiry both --report chaos.json
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/chaos"
	"github.com/rideshare-dbaas/rideshare/internal/cmdutil"
	"github.com/rideshare-dbaas/rideshare/internal/zkutil"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, " ") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	var (
		o        chaos.Options
		zk       string
		report   string
		logLevel string
		short    bool
		extra    multi
		amqpFile string
	)
	bin := defaultBinDir()
	flag.StringVar(&o.URL, "url", "", "attach to this orchestrator instead of starting one (e.g. http://127.0.0.1:8000)")
	flag.StringVar(&o.OrchestratorBin, "orchestrator-binary", filepath.Join(bin, "orchestrator"), "orchestrator binary (own stack)")
	flag.StringVar(&o.WorkerBin, "worker-binary", filepath.Join(bin, "worker"), "worker binary (own stack)")
	flag.StringVar(&o.Runtime, "runtime", "process", "own stack's runtime: process or docker (workers as containers)")
	flag.StringVar(&o.WorkerImage, "worker-image", "rideshare/worker:dev", "worker image (own stack, docker runtime; make images)")
	flag.Var(&extra, "orchestrator-arg", "extra argument for the own orchestrator (repeatable)")
	flag.StringVar(&o.DataDir, "data-dir", "", "process runtime data dir (own stack: default a temp dir; attached: needed for the replica checksums)")
	flag.BoolVar(&o.KeepData, "keep-data", false, "keep the own stack's data dir and logs (always kept on failure)")
	flag.StringVar(&o.AMQPURL, "amqp-url", "", "RabbitMQ URL with a user of the run's own (default: --amqp-url-file, $"+cmdutil.EnvAMQPURLFile+" or $"+cmdutil.EnvAMQPURL+")")
	flag.StringVar(&amqpFile, "amqp-url-file", "", "file (mode 0600) holding the RabbitMQ URL")
	flag.StringVar(&zk, "zk-servers", "127.0.0.1:2181", "ZooKeeper servers, comma-separated")
	flag.StringVar(&o.ZKRoot, "zk-root", "", "ZooKeeper root of the DBaaS (own stack: /chaos-<run>)")
	flag.StringVar(&o.QueuePrefix, "queue-prefix", "", "queue prefix (own stack: chaos-<run>.)")
	flag.DurationVar(&o.ZKTimeout, "zk-timeout", 2*time.Second, "workers' ZooKeeper session timeout")
	flag.DurationVar(&o.ScaleWindow, "scale-window", 30*time.Second, "own orchestrator's autoscaling window")
	flag.IntVar(&o.MinSlaves, "min-slaves", 2, "own orchestrator's fewest slaves")
	flag.IntVar(&o.MaxSlaves, "max-slaves", 3, "own orchestrator's most slaves")
	flag.IntVar(&o.Clients, "clients", 16, "concurrent clients")
	flag.DurationVar(&o.Duration, "duration", 3*time.Minute, "load and fault phase")
	flag.IntVar(&o.MasterKills, "master-kills", 20, "crash/master calls")
	flag.IntVar(&o.SlaveKills, "slave-kills", 20, "crash/slave calls")
	flag.StringVar(&o.RabbitRestart, "rabbit-restart", chaos.RabbitNode, "restart RabbitMQ once: none, app (stop_app/start_app) or node (stop the node, then servers.sh up)")
	flag.StringVar(&o.RabbitNode, "rabbit-node", "rabbit@localhost", "RabbitMQ node name for rabbitmqctl")
	flag.StringVar(&o.ServersScript, "servers-script", "scripts/servers.sh", "script that starts RabbitMQ again (rabbit-restart node)")
	flag.StringVar(&o.ZKExpiry, "zk-expiry", chaos.ExpireBoth, "expire a worker's ZooKeeper session once: none, slave, master or both")
	flag.DurationVar(&o.SettleTimeout, "settle-timeout", 60*time.Second, "deadline for the replicas to converge at the end")
	flag.DurationVar(&o.EventTimeout, "event-timeout", 30*time.Second, "deadline for recovering from one fault")
	flag.Uint64Var(&o.Seed, "seed", 0, "random seed (0: random)")
	flag.StringVar(&report, "report", "", "write the report as JSON to this file")
	flag.BoolVar(&short, "short", false, "the short variant: 45s, 4 master and 4 slave kills, no RabbitMQ restart, slave and master ZK expiry")
	flag.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	flag.Parse()

	log, err := cmdutil.Logger("chaos", logLevel)
	if err != nil {
		cmdutil.Exit("chaos", err, 2)
	}
	if o.AMQPURL, err = cmdutil.AMQPURL(o.AMQPURL, amqpFile); err != nil {
		cmdutil.Exit("chaos", err, 2)
	}
	if short {
		// The short variant's settings, except those given explicitly.
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		var s chaos.Options
		chaos.Short(&s)
		if !set["duration"] {
			o.Duration = s.Duration
		}
		if !set["master-kills"] {
			o.MasterKills = s.MasterKills
		}
		if !set["slave-kills"] {
			o.SlaveKills = s.SlaveKills
		}
		if !set["rabbit-restart"] {
			o.RabbitRestart = s.RabbitRestart
		}
		if !set["zk-expiry"] {
			o.ZKExpiry = s.ZKExpiry
		}
	}
	o.Logger = log
	o.ZKServers = zkutil.SplitServers(zk)
	if _, err := os.Stat(o.ServersScript); err != nil && !filepath.IsAbs(o.ServersScript) {
		// Run from elsewhere than the repository: bin/../scripts/servers.sh.
		if alt := filepath.Join(bin, "..", o.ServersScript); fileExists(alt) {
			o.ServersScript = alt
		}
	}
	o.OrchestratorArgs = extra
	if o.URL != "" {
		o.OrchestratorBin, o.WorkerBin = "", ""
	}
	c, err := chaos.New(o)
	if err != nil {
		cmdutil.Exit("chaos", err, 2)
	}
	ctx, stop := cmdutil.SignalContext()
	defer stop()
	// Bounded: load + faults, then at most the settle deadline and teardown.
	ctx, cancel := context.WithTimeout(ctx, o.Duration+o.SettleTimeout+3*time.Minute)
	defer cancel()
	rep, err := c.Run(ctx)
	if err != nil {
		cmdutil.Exit("chaos", err, 2)
	}
	if rep != nil {
		rep.Summary(os.Stdout)
		if report != "" {
			if werr := rep.WriteJSON(report); werr != nil {
				fmt.Fprintf(os.Stderr, "chaos: writing %s: %v\n", report, werr)
			}
		}
	}
	if rep.Failed() {
		os.Exit(1)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// defaultBinDir is the directory of this binary when it sits in bin/, else
// ./bin.
func defaultBinDir() string {
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		if _, err := os.Stat(filepath.Join(dir, "worker")); err == nil {
			return dir
		}
	}
	return "bin"
}
