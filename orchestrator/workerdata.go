package orchestrator

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DefaultKeepDead is how many dead workers' data a runtime keeps by
// default (WorkerData.KeepDead).
const DefaultKeepDead = 5

// workerData is where workers keep their data on this host, one
// implementation for the process and docker runtimes: worker id has its
// database in Root/<id>/ and its log in Root/<id>.log (a container
// bind-mounts both).
//
// The data's life: a worker removed on purpose (scale-in, Runtime.Stop)
// loses its directory at once (its log stays, counted below). A worker
// that died keeps both, because the orchestrator may start it again on its
// own database (Reviver: the dead master when no slave can take over),
// which it decides within a reconcile pass. Of the dead workers' data only
// the KeepDead most recently used are kept: prune, called before every
// start, removes the older ones (their directory and log). A live worker's
// data is never touched.
type workerData struct {
	root     string
	keepDead int
	owner    int // uid and gid given to new directories and logs; -1: leave as created
	log      *slog.Logger
}

func newWorkerData(root string, keepDead, owner int, log *slog.Logger) (*workerData, error) {
	if root == "" {
		return nil, errors.New("worker data: a data directory is required")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("worker data: %w", err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("worker data: %w", err)
	}
	if keepDead == 0 {
		keepDead = DefaultKeepDead
	}
	return &workerData{root: abs, keepDead: max(keepDead, 0), owner: owner, log: log}, nil
}

func (d *workerData) dir(id string) string     { return filepath.Join(d.root, id) }
func (d *workerData) logPath(id string) string { return filepath.Join(d.root, id+".log") }

// validID keeps ids to plain names (they become paths and container names).
func validID(id string) error {
	if id == "" || len(id) > 64 || strings.ContainsAny(id, `/\:`) || id[0] == '.' {
		return fmt.Errorf("bad worker id %q", id)
	}
	return nil
}

// prepare makes worker id's directory and log file, owned by d.owner.
func (d *workerData) prepare(id string) error {
	if err := validID(id); err != nil {
		return err
	}
	dir := d.dir(id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("worker %s data: %w", id, err)
	}
	f, err := os.OpenFile(d.logPath(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("worker %s log: %w", id, err)
	}
	f.Close()
	if d.owner >= 0 {
		for _, p := range []string{dir, d.logPath(id)} {
			if err := os.Lchown(p, d.owner, d.owner); err != nil {
				return fmt.Errorf("worker %s data: %w", id, err)
			}
		}
		// Files the worker made earlier (a revived worker's database).
		err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, d.owner, d.owner)
		})
		if err != nil {
			return fmt.Errorf("worker %s data: %w", id, err)
		}
	}
	return nil
}

// hasDB reports whether worker id's database is on disk.
func (d *workerData) hasDB(id string) bool {
	if validID(id) != nil {
		return false
	}
	_, err := os.Stat(filepath.Join(d.dir(id), "db.sqlite"))
	return err == nil
}

// remove deletes worker id's directory (a worker removed on purpose); its
// log stays, under the dead workers' cap.
func (d *workerData) remove(id string) error {
	if err := validID(id); err != nil {
		return err
	}
	if err := os.RemoveAll(d.dir(id)); err != nil {
		return fmt.Errorf("remove worker %s data: %w", id, err)
	}
	d.log.Info("removed worker data", "id", id)
	return nil
}

// prune keeps the data of at most keepDead dead workers (those not in
// live), the most recently used; it removes the rest.
func (d *workerData) prune(live map[string]bool) {
	entries, err := os.ReadDir(d.root)
	if err != nil {
		d.log.Warn("listing worker data", "err", err)
		return
	}
	lastUse := map[string]time.Time{}
	for _, e := range entries {
		id := strings.TrimSuffix(e.Name(), ".log")
		if validID(id) != nil || live[id] || (!e.IsDir() && !strings.HasSuffix(e.Name(), ".log")) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		if t := info.ModTime(); t.After(lastUse[id]) {
			lastUse[id] = t
		}
	}
	dead := make([]string, 0, len(lastUse))
	for id := range lastUse {
		dead = append(dead, id)
	}
	// Newest first; the name breaks ties so the order is stable.
	slices.SortFunc(dead, func(a, b string) int {
		if c := lastUse[b].Compare(lastUse[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	for _, id := range dead[min(d.keepDead, len(dead)):] {
		err := errors.Join(os.RemoveAll(d.dir(id)), ignoreNotExist(os.Remove(d.logPath(id))))
		if err != nil {
			d.log.Warn("removing a dead worker's data", "id", id, "err", err)
			continue
		}
		d.log.Info("removed a dead worker's data (over the cap)", "id", id, "keep_dead", d.keepDead)
	}
}

func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
