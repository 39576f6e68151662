package orchestrator

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestPickRuntime(t *testing.T) {
	up := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("connection refused") }
	tests := []struct {
		name, want string
		probes     Probes
		got, why   string
		err        bool
	}{
		{name: "explicit process", want: "process", probes: Probes{Docker: up}, got: "process"},
		{name: "explicit docker, even when down", want: "docker", probes: Probes{Docker: down}, got: "docker"},
		{name: "explicit nomad", want: "nomad", got: "nomad"},
		{name: "auto: nomad first", want: "auto", probes: Probes{Nomad: up, Docker: up}, got: "nomad", why: "Nomad answers"},
		{name: "auto: nomad down, docker up", want: "auto", probes: Probes{Nomad: down, Docker: up}, got: "docker", why: "Nomad does not answer"},
		{name: "auto: no nomad, docker up", want: "", probes: Probes{Docker: up}, got: "docker", why: "no Nomad address"},
		{name: "auto: nothing answers", want: "auto", probes: Probes{Docker: down}, got: "process", why: "the Docker daemon does not answer (connection refused)"},
		{name: "unknown", want: "kubernetes", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why, err := PickRuntime(context.Background(), tt.want, tt.probes)
			if tt.err {
				if err == nil {
					t.Fatalf("got %q, want an error", got)
				}
				return
			}
			if err != nil || got != tt.got || !strings.Contains(why, tt.why) {
				t.Fatalf("got %q (%s), %v; want %q (%s)", got, why, err, tt.got, tt.why)
			}
		})
	}
}

// A probe that hangs does not hang the choice.
func TestPickRuntimeProbeDeadline(t *testing.T) {
	hang := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	got, _, err := PickRuntime(context.Background(), "auto", Probes{Docker: hang})
	if err != nil || got != "process" {
		t.Fatalf("got %q, %v", got, err)
	}
}
