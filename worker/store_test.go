package worker

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/rideshare-dbaas/rideshare/internal/wire"
	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

func mustOpenStore(t *testing.T) *Store {
	t.Helper()
	st, err := OpenStore(filepath.Join(t.TempDir(), "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// mustWrite runs fn as one logged write entry, the way the master does.
func mustWrite(t *testing.T, st *Store, id string, fn func(db pluginapi.DB) error) wire.Entry {
	t.Helper()
	ctx := context.Background()
	b, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Rollback()
	stmts, err := b.Savepoint(ctx, fn)
	if err != nil {
		t.Fatal(err)
	}
	e := b.Next(wire.KindWrite, 1)
	e.WriteID, e.Stmts, e.Reply = id, stmts, &wire.Reply{Status: 200, Result: json.RawMessage(`{}`)}
	if err := b.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

func exec(q string, args ...any) func(pluginapi.DB) error {
	return func(db pluginapi.DB) error {
		_, err := db.Exec(context.Background(), q, args...)
		return err
	}
}

func dump(t *testing.T, st *Store) string {
	t.Helper()
	db, done, err := st.Reader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	rows, err := db.Query(context.Background(), `SELECT k, v FROM kv ORDER BY k`)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rows.Values)
	return string(b)
}

// What the master records can be replayed on a replica to the same state.
func TestStoreReplicationReplay(t *testing.T) {
	master, replica := mustOpenStore(t), mustOpenStore(t)
	var entries []wire.Entry
	entries = append(entries, mustWrite(t, master, "", exec(`CREATE TABLE kv (k TEXT PRIMARY KEY, v)`)))
	entries = append(entries, mustWrite(t, master, "a", exec(`INSERT INTO kv VALUES (?, ?)`, "a", int64(1))))
	entries = append(entries, mustWrite(t, master, "b", exec(`INSERT INTO kv VALUES (?, ?)`, "b", []byte{1, 2})))
	entries = append(entries, mustWrite(t, master, "c", exec(`UPDATE kv SET v = v + ? WHERE k = ?`, 2.5, "a")))
	if err := replica.ApplyEntries(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
	if m, r := dump(t, master), dump(t, replica); m != r {
		t.Fatalf("replica differs:\nmaster  %s\nreplica %s", m, r)
	}
	if seq, _ := replica.Applied(); seq != 4 {
		t.Fatalf("replica applied %d, want 4", seq)
	}
	// Entries must continue the sequence exactly.
	err := replica.ApplyEntries(context.Background(), []wire.Entry{{Seq: 9, Epoch: 1, PrevEpoch: 1}})
	if err == nil {
		t.Fatal("a gap was applied")
	}
	// And the log: an entry that follows another epoch than ours is a
	// divergence, not something to apply.
	err = replica.ApplyEntries(context.Background(), []wire.Entry{{Seq: 5, Epoch: 3, PrevEpoch: 2}})
	if !errors.Is(err, ErrDiverged) {
		t.Fatalf("applying after a foreign epoch: %v, want ErrDiverged", err)
	}
}

func TestStoreSavepointRollsBackARefusal(t *testing.T) {
	st := mustOpenStore(t)
	mustWrite(t, st, "", exec(`CREATE TABLE kv (k TEXT PRIMARY KEY, v)`))
	ctx := context.Background()
	b, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Rollback()
	refusal := pluginapi.Errorf(pluginapi.CodeConflict, "no")
	stmts, err := b.Savepoint(ctx, func(db pluginapi.DB) error {
		if _, err := db.Exec(ctx, `INSERT INTO kv VALUES ('x', 1)`); err != nil {
			return err
		}
		return refusal
	})
	if !errors.Is(err, pluginapi.ErrConflict) || stmts != nil {
		t.Fatalf("got %v, %v", stmts, err)
	}
	if _, err := b.Savepoint(ctx, exec(`INSERT INTO kv VALUES ('y', 2)`)); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, st); got != `[["y",2]]` {
		t.Fatalf("after a refused and an accepted op: %s", got)
	}
}

func TestStoreDedupAndLog(t *testing.T) {
	st := mustOpenStore(t)
	mustWrite(t, st, "", exec(`CREATE TABLE kv (k TEXT PRIMARY KEY, v)`))
	mustWrite(t, st, "id-1", exec(`INSERT INTO kv VALUES ('a', 1)`))
	ctx := context.Background()
	b, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, ok, err := b.Lookup(ctx, "id-1")
	b.Rollback()
	if err != nil || !ok || r.Status != 200 {
		t.Fatalf("lookup id-1: %v %v %v", r, ok, err)
	}
	entries, ok, err := st.LogFrom(ctx, 2, 10)
	if err != nil || !ok || len(entries) != 1 || entries[0].WriteID != "id-1" {
		t.Fatalf("LogFrom(2) = %+v %v %v", entries, ok, err)
	}
	if ep, found, _ := st.EntryEpoch(ctx, 2); !found || ep != 1 {
		t.Fatalf("EntryEpoch(2) = %d %v", ep, found)
	}
}

func TestStorePrunesOldLog(t *testing.T) {
	st := mustOpenStore(t)
	st.KeepLog = 10
	mustWrite(t, st, "", exec(`CREATE TABLE kv (k INTEGER PRIMARY KEY)`))
	for i := range 1005 {
		mustWrite(t, st, "", exec(`INSERT INTO kv VALUES (?)`, int64(i)))
	}
	_, ok, err := st.LogFrom(context.Background(), 1, 10)
	if err != nil || ok {
		t.Fatalf("LogFrom(1) after pruning: ok=%v err=%v, want a request for a snapshot", ok, err)
	}
	if _, ok, _ := st.LogFrom(context.Background(), 1000, 10); !ok {
		t.Fatal("recent entries were pruned")
	}
}

// A snapshot holds exactly the data of the sequence number it reports.
func TestStoreSnapshot(t *testing.T) {
	st := mustOpenStore(t)
	mustWrite(t, st, "", exec(`CREATE TABLE kv (k TEXT PRIMARY KEY, v)`))
	mustWrite(t, st, "a", exec(`INSERT INTO kv VALUES ('a', 1)`))
	dst := filepath.Join(t.TempDir(), "snap.db")
	seq, err := st.Snapshot(context.Background(), dst)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := OpenStore(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if got, _ := snap.Applied(); got != seq || seq != 2 {
		t.Fatalf("snapshot seq %d, store says %d", got, seq)
	}
	if dump(t, snap) != dump(t, st) {
		t.Fatal("snapshot data differs")
	}
}

func TestReadOnlyDBRefusesExec(t *testing.T) {
	st := mustOpenStore(t)
	db, done, err := st.Reader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if _, err := db.Exec(context.Background(), `CREATE TABLE x (a)`); err == nil {
		t.Fatal("a read operation could write")
	}
}

func TestWaitApplied(t *testing.T) {
	st := mustOpenStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.WaitApplied(ctx, 1) }()
	mustWrite(t, st, "", exec(`CREATE TABLE kv (k)`))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := st.WaitApplied(ctx, 5); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitApplied past a cancel: %v", err)
	}
}
