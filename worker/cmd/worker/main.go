// Command worker runs one DBaaS worker (master or slave, decided at run
// time by the orchestrator's election).
package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/cmdutil"
	"github.com/rideshare-dbaas/rideshare/internal/zkutil"
	"github.com/rideshare-dbaas/rideshare/worker"
	"github.com/rideshare-dbaas/rideshare/worker/plugins/rideshare"
)

func main() {
	var (
		opts     worker.Options
		zk       string
		logLevel string
	)
	flag.StringVar(&opts.ID, "id", "", "worker id (unique; the orchestrator sets it)")
	flag.StringVar(&opts.DataDir, "data-dir", "", "directory of this worker's database")
	flag.StringVar(&opts.AMQPURL, "amqp-url", "amqp://127.0.0.1:5672/", "RabbitMQ URL")
	flag.StringVar(&zk, "zk-servers", "127.0.0.1:2181", "ZooKeeper servers, comma-separated")
	flag.StringVar(&opts.ZKRoot, "zk-root", "/rideshare", "ZooKeeper root of this DBaaS")
	flag.DurationVar(&opts.ZKTimeout, "zk-timeout", 2*time.Second, "ZooKeeper session timeout (failure detection)")
	flag.StringVar(&opts.QueuePrefix, "queue-prefix", "", "prefix of every queue and exchange name")
	flag.DurationVar(&opts.OpTimeout, "op-timeout", 5*time.Second, "deadline of one handler call")
	flag.IntVar(&opts.BatchMax, "batch-max", 128, "most writes in one group commit")
	flag.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	flag.Parse()

	log, err := cmdutil.Logger("worker", logLevel)
	if err != nil {
		cmdutil.Exit("worker", err, 2)
	}
	opts.Logger = log
	opts.ZKServers = zkutil.SplitServers(zk)
	reg, err := worker.NewStaticRegistry(context.Background(), rideshare.New())
	if err != nil {
		cmdutil.Exit("worker", err, 2)
	}
	opts.Registry = reg
	w, err := worker.New(opts)
	if err != nil {
		cmdutil.Exit("worker", err, 2)
	}
	ctx, stop := cmdutil.SignalContext()
	defer stop()
	if err := w.Run(ctx); err != nil {
		code := 1
		if errors.Is(err, worker.ErrFenced) {
			code = 3
		}
		stop()
		cmdutil.Exit("worker", err, code)
	}
	os.Exit(0)
}
