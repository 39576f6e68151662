// Package cmdutil holds what every binary's main needs: flags that can
// also come from the environment, a structured logger and a context
// cancelled by SIGINT or SIGTERM.
package cmdutil

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rideshare-dbaas/rideshare/internal/reqid"
)

// LevelTrace is below debug: a line per request served (the worker's
// "write applied", "read served"). Debug keeps the lines per batch and per
// event without paying for one per request (make bench runs its workers
// at debug); trace adds them, to follow requests by their ids.
const LevelTrace = slog.LevelDebug - 4

// Logger returns a JSON slog logger on stderr at level ("trace", "debug",
// "info", "warn", "error"), with the component's name on every line.
func Logger(component, level string) (*slog.Logger, error) {
	return LoggerTo(os.Stderr, component, level)
}

// LoggerTo is Logger writing to w. A line logged with a context carrying a
// request id has it as request_id (package reqid).
func LoggerTo(w io.Writer, component, level string) (*slog.Logger, error) {
	l := LevelTrace
	if !strings.EqualFold(level, "trace") {
		if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
			return nil, fmt.Errorf("log level %q: %w", level, err)
		}
	}
	h := reqid.NewHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l, ReplaceAttr: traceName}))
	return slog.New(h).With("component", component), nil
}

// traceName prints LevelTrace as "TRACE" rather than slog's "DEBUG-4".
func traceName(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.LevelKey && len(groups) == 0 {
		if l, ok := a.Value.Any().(slog.Level); ok && l == LevelTrace {
			a.Value = slog.StringValue("TRACE")
		}
	}
	return a
}

// SignalContext is cancelled on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// Exit prints err (if any) and exits with code.
func Exit(component string, err error, code int) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", component, err)
	}
	os.Exit(code)
}

// EnvName is the environment variable that sets flag name of component
// when the command line does not: the component and the flag upper-cased,
// '-' turned into '_' ("worker", "amqp-url" → WORKER_AMQP_URL). One
// variable per component, so a worker started by an orchestrator does not
// take the orchestrator's settings from the environment it inherits.
func EnvName(component, name string) string {
	return strings.ToUpper(strings.ReplaceAll(component+"_"+name, "-", "_"))
}

// ParseFlags parses args into fs, then sets every flag the command line
// did not set from its environment variable (EnvName), if that is set: the
// same binary is configured by flags under the process runtime and by
// environment in a container or a jobspec. The command line wins. A bad
// value in the environment is an error that names the variable. Each
// flag's usage text says which variable sets it.
func ParseFlags(fs *flag.FlagSet, component string, args []string) error {
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage += " [$" + EnvName(component, f.Name) + "]"
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		env := EnvName(component, f.Name)
		v, ok := os.LookupEnv(env)
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
		}
	})
	return errors.Join(errs...)
}
