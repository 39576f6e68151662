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
	"github.com/rideshare-dbaas/rideshare/internal/images"
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
		docker     orchestrator.DockerOptions
		keepDead   int
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
	flag.StringVar(&runtime, "runtime", orchestrator.RuntimeAuto, "how workers run: auto (Nomad when an address is configured and it answers, else Docker when its daemon answers, else process), process, docker or nomad (the allocations of a Nomad job's group)")
	flag.StringVar(&nomadOpts.Address, "nomad-addr", os.Getenv("NOMAD_ADDR"), "Nomad HTTP API (nomad runtime; default NOMAD_ADDR, else http://127.0.0.1:4646)")
	flag.StringVar(&nomadOpts.Job, "nomad-job", orchestrator.DefaultNomadJob, "the Nomad job whose group holds the workers (nomad runtime)")
	flag.StringVar(&nomadOpts.Group, "nomad-group", orchestrator.DefaultNomadGroup, "the job's task group of workers (nomad runtime)")
	flag.StringVar(&workerBin, "worker-binary", defaultWorkerBinary(), "worker binary (process runtime; its folder also builds a missing worker image)")
	flag.StringVar(&dataDir, "data-dir", ".data/dbaas", "host folder where workers keep their databases and logs")
	flag.IntVar(&keepDead, "keep-dead-workers", orchestrator.DefaultKeepDead, "how many dead workers' data to keep")
	flag.StringVar(&docker.Image, "worker-image", images.Ref("worker", images.DefaultTag), "worker image (docker runtime)")
	flag.StringVar(&docker.Stack, "stack", "", "name of this DBaaS's containers, label rideshare.stack (docker runtime; default from --zk-root)")
	flag.StringVar(&docker.PluginDir, "worker-plugin-dir", "", "host folder mounted over the worker image's /plugins, to ship plugins into running workers (docker runtime; default: the image's own)")
	flag.StringVar(&workerLogs, "worker-log-level", "info", "workers' log level (trace adds a line per request served)")
	flag.DurationVar(&opts.WriteTimeout, "write-timeout", 10*time.Second, "how long db/write waits for the master")
	flag.DurationVar(&opts.ReadTimeout, "read-timeout", 10*time.Second, "how long db/read waits for a slave")
	flag.DurationVar(&opts.Scale.Window, "scale-window", 2*time.Minute, "autoscaling window")
	flag.IntVar(&opts.Scale.ReadsPerSlave, "reads-per-slave", 20, "reads per window that one slave serves")
	flag.IntVar(&opts.Scale.MinSlaves, "min-slaves", 1, "fewest slaves")
	flag.IntVar(&opts.Scale.MaxSlaves, "max-slaves", 8, "most slaves")
	flag.BoolVar(&keep, "keep-workers", false, "leave workers running when the orchestrator stops (a new one adopts them)")
	flag.BoolVar(&dieWith, "workers-die-with-orchestrator", false, "have the kernel kill the workers when the orchestrator dies, however it dies (process runtime; tests: nothing outlives them); off in production, where workers outlive a crashed orchestrator")
	flag.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	flag.StringVar(&pprofAddr, "pprof", "", "serve Go profiles (/debug/pprof/) on this loopback address (off when empty)")
	flag.StringVar(&workerProf, "worker-pprof", "", "the workers' --pprof address (127.0.0.1:0: each picks a port; off when empty)")
	if err := cmdutil.ParseFlags(flag.CommandLine, "orchestrator", os.Args[1:]); err != nil {
		cmdutil.Exit("orchestrator", err, 2)
	}

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
	ctx, stop := cmdutil.SignalContext()
	defer stop()
	rtLog := log.With("subsystem", "runtime")
	probes := orchestrator.Probes{Docker: orchestrator.DockerProbe}
	if nomadOpts.Address != "" {
		probes.Nomad = func(ctx context.Context) error { return orchestrator.NomadAnswers(ctx, nomadOpts.Address) }
	}
	name, why, err := orchestrator.PickRuntime(ctx, runtime, probes)
	if err != nil {
		cmdutil.Exit("orchestrator", err, 2)
	}
	log.Info("runtime chosen", "runtime", name, "why", why)
	switch name {
	case orchestrator.RuntimeProcess:
		opts.Runtime, err = orchestrator.NewProcess(orchestrator.ProcessOptions{
			Binary: workerBin, Args: workerArgs, Env: workerEnv, DataDir: dataDir, KeepDead: keepDead, Logger: rtLog,
			DieWithParent: dieWith,
		})
	case orchestrator.RuntimeDocker:
		docker.Args, docker.Env, docker.DataDir, docker.KeepDead, docker.Logger = workerArgs, workerEnv, dataDir, keepDead, rtLog
		if docker.Stack == "" {
			docker.Stack = strings.Trim(strings.ReplaceAll(opts.ZKRoot, "/", "-"), "-")
		}
		if _, serr := os.Stat(workerBin); serr == nil {
			docker.BuildFrom = filepath.Dir(workerBin)
		}
		opts.Runtime, err = orchestrator.NewDocker(ctx, docker)
	case orchestrator.RuntimeNomad:
		nomadOpts.Logger = rtLog
		opts.Runtime, err = orchestrator.NewNomad(nomadOpts)
	default:
		err = fmt.Errorf("unknown runtime %q", name)
	}
	if err != nil {
		cmdutil.Exit("orchestrator", err, 2)
	}
	o, err := orchestrator.New(opts)
	if err != nil {
		cmdutil.Exit("orchestrator", err, 2)
	}
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
