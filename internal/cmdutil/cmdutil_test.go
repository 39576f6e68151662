package cmdutil

import (
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
