package orchestrator

import (
	"context"
	"encoding/json"
	"log/slog"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/rideshare-dbaas/rideshare/internal/testenv"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
	"github.com/rideshare-dbaas/rideshare/internal/zkutil"
)

// fakeRuntime is a Runtime (and Reviver) made of functions; nil ones do
// nothing.
type fakeRuntime struct {
	mu        sync.Mutex
	started   []string
	canRevive func(id string) bool
}

var (
	_ Runtime = (*fakeRuntime)(nil)
	_ Reviver = (*fakeRuntime)(nil)
)

func (f *fakeRuntime) Start(_ context.Context, id string) (Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = append(f.started, id)
	return Instance{ID: id, PID: 9000 + len(f.started)}, nil
}
func (f *fakeRuntime) Name() string                             { return "fake" }
func (f *fakeRuntime) Kill(context.Context, string) error       { return nil }
func (f *fakeRuntime) Stop(context.Context, string) error       { return nil }
func (f *fakeRuntime) List(context.Context) ([]Instance, error) { return nil, nil }
func (f *fakeRuntime) Exits() <-chan string                     { return nil }
func (f *fakeRuntime) Close(bool) error                         { return nil }
func (f *fakeRuntime) CanRevive(id string) bool                 { return f.canRevive != nil && f.canRevive(id) }
func (f *fakeRuntime) startedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.started...)
}

// mustZK connects to the test ZooKeeper under a root of the test's own.
func mustZK(t *testing.T) (*zkutil.Session, string) {
	t.Helper()
	testenv.RequireServers(t)
	log := slog.New(slog.DiscardHandler)
	zks, err := zkutil.Connect(testenv.ZKServers(), 8*time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := zks.WaitSession(ctx, testenv.ZKServers()); err != nil {
		t.Fatal(err)
	}
	root := "/test-" + testenv.Name(t)
	if err := zkutil.EnsurePath(zks.Conn, wire.WorkersPath(root)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var del func(p string)
		del = func(p string) {
			kids, _, _ := zks.Conn.Children(p)
			for _, k := range kids {
				del(path.Join(p, k))
			}
			_ = zks.Conn.Delete(p, -1)
		}
		del(root)
		zks.Close()
	})
	return zks, root
}

// An election must not pick a slave that lacks a write the orchestrator
// acknowledged: it waits for the candidate's znode to catch up, then
// restarts the dead master on its own data instead. Only a runtime that
// cannot revive gets the best candidate anyway.
func TestElection_GatedByTheAcknowledgedWatermark(t *testing.T) {
	tests := []struct {
		name       string
		applied    uint64 // the only slave's znode
		epoch      uint64 // the epoch of its last entry
		acked      uint64 // what the orchestrator acknowledged, in epoch ackedEpoch
		ackedEpoch uint64
		waited     time.Duration
		canRevive  bool
		wantMaster string // "" = no election yet
		wantStart  string // what the runtime was asked to start
	}{
		{"a candidate with every acknowledged write is elected", 7, 1, 7, 1, 0, true, "s1", ""},
		{"a candidate below the watermark waits first", 5, 1, 7, 1, 0, true, "", ""},
		{"then the old master is revived on its data", 5, 1, 7, 1, 4 * time.Second, true, "old", "old"},
		{"a runtime that cannot revive gets the best candidate", 5, 1, 7, 1, 4 * time.Second, false, "s1", ""},
		// A longer log of an older epoch holds a deposed master's
		// unacknowledged entries, not the acknowledged ones of epoch 2.
		{"a longer log of an older epoch is behind", 9, 1, 7, 2, 0, true, "", ""},
		{"a later epoch is ahead even when shorter", 6, 3, 7, 2, 0, true, "s1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			zks, root := mustZK(t)
			info := wire.WorkerInfo{ID: "s1", PID: 101, Role: wire.RoleSlave, State: wire.StateReady, Applied: tt.applied, Epoch: tt.epoch}
			b, _ := json.Marshal(info)
			if _, err := zks.Conn.Create(wire.WorkersPath(root)+"/s1", b, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
				t.Fatal(err)
			}
			rec, _ := json.Marshal(wire.MasterRecord{ID: "old", Epoch: 1})
			if _, err := zks.Conn.Create(wire.MasterPath(root), rec, 0, zk.WorldACL(zk.PermAll)); err != nil {
				t.Fatal(err)
			}
			rt := &fakeRuntime{canRevive: func(id string) bool { return tt.canRevive && id == "old" }}
			o := &Orchestrator{opts: Options{ZKRoot: root}, log: slog.New(slog.DiscardHandler), rt: rt}
			o.acked.set(tt.ackedEpoch, tt.acked)
			c := newCluster(o, zks)
			if tt.waited > 0 {
				c.gatedSince = time.Now().Add(-tt.waited)
			}
			r, version, exists, err := c.readMaster()
			if err != nil || !exists {
				t.Fatalf("read master: %v %v", exists, err)
			}
			zkw, err := c.readWorkers()
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.elect(context.Background(), r, version, exists, map[string]int{"s1": 101}, zkw)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.wantMaster {
				t.Fatalf("elected %q, want %q", got, tt.wantMaster)
			}
			after, _, _, _ := c.readMaster()
			switch {
			case tt.wantMaster == "" && after.Epoch != 1:
				t.Fatalf("the master record changed while the election waited: %+v", after)
			case tt.wantMaster != "" && (after.ID != tt.wantMaster || after.Epoch != 2):
				t.Fatalf("master record %+v, want %s in master epoch 2", after, tt.wantMaster)
			}
			if started := strings.Join(rt.startedIDs(), ","); started != tt.wantStart {
				t.Fatalf("runtime started %q, want %q", started, tt.wantStart)
			}
		})
	}
}
