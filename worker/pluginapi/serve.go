package pluginapi

import (
	stdlog "log"
	"os"
	"strings"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
)

// EnvLogLevel sets a plugin's log level (trace, debug, info, warn, error);
// the default is info.
const EnvLogLevel = "RIDESHARE_PLUGIN_LOG_LEVEL"

// parentPollInterval is how often a plugin checks that its worker lives.
const parentPollInterval = 250 * time.Millisecond

// Serve runs h as a handler plugin; a plugin's main is just
//
//	func main() { pluginapi.Serve(myhandler.New()) }
//
// It logs with hclog as JSON on stderr, which go-plugin forwards into the
// worker's structured log (stdout is the handshake channel: nothing may be
// written there), watches its parent so that it exits when the worker dies
// even if the kernel's parent-death signal was missed, and serves gRPC only.
// It does not return.
func Serve(h Handler) {
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "handler",
		Level:      hclog.LevelFromString(envOr(EnvLogLevel, "info")),
		Output:     os.Stderr, // the real stderr: go-plugin swaps os.Stderr later
		JSONFormat: true,
	})
	hclog.SetDefault(logger)
	stdlog.SetFlags(0)
	stdlog.SetOutput(logger.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true}))

	go watchParent(logger, os.Getppid(), parentPollInterval, os.Exit)

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{
			ProtocolVersion: {PluginName: &HandlerPlugin{Impl: h}},
		},
		GRPCServer: plugin.DefaultGRPCServer,
		Logger:     logger,
	})
	os.Exit(0)
}

// watchParent calls exit(1) once the process's parent is no longer ppid:
// the worker died (even by SIGKILL) and the plugin was re-parented. It is
// the second line of defence after the host's Pdeathsig, which the kernel
// ties to the thread that forked rather than the process.
func watchParent(logger hclog.Logger, ppid int, every time.Duration, exit func(int)) {
	// A worker that is PID 1 (a container's init) has ppid 1 here; nothing
	// to watch then, and nothing outlives a container's init anyway.
	t := time.NewTicker(every)
	defer t.Stop()
	for range t.C {
		if now := os.Getppid(); now != ppid {
			logger.Error("worker process died; plugin exiting", "worker_pid", ppid, "new_parent_pid", now)
			exit(1)
			return
		}
	}
}

func envOr(k, def string) string {
	if v := strings.TrimSpace(os.Getenv(k)); v != "" {
		return v
	}
	return def
}
