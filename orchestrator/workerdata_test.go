package orchestrator

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// mustDeadWorker makes worker id's folder, database and log, last used at.
func mustDeadWorker(t *testing.T, d *workerData, id string, at time.Time) {
	t.Helper()
	if err := d.prepare(id); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dir(id), "db.sqlite"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{d.dir(id), d.logPath(id)} {
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func TestWorkerDataPrune(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name     string
		keepDead int
		live     []string
		want     []string
	}{
		{"keeps the newest dead, and the live", 2, []string{"w-old"},
			[]string{"w-3", "w-3.log", "w-4", "w-4.log", "w-old", "w-old.log"}},
		{"negative keeps none", -1, []string{"w-4"},
			[]string{"w-4", "w-4.log"}},
		{"default cap", 0, nil,
			[]string{"w-0", "w-0.log", "w-1", "w-1.log", "w-2", "w-2.log", "w-3", "w-3.log", "w-4", "w-4.log"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := newWorkerData(t.TempDir(), tt.keepDead, -1, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			mustDeadWorker(t, d, "w-old", now.Add(-time.Hour)) // oldest: live in the first case
			for i, id := range []string{"w-0", "w-1", "w-2", "w-3", "w-4"} {
				mustDeadWorker(t, d, id, now.Add(time.Duration(i-5)*time.Minute))
			}
			// A log without a folder (a worker scaled in) counts as dead too.
			if err := os.WriteFile(d.logPath("w-scaled"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			_ = os.Chtimes(d.logPath("w-scaled"), now.Add(-2*time.Hour), now.Add(-2*time.Hour))
			live := map[string]bool{}
			for _, id := range tt.live {
				live[id] = true
			}
			d.prune(live)
			if got := names(t, d.root); !slices.Equal(got, tt.want) {
				t.Fatalf("left %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWorkerDataRemoveKeepsTheLog(t *testing.T) {
	d, err := newWorkerData(t.TempDir(), 0, -1, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	mustDeadWorker(t, d, "w-1", time.Now())
	if !d.hasDB("w-1") {
		t.Fatal("hasDB false after prepare")
	}
	if err := d.remove("w-1"); err != nil {
		t.Fatal(err)
	}
	if d.hasDB("w-1") || !slices.Equal(names(t, d.root), []string{"w-1.log"}) {
		t.Fatalf("after remove: %v", names(t, d.root))
	}
	for _, bad := range []string{"", "../x", "a/b", ".hidden"} {
		if d.prepare(bad) == nil || d.remove(bad) == nil || d.hasDB(bad) {
			t.Errorf("id %q accepted", bad)
		}
	}
}
