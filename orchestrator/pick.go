package orchestrator

import (
	"context"
	"fmt"
	"time"
)

// Runtime names, as the orchestrator's --runtime flag takes them.
const (
	RuntimeAuto    = "auto"
	RuntimeProcess = "process"
	RuntimeDocker  = "docker"
	RuntimeNomad   = "nomad"
)

// Probe tells whether a runtime can run workers here: its daemon or agent
// answers. A nil Probe means the runtime is not configured.
type Probe func(ctx context.Context) error

// Probes are the automatic choice's candidates, in order of preference.
type Probes struct {
	Nomad  Probe // nil unless a Nomad address is configured
	Docker Probe
}

// probeTimeout bounds each probe of an automatic choice.
const probeTimeout = 3 * time.Second

// PickRuntime resolves the --runtime flag to a runtime name, and says why.
// An explicit process, docker or nomad is taken as is (the runtime's
// constructor then fails clearly when it cannot work). auto takes Nomad
// when it is configured and answers, else Docker when its daemon answers,
// else processes.
func PickRuntime(ctx context.Context, want string, probes Probes) (name, why string, err error) {
	switch want {
	case RuntimeProcess, RuntimeDocker, RuntimeNomad:
		return want, "chosen with --runtime " + want, nil
	case RuntimeAuto, "":
	default:
		return "", "", fmt.Errorf("unknown runtime %q (want auto, process, docker or nomad)", want)
	}
	try := func(p Probe) error {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		return p(pctx)
	}
	why = "auto:"
	if probes.Nomad == nil {
		why += " no Nomad address configured;"
	} else if err := try(probes.Nomad); err != nil {
		why += fmt.Sprintf(" Nomad does not answer (%v);", err)
	} else {
		return RuntimeNomad, why + " Nomad answers", nil
	}
	if probes.Docker == nil {
		why += " Docker not configured;"
	} else if err := try(probes.Docker); err != nil {
		why += fmt.Sprintf(" the Docker daemon does not answer (%v);", err)
	} else {
		return RuntimeDocker, why + " the Docker daemon answers", nil
	}
	return RuntimeProcess, why + " so workers run as processes", nil
}
