// Package cmdutil holds what every binary's main needs: a structured
// logger and a context cancelled by SIGINT or SIGTERM.
package cmdutil

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Logger returns a JSON slog logger on stderr at level ("debug", "info",
// "warn", "error"), with the component's name on every line.
func Logger(component, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	h := slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l})
	return slog.New(h).With("component", component), nil
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
