package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
)

// watcher tells what the workers are doing: the orchestrator's view
// (GET /api/v1/workers, which joins the runtime with ZooKeeper but
// refreshes a znode's data only on its reconcile tick, once a second), and,
// when the ZooKeeper root is known, the worker znodes themselves, which the
// run polls for exact timings.
type watcher struct {
	api  *api
	zk   *zk.Conn
	root string
	log  *slog.Logger
}

func newWatcher(a *api, conn *zk.Conn, root string, log *slog.Logger) *watcher {
	return &watcher{api: a, zk: conn, root: root, log: log}
}

// registered returns the worker znodes (id → info); ok is false when the
// run cannot read ZooKeeper, and the caller falls back to the view.
func (w *watcher) registered() (map[string]wire.WorkerInfo, bool, error) {
	if w.zk == nil {
		return nil, false, nil
	}
	p := wire.WorkersPath(w.root)
	names, _, err := w.zk.Children(p)
	if err != nil {
		return nil, true, fmt.Errorf("list %s: %w", p, err)
	}
	out := make(map[string]wire.WorkerInfo, len(names))
	for _, n := range names {
		data, _, err := w.zk.Get(p + "/" + n)
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return nil, true, fmt.Errorf("read %s/%s: %w", p, n, err)
		}
		var info wire.WorkerInfo
		if json.Unmarshal(data, &info) == nil {
			out[n] = info
		}
	}
	return out, true, nil
}

// members returns what the workers say of themselves: from their znodes
// when the root is known, else from the orchestrator's view.
func (w *watcher) members(ctx context.Context) (map[string]workerView, error) {
	reg, ok, err := w.registered()
	if err != nil {
		return nil, err
	}
	out := map[string]workerView{}
	if ok {
		for id, in := range reg {
			out[id] = workerView{ID: id, PID: in.PID, Role: in.Role, State: in.State, Applied: in.Applied, Epoch: in.Epoch}
		}
		return out, nil
	}
	v, err := w.api.workers(ctx)
	if err != nil {
		return nil, err
	}
	for _, x := range v {
		out[x.ID] = x
	}
	return out, nil
}

// health summarises the orchestrator's view.
type health struct {
	view    []workerView
	master  *workerView
	slaves  []workerView // ready slaves
	pending []workerView // workers not ready (starting, syncing, unregistered)
}

func (h health) String() string {
	s := ""
	for _, v := range h.view {
		s += fmt.Sprintf("[%s pid %d %s/%s seq %d] ", v.ID, v.PID, v.Role, v.State, v.Applied)
	}
	return s
}

func (h health) ok() bool { return h.master != nil && len(h.slaves) > 0 && len(h.pending) == 0 }

func (w *watcher) health(ctx context.Context) (health, error) {
	v, err := w.api.workers(ctx)
	if err != nil {
		return health{}, err
	}
	h := health{view: v}
	for i, x := range v {
		switch {
		case x.Role == wire.RoleMaster && x.State == wire.StateReady && h.master == nil:
			h.master = &v[i]
		case x.Role == wire.RoleSlave && x.State == wire.StateReady:
			h.slaves = append(h.slaves, x)
		default:
			h.pending = append(h.pending, x)
		}
	}
	return h, nil
}

// waitHealthy waits until the orchestrator shows a ready master, at least
// one ready slave and no worker that is not ready.
func waitHealthy(ctx context.Context, w *watcher, timeout time.Duration) error {
	_, err := waitHealth(ctx, w, timeout)
	return err
}

func waitHealth(ctx context.Context, w *watcher, timeout time.Duration) (health, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last health
	var lastErr error
	for {
		h, err := w.health(ctx)
		if err == nil && h.ok() {
			return h, nil
		}
		last, lastErr = h, err
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return last, fmt.Errorf("cluster not healthy after %s: %w", timeout, lastErr)
			}
			return last, fmt.Errorf("cluster not healthy after %s: %s", timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
