package pluginhost

import (
	"bytes"
	"context"
	"github.com/rideshare-dbaas/rideshare/internal/cmdutil"
	"io"
	"log"
	"log/slog"
	"strings"

	hclog "github.com/hashicorp/go-hclog"
)

// slogLogger adapts the worker's *slog.Logger to hclog.Logger, the logger
// go-plugin writes to: its own lines (process start and exit) and every
// line a plugin logs on stderr (hclog JSON, parsed back into key/values).
// So plugin logs land in the worker's structured log, tagged with the
// plugin's name.
type slogLogger struct {
	l       *slog.Logger
	name    string
	implied []any
}

var _ hclog.Logger = (*slogLogger)(nil)

func newSlogLogger(l *slog.Logger) *slogLogger { return &slogLogger{l: l} }

// levelTrace is below slog.LevelDebug, like hclog's Trace below Debug:
// the workers' trace level (cmdutil.LevelTrace).
const levelTrace = cmdutil.LevelTrace

func toSlog(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return levelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (s *slogLogger) Log(level hclog.Level, msg string, args ...interface{}) {
	if level == hclog.Off {
		return
	}
	lvl := toSlog(level)
	ctx := context.Background()
	if !s.l.Enabled(ctx, lvl) {
		return
	}
	// go-plugin's own lines carry "plugin" = the binary's path; our
	// records already carry "plugin" = the plugin's name.
	for i := 0; i+1 < len(args); i += 2 {
		if args[i] == "plugin" {
			args = append([]any(nil), args...) // not the caller's slice
			args[i] = "plugin_path"
		}
	}
	if s.name != "" {
		args = append(args, "logger", s.name)
	}
	s.l.Log(ctx, lvl, msg, args...)
}

func (s *slogLogger) Trace(msg string, args ...interface{}) { s.Log(hclog.Trace, msg, args...) }
func (s *slogLogger) Debug(msg string, args ...interface{}) { s.Log(hclog.Debug, msg, args...) }
func (s *slogLogger) Info(msg string, args ...interface{})  { s.Log(hclog.Info, msg, args...) }
func (s *slogLogger) Warn(msg string, args ...interface{})  { s.Log(hclog.Warn, msg, args...) }
func (s *slogLogger) Error(msg string, args ...interface{}) { s.Log(hclog.Error, msg, args...) }

func (s *slogLogger) enabled(l hclog.Level) bool {
	return s.l.Enabled(context.Background(), toSlog(l))
}

func (s *slogLogger) IsTrace() bool { return s.enabled(hclog.Trace) }
func (s *slogLogger) IsDebug() bool { return s.enabled(hclog.Debug) }
func (s *slogLogger) IsInfo() bool  { return s.enabled(hclog.Info) }
func (s *slogLogger) IsWarn() bool  { return s.enabled(hclog.Warn) }
func (s *slogLogger) IsError() bool { return s.enabled(hclog.Error) }

func (s *slogLogger) ImpliedArgs() []interface{} { return s.implied }

func (s *slogLogger) With(args ...interface{}) hclog.Logger {
	c := *s
	c.l = s.l.With(args...)
	c.implied = append(append([]any(nil), s.implied...), args...)
	return &c
}

func (s *slogLogger) Name() string { return s.name }

func (s *slogLogger) Named(name string) hclog.Logger {
	c := *s
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (s *slogLogger) ResetNamed(name string) hclog.Logger {
	c := *s
	c.name = name
	return &c
}

// SetLevel is a no-op: the worker's handler decides the level.
func (s *slogLogger) SetLevel(hclog.Level) {}

// GetLevel reports the lowest level the worker's handler takes (go-plugin
// skips parsing plugin lines below it).
func (s *slogLogger) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if s.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

func (s *slogLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(s.StandardWriter(opts), "", 0)
}

func (s *slogLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	infer := opts != nil && opts.InferLevels
	return &stdWriter{s: s, infer: infer}
}

// stdWriter turns standard-library log lines into records.
type stdWriter struct {
	s     *slogLogger
	infer bool
}

func (w *stdWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		msg, level := string(line), hclog.Info
		if w.infer {
			for prefix, l := range map[string]hclog.Level{"[TRACE]": hclog.Trace, "[DEBUG]": hclog.Debug, "[INFO]": hclog.Info, "[WARN]": hclog.Warn, "[ERROR]": hclog.Error, "[ERR]": hclog.Error} {
				if strings.HasPrefix(msg, prefix) {
					msg, level = strings.TrimSpace(msg[len(prefix):]), l
					break
				}
			}
		}
		w.s.Log(level, msg)
	}
	return len(p), nil
}
