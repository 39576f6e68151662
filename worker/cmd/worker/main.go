// Command worker runs one DBaaS worker (master or slave, decided at run
// time by the orchestrator's election). Its operation handlers are go-plugin
// binaries listed in a plugin directory's manifest (package pluginhost):
// the worker itself compiles in no handler.
package main

import (
	"context"
	"crypto/ed25519"
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
	"github.com/rideshare-dbaas/rideshare/internal/metrics"
	"github.com/rideshare-dbaas/rideshare/internal/pluginsig"
	"github.com/rideshare-dbaas/rideshare/internal/profiling"
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

// pluginPubName is the public key make build writes beside bin/worker.
const pluginPubName = "plugin-signing.pub"

// pluginKey loads the manifest's public key: the flag, the environment, or
// the file beside this binary. A key inside the plugin directory is
// refused: whoever can write there could sign for themselves.
func pluginKey(file, pluginDir string) (ed25519.PublicKey, error) {
	if file == "" && os.Getenv(pluginsig.EnvPublicKeyFile) == "" && os.Getenv(pluginsig.EnvPublicKey) == "" {
		if exe, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(exe), pluginPubName); fileExists(p) {
				file = p
			}
		}
	}
	pub, src, err := pluginsig.LoadPublicKey(file)
	if err != nil {
		return nil, err
	}
	if pub == nil {
		return nil, pluginhost.ErrNoPublicKey
	}
	if src != pluginsig.EnvPublicKey {
		absKey, err1 := filepath.Abs(src)
		absDir, err2 := filepath.Abs(pluginDir)
		if err1 == nil && err2 == nil {
			if rel, err := filepath.Rel(absDir, absKey); err == nil && filepath.IsLocal(rel) {
				return nil, fmt.Errorf("the plugin public key %s is inside the plugin directory %s: keep it outside", src, pluginDir)
			}
		}
	}
	return pub, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func main() {
	var (
		opts     worker.Options
		zk       string
		logLevel string
		plugins  pluginhost.Config
		pprof    string
		amqpFile string
		pubFile  string
		logFile  string
		metAddr  string
	)
	flag.StringVar(&opts.ID, "id", "", "worker id (unique; the orchestrator sets it)")
	flag.StringVar(&opts.DataDir, "data-dir", "", "directory of this worker's database")
	flag.StringVar(&opts.AMQPURL, "amqp-url", "", "RabbitMQ URL with the stack's user (prefer --amqp-url-file or $"+cmdutil.EnvAMQPURL+", which the orchestrator sets: a command line is public)")
	flag.StringVar(&amqpFile, "amqp-url-file", "", "file (mode 0600) holding the RabbitMQ URL (default $"+cmdutil.EnvAMQPURLFile+")")
	flag.StringVar(&zk, "zk-servers", "127.0.0.1:2181", "ZooKeeper servers, comma-separated")
	flag.StringVar(&opts.ZKRoot, "zk-root", "/rideshare", "ZooKeeper root of this DBaaS")
	flag.DurationVar(&opts.ZKTimeout, "zk-timeout", 2*time.Second, "ZooKeeper session timeout (failure detection)")
	flag.StringVar(&opts.QueuePrefix, "queue-prefix", "", "prefix of every queue and exchange name")
	flag.DurationVar(&opts.OpTimeout, "op-timeout", 5*time.Second, "deadline of one read handler call")
	flag.DurationVar(&opts.WriteOpTimeout, "write-op-timeout", time.Second, "deadline of one write handler call (it holds the write transaction)")
	flag.DurationVar(&opts.BatchBudget, "batch-budget", 2*time.Second, "how long the handlers of one group commit may run before the rest waits for the next one")
	flag.IntVar(&opts.BatchMax, "batch-max", 128, "most writes in one group commit")
	flag.StringVar(&logLevel, "log-level", "info", "trace (adds a line per request served), debug, info, warn or error")
	flag.StringVar(&plugins.Dir, "plugin-dir", defaultPluginDir(), "directory of the handler plugins")
	flag.StringVar(&pprof, "pprof", "", "serve Go profiles (/debug/pprof/) on this loopback address (port 0 picks one; off when empty)")
	flag.StringVar(&plugins.Manifest, "plugin-manifest", "", "plugin manifest (default <plugin-dir>/"+pluginhost.ManifestName+"), signed in <manifest>.sig")
	flag.StringVar(&pubFile, "plugin-pubkey", "", "public key that signs the plugin manifest, outside the plugin directory (default $"+pluginsig.EnvPublicKeyFile+", $"+pluginsig.EnvPublicKey+", else "+pluginPubName+" beside this binary)")
	flag.StringVar(&metAddr, "metrics-listen", "127.0.0.1:0", "serve Prometheus /metrics on this host:port (port 0 picks one); the address is published in the worker's ZooKeeper record, so give one the orchestrator can reach; off when empty")
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
	if opts.AMQPURL, err = cmdutil.AMQPURL(opts.AMQPURL, amqpFile); err != nil {
		cmdutil.Exit("worker", err, 2)
	}
	// SIGHUP means "reload plugins" (host.Run); until Run listens, a SIGHUP
	// must not kill the worker (its default action), so take it now.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
	plugins.Logger = log.With("subsystem", "plugins")
	met := metrics.New("worker")
	plugins.Metrics, opts.Metrics = met.Registerer(), met.Registerer()
	if plugins.PublicKey, err = pluginKey(pubFile, plugins.Dir); err != nil {
		cmdutil.Exit("worker", err, 2)
	}
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
	ctx, stop := cmdutil.SignalContext()
	defer stop()
	if metAddr != "" {
		if opts.MetricsAddr, err = met.Serve(ctx, metAddr, log.With("subsystem", "metrics")); err != nil {
			exit(err, 2)
		}
	}
	if pprof != "" {
		if _, err := profiling.Serve(ctx, pprof, log.With("subsystem", "pprof")); err != nil {
			exit(err, 2)
		}
	}
	w, err := worker.New(opts)
	if err != nil {
		exit(err, 2)
	}
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
