package worker

import (
	"context"
	"fmt"

	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

// Registry resolves operation names to handlers. The worker asks it on
// every request, so an implementation may swap handlers while the worker
// runs (a rolling plugin reload): a Handler returned by Lookup must stay
// usable until the call made with it returns.
type Registry interface {
	Lookup(op string) (Op, bool)
	// Infos lists every handler's info (operations and migrations).
	Infos() []pluginapi.Info
}

// ChangeNotifier is implemented by registries whose handlers can change
// while the worker runs (a plugin reload). Changed returns a channel that
// is closed at the next change; a master then applies the migrations the
// new handlers declare.
type ChangeNotifier interface {
	Changed() <-chan struct{}
}

// Op is a resolved operation.
type Op struct {
	Handler     pluginapi.Handler
	HandlerName string
	Kind        pluginapi.Kind
}

// StaticRegistry serves a fixed set of handlers (in-process handlers in
// tests, or plugins loaded once).
type StaticRegistry struct {
	ops   map[string]Op
	infos []pluginapi.Info
}

var _ Registry = (*StaticRegistry)(nil)

// NewStaticRegistry asks each handler for its info and indexes its
// operations. Two handlers serving one operation is an error.
func NewStaticRegistry(ctx context.Context, handlers ...pluginapi.Handler) (*StaticRegistry, error) {
	r := &StaticRegistry{ops: map[string]Op{}}
	for _, h := range handlers {
		info, err := h.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("handler info: %w", err)
		}
		if err := IndexOps(r.ops, h, info); err != nil {
			return nil, err
		}
		r.infos = append(r.infos, info)
	}
	return r, nil
}

// IndexOps adds info's operations, served by h, to ops; it is shared by
// every Registry implementation so they agree on what is valid.
func IndexOps(ops map[string]Op, h pluginapi.Handler, info pluginapi.Info) error {
	if info.Name == "" {
		return fmt.Errorf("handler without a name")
	}
	for _, op := range info.Ops {
		if op.Name == "" {
			return fmt.Errorf("handler %s declares an operation without a name", info.Name)
		}
		if prev, dup := ops[op.Name]; dup {
			return fmt.Errorf("operation %q is served by both %s and %s", op.Name, prev.HandlerName, info.Name)
		}
		if op.Kind != pluginapi.Read && op.Kind != pluginapi.Write {
			return fmt.Errorf("operation %q of %s has unknown kind %q", op.Name, info.Name, op.Kind)
		}
		ops[op.Name] = Op{Handler: h, HandlerName: info.Name, Kind: op.Kind}
	}
	return nil
}

// Lookup implements Registry.
func (r *StaticRegistry) Lookup(op string) (Op, bool) {
	o, ok := r.ops[op]
	return o, ok
}

// Infos implements Registry.
func (r *StaticRegistry) Infos() []pluginapi.Info { return r.infos }
