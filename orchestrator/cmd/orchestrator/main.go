// Command orchestrator runs the DBaaS front door.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/adminauth"
	"github.com/rideshare-dbaas/rideshare/internal/cmdutil"
	"github.com/rideshare-dbaas/rideshare/internal/profiling"
	"github.com/rideshare-dbaas/rideshare/internal/zkutil"
	"github.com/rideshare-dbaas/rideshare/orchestrator"
)

func main() {
	var (
		opts       orchestrator.Options
		zk         string
		runtime    string
		workerBin  string
		dataDir    string
		logLevel   string
		workerLogs string
		keep       bool
		amqpFile   string
		tokenFile  string
		dieWith    bool
		nomadOpts  orchestrator.NomadOptions
		pprofAddr  string
		workerProf string
	)
	flag.StringVar(&opts.Listen, "listen", "127.0.0.1:8000", "HTTP listen address")
	flag.StringVar(&opts.AMQPURL, "amqp-url", "", "RabbitMQ URL with the stack's user (prefer --amqp-url-file or $"+cmdutil.EnvAMQPURL+": a command line is public)")
	flag.StringVar(&amqpFile, "amqp-url-file", "", "file (mode 0600) holding the RabbitMQ URL (default $"+cmdutil.EnvAMQPURLFile+")")
	flag.BoolVar(&opts.Dev, "dev", false, "dev mode: without an admin token the admin endpoints (crash, db/clear, scale) are open; loopback only")
	flag.StringVar(&tokenFile, "admin-token-file", "", "file (mode 0600) holding the admin bearer token (default $"+adminauth.EnvTokenFile+", else $"+adminauth.EnvToken+")")
	flag.StringVar(&opts.TraefikAPI, "traefik-api", "", "Traefik's API base URL (e.g. http://127.0.0.1:8088), for the cluster page's routing view")
	flag.StringVar(&zk, "zk-servers", "127.0.0.1:2181", "ZooKeeper servers, comma-separated")
	flag.StringVar(&opts.ZKRoot, "zk-root", "/rideshare", "ZooKeeper root of this DBaaS")
	flag.DurationVar(&opts.ZKTimeout, "zk-timeout", 2*time.Second, "ZooKeeper session timeout (workers get the same)")
	flag.StringVar(&opts.QueuePrefix, "queue-prefix", "", "prefix of every queue and exchange name")
	flag.StringVar(&runtime, "runtime", "process", "how workers run: process, nomad (the allocations of a Nomad job's group), or auto (nomad when a Nomad agent answers, else process)")
	flag.StringVar(&nomadOpts.Address, "nomad-addr", os.Getenv("NOMAD_ADDR"), "Nomad HTTP API (nomad runtime; default NOMAD_ADDR, else http://127.0.0.1:4646)")
	flag.StringVar(&nomadOpts.Job, "nomad-job", orchestrator.DefaultNomadJob, "the Nomad job whose group holds the workers (nomad runtime)")
	flag.StringVar(&nomadOpts.Group, "nomad-group", orchestrator.DefaultNomadGroup, "the job's task group of workers (nomad runtime)")
	flag.StringVar(&workerBin, "worker-binary", defaultWorkerBinary(), "worker binary (process runtime)")
	flag.StringVar(&dataDir, "data-dir", ".data/dbaas", "where workers keep their databases and logs (process runtime)")
	flag.StringVar(&workerLogs, "worker-log-level", "info", "workers' log level")
	flag.DurationVar(&opts.WriteTimeout, "write-timeout", 10*time.Second, "how long db/write waits for the master")
	flag.DurationVar(&opts.ReadTimeout, "read-timeout", 10*time.Second, "how long db/read waits for a slave")
	flag.DurationVar(&opts.Scale.Window, "scale-window", 2*time.Minute, "autoscaling window")
	flag.IntVar(&opts.Scale.ReadsPerSlave, "reads-per-slave", 20, "reads per window that one slave serves")
	flag.IntVar(&opts.Scale.MinSlaves, "min-slaves", 1, "fewest slaves")
	flag.IntVar(&opts.Scale.MaxSlaves, "max-slaves", 8, "most slaves")
	flag.BoolVar(&keep, "keep-workers", false, "leave workers running when the orchestrator stops (a new one adopts them)")
	flag.BoolVar(&dieWith, "workers-die-with-orchestrator", false, "have the kernel kill the workers when the orchestrator dies, however it dies (tests: nothing outlives them); off in production, where workers outlive a crashed orchestrator")
	flag.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	flag.StringVar(&pprofAddr, "pprof", "", "serve Go profiles (/debug/pprof/) on this loopback address (off when empty)")
	flag.StringVar(&workerProf, "worker-pprof", "", "the workers' --pprof address (127.0.0.1:0: each picks a port; off when empty)")
	flag.Parse()

	log, err := cmdutil.Logger("orchestrator", logLevel)
	if err != nil {
		cmdutil.Exit("orchestrator", err, 2)
	}
	opts.Logger = log
	opts.ZKServers = zkutil.SplitServers(zk)
	if opts.AMQPURL, err = cmdutil.AMQPURL(opts.AMQPURL, amqpFile); err != nil {
		cmdutil.Exit("orchestrator", err, 2)
	}
	if opts.AdminToken, err = adminauth.Load(tokenFile); err != nil {
		cmdutil.Exit("orchestrator", err, 2)
	}
	opts.TraefikAPI = strings.TrimRight(opts.TraefikAPI, "/")
	// The broker URL holds the stack's password: workers get it in their
	// environment, never on their command line.
	workerEnv := []string{cmdutil.EnvAMQPURL + "=" + opts.AMQPURL, cmdutil.EnvAMQPURLFile + "="}
	workerArgs := []string{
		"--zk-servers", strings.Join(opts.ZKServers, ","),
		"--zk-root", opts.ZKRoot,
		"--zk-timeout", opts.ZKTimeout.String(),
		"--queue-prefix", opts.QueuePrefix,
		"--log-level", workerLogs,
	}
	if workerProf != "" {
		workerArgs = append(workerArgs, "--pprof", workerProf)
	}
	if runtime == "auto" {
		// A Nomad agent that answers wins, when an address is configured;
		// else the process runtime.
		runtime = "process"
		if nomadOpts.Address != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			if err := orchestrator.NomadAnswers(ctx, nomadOpts.Address); err == nil {
				runtime = "nomad"
			} else {
				log.Warn("nomad does not answer; not using the nomad runtime", "err", err)
			}
			cancel()
		}
	}
	log.Info("worker runtime", "runtime", runtime)
	switch runtime {
	case "nomad":
		nomadOpts.Logger = log.With("subsystem", "runtime")
		rt, err := orchestrator.NewNomad(nomadOpts)
		if err != nil {
			cmdutil.Exit("orchestrator", err, 2)
		}
		opts.Runtime = rt
	case "process":
		rt, err := orchestrator.NewProcess(orchestrator.ProcessOptions{
			Binary: workerBin, Args: workerArgs, Env: workerEnv, DataDir: dataDir, Logger: log.With("subsystem", "runtime"),
			DieWithParent: dieWith,
		})
		if err != nil {
			cmdutil.Exit("orchestrator", err, 2)
		}
		opts.Runtime = rt
	default:
		cmdutil.Exit("orchestrator", fmt.Errorf("unknown runtime %q (want process, nomad or auto)", runtime), 2)
	}
	o, err := orchestrator.New(opts)
	if err != nil {
		cmdutil.Exit("orchestrator", err, 2)
	}
	ctx, stop := cmdutil.SignalContext()
	defer stop()
	if pprofAddr != "" {
		if _, err := profiling.Serve(ctx, pprofAddr, log.With("subsystem", "pprof")); err != nil {
			cmdutil.Exit("orchestrator", err, 2)
		}
	}
	err = o.Run(ctx)
	if cerr := opts.Runtime.Close(!keep); cerr != nil {
		log.Warn("closing the runtime", "err", cerr)
	}
	if err != nil {
		stop()
		cmdutil.Exit("orchestrator", err, 1)
	}
	os.Exit(0)
}

// defaultWorkerBinary is "worker" beside this binary.
func defaultWorkerBinary() string {
	exe, err := os.Executable()
	if err != nil {
		return "worker"
	}
	return filepath.Join(filepath.Dir(exe), "worker")
}
