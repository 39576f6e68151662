package cmdutil

import (
	"context"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		url     string
		timeout time.Duration
		err     string
	}{
		{"defaults", nil, nil, "amqp://default", time.Second, ""},
		{"environment", nil, map[string]string{"WORKER_AMQP_URL": "amqp://env", "WORKER_ZK_TIMEOUT": "3s"}, "amqp://env", 3 * time.Second, ""},
		{"command line wins", []string{"--amqp-url", "amqp://flag"}, map[string]string{"WORKER_AMQP_URL": "amqp://env"}, "amqp://flag", time.Second, ""},
		{"other components' variables are ignored", nil, map[string]string{"ORCHESTRATOR_AMQP_URL": "amqp://orch"}, "amqp://default", time.Second, ""},
		{"bad value names the variable", nil, map[string]string{"WORKER_ZK_TIMEOUT": "soon"}, "", 0, `WORKER_ZK_TIMEOUT="soon"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			fs := flag.NewFlagSet("worker", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			url := fs.String("amqp-url", "amqp://default", "broker")
			timeout := fs.Duration("zk-timeout", time.Second, "session timeout")
			err := ParseFlags(fs, "worker", tt.args)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || *url != tt.url || *timeout != tt.timeout {
				t.Fatalf("got %q %s %v, want %q %s", *url, *timeout, err, tt.url, tt.timeout)
			}
			if u := fs.Lookup("amqp-url").Usage; !strings.Contains(u, "$WORKER_AMQP_URL") {
				t.Fatalf("usage %q does not name the variable", u)
			}
		})
	}
}

// The worker's trace level sits below debug, prints as TRACE, and a debug
// logger leaves its lines out.
func TestLoggerTraceLevel(t *testing.T) {
	for _, c := range []struct {
		level string
		want  bool
	}{
		{"trace", true}, {"TRACE", true}, {"debug", false}, {"info", false},
	} {
		t.Run(c.level, func(t *testing.T) {
			var b strings.Builder
			l, err := LoggerTo(&b, "worker", c.level)
			if err != nil {
				t.Fatal(err)
			}
			l.Log(context.Background(), LevelTrace, "read served")
			got := strings.Contains(b.String(), `"level":"TRACE"`) && strings.Contains(b.String(), "read served")
			if got != c.want || (!c.want && b.Len() > 0) {
				t.Fatalf("level %s: logged %q, want a TRACE line: %v", c.level, b.String(), c.want)
			}
		})
	}
	if _, err := LoggerTo(io.Discard, "worker", "loud"); err == nil {
		t.Fatal("an unknown level was taken")
	}
}
