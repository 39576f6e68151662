package orchestrator

import (
	"context"
	"errors"
)

// Runtime starts, lists and stops workers. The orchestrator owns this
// interface; process, docker and nomad implementations satisfy it.
type Runtime interface {
	// Name is the runtime's name (RuntimeProcess, RuntimeDocker, ...), as
	// logged and shown by /readyz and /api/v1/workers.
	Name() string
	// Start launches a worker with the given id.
	Start(ctx context.Context, id string) (Instance, error)
	// Kill stops a worker at once (SIGKILL or the runtime's equivalent).
	Kill(ctx context.Context, id string) error
	// Stop removes a worker on purpose (scale-in): it stops gracefully
	// (SIGTERM, then kill after a grace period), finishing or requeueing
	// what it holds, and the runtime then deletes its data.
	Stop(ctx context.Context, id string) error
	// List returns the workers that are alive now.
	List(ctx context.Context) ([]Instance, error)
	// Exits reports ids of workers that ended, so the orchestrator reacts
	// at once instead of waiting for ZooKeeper's session timeout. A runtime
	// that cannot tell returns nil.
	Exits() <-chan string
	// Close releases the runtime; with killAll it also stops every worker
	// (keeping their data, so a new orchestrator can revive the last master).
	Close(killAll bool) error
}

// Adopter is implemented by runtimes that can take over a worker started
// by an earlier orchestrator (found through its znode), so that a
// restarted orchestrator starts none twice.
type Adopter interface {
	Adopt(ctx context.Context, id string, pid int) (bool, error)
}

// Reviver is implemented by runtimes that keep a dead worker's data and
// can start it again under the same id, on that data.
type Reviver interface {
	CanRevive(id string) bool
}

// Scheduler is implemented by runtimes whose scheduler, not the
// orchestrator, creates, names, replaces and removes workers (Nomad: the
// workers are the allocations of the job's worker group). The orchestrator
// then never calls Start for a new worker: it says how many workers it
// wants in total (one master plus the desired slaves) and reads the
// workers the scheduler placed through List, under ids the runtime derives
// from the scheduler's own (the allocation id). Scale is called on every
// reconcile pass with the same n while nothing changes, so it must be
// cheap and idempotent; a request the scheduler refuses for now (a
// deployment in progress) is retried by the runtime, not dropped.
type Scheduler interface {
	Scale(ctx context.Context, n int) error
}

// Instance is a running worker as the runtime sees it.
type Instance struct {
	ID  string `json:"id"`
	PID int    `json:"pid"` // host pid of the worker's main process
}

// ErrNoSuchWorker is returned for an id the runtime does not know.
var ErrNoSuchWorker = errors.New("no such worker")
