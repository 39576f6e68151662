// Command worker runs one DBaaS worker (master or slave, decided at run
// time by the orchestrator's election). Its operation handlers are go-plugin
// binaries listed in a plugin directory's manifest (package pluginhost):
// the worker itself compiles in no handler.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"github.com/rideshare-dbaas/rideshare/internal/cmdutil"
	"github.com/rideshare-dbaas/rideshare/internal/zkutil"
	"github.com/rideshare-dbaas/rideshare/worker"
	"github.com/rideshare-dbaas/rideshare/worker/pluginhost"
)

// defaultPluginDir is "plugins" beside this binary (bin/plugins for
// bin/worker, which scripts/build-plugins.sh fills).
func defaultPluginDir() string {
	exe, err := os.Executable()
	if err != nil {
		return "plugins"
	}
	return filepath.Join(filepath.Dir(exe), "plugins")
}

func main() {
	var (
		opts     worker.Options
		zk       string
		logLevel string
		plugins  pluginhost.Config
		logFile  string
	)
	flag.StringVar(&opts.ID, "id", "", "worker id (unique; the orchestrator sets it)")
	flag.StringVar(&opts.DataDir, "data-dir", "", "directory of this worker's database")
	flag.StringVar(&opts.AMQPURL, "amqp-url", "amqp://127.0.0.1:5672/", "RabbitMQ URL")
	flag.StringVar(&zk, "zk-servers", "127.0.0.1:2181", "ZooKeeper servers, comma-separated")
	flag.StringVar(&opts.ZKRoot, "zk-root", "/rideshare", "ZooKeeper root of this DBaaS")
	flag.DurationVar(&opts.ZKTimeout, "zk-timeout", 2*time.Second, "ZooKeeper session timeout (failure detection)")
	flag.StringVar(&opts.QueuePrefix, "queue-prefix", "", "prefix of every queue and exchange name")
	flag.DurationVar(&opts.OpTimeout, "op-timeout", 5*time.Second, "deadline of one read handler call")
	flag.DurationVar(&opts.WriteOpTimeout, "write-op-timeout", time.Second, "deadline of one write handler call (it holds the write transaction)")
	flag.DurationVar(&opts.BatchBudget, "batch-budget", 2*time.Second, "how long the handlers of one group commit may run before the rest waits for the next one")
	flag.IntVar(&opts.BatchMax, "batch-max", 128, "most writes in one group commit")
	flag.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	flag.StringVar(&plugins.Dir, "plugin-dir", defaultPluginDir(), "directory of the handler plugins")
	flag.StringVar(&plugins.Manifest, "plugin-manifest", "", "plugin manifest (default <plugin-dir>/"+pluginhost.ManifestName+")")
	flag.StringVar(&logFile, "log-file", "", "also append the log to this file (a container's log outlives the container)")
	if err := cmdutil.ParseFlags(flag.CommandLine, "worker", os.Args[1:]); err != nil {
		cmdutil.Exit("worker", err, 2)
	}

	var logOut io.Writer = os.Stderr
	if logFile != "" {
		f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			cmdutil.Exit("worker", fmt.Errorf("log file: %w", err), 2)
		}
		defer f.Close()
		logOut = io.MultiWriter(os.Stderr, f)
	}
	log, err := cmdutil.LoggerTo(logOut, "worker", logLevel)
	if err != nil {
		cmdutil.Exit("worker", err, 2)
	}
	opts.Logger = log
	opts.ZKServers = zkutil.SplitServers(zk)
	// SIGHUP means "reload plugins" (host.Run); until Run listens, a SIGHUP
	// must not kill the worker (its default action), so take it now.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
	plugins.Logger = log.With("subsystem", "plugins")
	host, err := pluginhost.New(context.Background(), plugins)
	if err != nil {
		plugin.CleanupClients()
		cmdutil.Exit("worker", err, 2)
	}
	// Every exit path below kills the plugins first (os.Exit skips defers).
	exit := func(err error, code int) {
		host.Close()
		plugin.CleanupClients()
		cmdutil.Exit("worker", err, code)
	}
	opts.Registry = host
	w, err := worker.New(opts)
	if err != nil {
		exit(err, 2)
	}
	ctx, stop := cmdutil.SignalContext()
	defer stop()
	go host.Run(ctx) // rolling reload on SIGHUP or a changed manifest
	if err := w.Run(ctx); err != nil {
		code := 1
		if errors.Is(err, worker.ErrFenced) {
			code = 3
		}
		stop()
		exit(err, code)
	}
	stop()
	exit(nil, 0)
}
