// Command orchestrator runs the DBaaS front door.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

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
		pprofAddr  string
		workerProf string
	)
	flag.StringVar(&opts.Listen, "listen", "127.0.0.1:8000", "HTTP listen address")
	flag.StringVar(&opts.AMQPURL, "amqp-url", "amqp://127.0.0.1:5672/", "RabbitMQ URL")
	flag.StringVar(&zk, "zk-servers", "127.0.0.1:2181", "ZooKeeper servers, comma-separated")
	flag.StringVar(&opts.ZKRoot, "zk-root", "/rideshare", "ZooKeeper root of this DBaaS")
	flag.DurationVar(&opts.ZKTimeout, "zk-timeout", 2*time.Second, "ZooKeeper session timeout (workers get the same)")
	flag.StringVar(&opts.QueuePrefix, "queue-prefix", "", "prefix of every queue and exchange name")
	flag.StringVar(&runtime, "runtime", "process", "how workers run: process")
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
	workerArgs := []string{
		"--amqp-url", opts.AMQPURL,
		"--zk-servers", strings.Join(opts.ZKServers, ","),
		"--zk-root", opts.ZKRoot,
		"--zk-timeout", opts.ZKTimeout.String(),
		"--queue-prefix", opts.QueuePrefix,
		"--log-level", workerLogs,
	}
	if workerProf != "" {
		workerArgs = append(workerArgs, "--pprof", workerProf)
	}
	switch runtime {
	case "process":
		rt, err := orchestrator.NewProcess(orchestrator.ProcessOptions{
			Binary: workerBin, Args: workerArgs, DataDir: dataDir, Logger: log.With("subsystem", "runtime"),
		})
		if err != nil {
			cmdutil.Exit("orchestrator", err, 2)
		}
		opts.Runtime = rt
	default:
		cmdutil.Exit("orchestrator", fmt.Errorf("unknown runtime %q (want process)", runtime), 2)
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
