package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
)

// runApplier applies the sync stream. It is the only writer of a slave's
// database, so entries are applied strictly one after another.
func (w *Worker) runApplier(ctx context.Context, needSnapshot bool) error {
	if needSnapshot {
		if err := w.resync(ctx); err != nil {
			return err
		}
	}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case d := <-w.syncIn:
			if err := w.handleSync(ctx, d); err != nil && ctx.Err() == nil {
				w.log.Warn("sync apply failed; will repair", "err", err)
				signalChan(w.kick)
			}
		case <-w.kick:
			if w.isSlave() {
				if err := w.repairToMaster(ctx); err != nil && ctx.Err() == nil {
					w.log.Warn("repair failed", "err", err)
				}
			}
		case <-tick.C:
			// Idle slaves poll the master's log now and then, so a gap left
			// by a lost sync message is closed even when no write follows.
			if w.isSlave() && (len(w.syncIn) == 0 || w.catchingUp.Load()) {
				_ = w.repairToMaster(ctx)
			}
		}
	}
}

// isSlave reports whether this worker is a ready slave of a known master
// (the only state in which asking the master for repairs makes sense).
func (w *Worker) isSlave() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.role == wire.RoleSlave && w.state == wire.StateReady && !w.promoting &&
		w.masterID != "" && w.masterID != w.opts.ID
}

func (w *Worker) handleSync(ctx context.Context, d amqp.Delivery) error {
	var b wire.SyncBatch
	if err := json.Unmarshal(d.Body, &b); err != nil {
		return fmt.Errorf("decode sync batch: %w", err)
	}
	if b.Barrier != "" {
		w.mu.Lock()
		if b.Barrier == w.barrier && w.barrierSeen != nil {
			close(w.barrierSeen)
			w.barrierSeen = nil
		}
		w.mu.Unlock()
		return nil
	}
	role, state, _ := w.roleState()
	if role == wire.RoleMaster || state != wire.StateReady {
		// A master ignores the stream (its own batches come back to it). A
		// syncing slave gets everything from its snapshot and the repair.
		return nil
	}
	w.noteEpoch(b.Epoch)
	return w.applyStream(ctx, b.Entries)
}

// maxPending bounds the entries a slave keeps beyond a gap; past it, the
// later ones come again through the repair (or a snapshot).
const maxPending = 20000

// applyStream applies entries that continue the store's sequence, skips
// duplicates and entries of deposed masters, and resyncs from a snapshot
// when it finds that it holds an entry the current master does not
// (divergence after a failover). Entries beyond a gap are kept (pending),
// never dropped: the gap is repaired from the master's log, or closed by
// the master republishing what it could not confirm, whichever comes
// first, and the kept entries are applied then.
func (w *Worker) applyStream(ctx context.Context, entries []wire.Entry) error {
	st := w.store.Load()
	seq, epoch := st.Applied()
	for _, e := range entries {
		switch {
		case e.Seq <= seq:
			ep, found, err := st.EntryEpoch(ctx, e.Seq)
			if err != nil {
				return err
			}
			if found && e.Epoch > ep {
				w.log.Warn("diverged from the new master; resyncing from a snapshot", "seq", e.Seq, "mine_epoch", ep, "master_epoch", e.Epoch)
				return w.resync(ctx)
			}
		case e.Epoch < epoch:
			// From a deposed master: never applied.
			w.log.Warn("ignoring entry of a deposed master", "seq", e.Seq, "epoch", e.Epoch, "current", epoch)
		default:
			w.addPending(e)
		}
	}
	if err := w.applyPending(ctx); err != nil {
		return err
	}
	held, lowest := w.pendingStats()
	if held == 0 {
		return nil
	}
	seq, _ = w.store.Load().Applied()
	w.log.Info("gap in the sync stream; repairing", "have", seq, "next_held", lowest, "held", held)
	if err := w.repairFrom(ctx, seq+1); err != nil {
		return fmt.Errorf("gap after %d (keeping %d later entries until it closes): %w", seq, held, err)
	}
	return w.applyPending(ctx)
}

// addPending keeps e until the entries before it are applied. Of two
// entries for one sequence number, the later epoch's wins: the older one
// is a deposed master's unconfirmed entry.
func (w *Worker) addPending(e wire.Entry) {
	w.pendingMu.Lock()
	defer w.pendingMu.Unlock()
	if w.pending == nil {
		w.pending = map[uint64]wire.Entry{}
	}
	if old, ok := w.pending[e.Seq]; ok && old.Epoch >= e.Epoch {
		return
	}
	if len(w.pending) >= maxPending {
		return
	}
	w.pending[e.Seq] = e
}

func (w *Worker) pendingStats() (held int, lowest uint64) {
	w.pendingMu.Lock()
	defer w.pendingMu.Unlock()
	for s := range w.pending {
		if lowest == 0 || s < lowest {
			lowest = s
		}
	}
	return len(w.pending), lowest
}

// applyPending applies the kept entries that continue the store's log, in
// runs of one transaction each, and forgets those the store has passed.
func (w *Worker) applyPending(ctx context.Context) error {
	for {
		st := w.store.Load()
		seq, epoch := st.Applied()
		w.pendingMu.Lock()
		var run []wire.Entry
		for s := range w.pending {
			if s <= seq {
				delete(w.pending, s)
			}
		}
		for k := seq + 1; len(run) < 1000; k++ {
			e, ok := w.pending[k]
			if !ok {
				break
			}
			if e.Epoch < epoch {
				delete(w.pending, k) // a deposed master's
				break
			}
			run = append(run, e)
			epoch = e.Epoch
		}
		w.pendingMu.Unlock()
		if len(run) == 0 {
			return nil
		}
		err := st.ApplyEntries(ctx, run)
		if errors.Is(err, ErrDiverged) {
			w.log.Warn("diverged from the master's log; resyncing from a snapshot", "err", err)
			return w.resync(ctx)
		}
		if err != nil {
			// An entry the master committed that this replica cannot
			// replay (a statement that depends on something only the
			// master had): after a few tries, start over from a snapshot
			// rather than stay stuck below the master.
			if w.replayFailed(run[0].Seq) >= 3 {
				w.log.Error("an entry keeps failing to replay; resyncing from a snapshot", "seq", run[0].Seq, "err", err)
				return w.resync(ctx)
			}
			return err
		}
	}
}

// replayFailed counts consecutive failures to replay from seq on.
func (w *Worker) replayFailed(seq uint64) int {
	w.pendingMu.Lock()
	defer w.pendingMu.Unlock()
	if w.failSeq != seq {
		w.failSeq, w.failCount = seq, 0
	}
	w.failCount++
	return w.failCount
}

// dropPending forgets the entries kept beyond a gap: a worker promoted to
// master has drained the stream (the barrier), so what it could not place
// was never acknowledged (a master acks nothing above an unconfirmed
// entry) and its own log is the reference from now on.
func (w *Worker) dropPending(why string) {
	w.pendingMu.Lock()
	n := len(w.pending)
	w.pending = nil
	w.pendingMu.Unlock()
	if n > 0 {
		w.log.Warn("dropping entries held beyond a gap", "entries", n, "why", why)
	}
}

// repairToMaster asks the master for everything after what this slave
// applied; once that succeeded, a slave that was catching up after a
// reconnect is complete again (and electable).
func (w *Worker) repairToMaster(ctx context.Context) error {
	seq, _ := w.store.Load().Applied()
	if err := w.repairFrom(ctx, seq+1); err != nil {
		return err
	}
	if err := w.applyPending(ctx); err != nil {
		return err
	}
	if w.catchingUp.CompareAndSwap(true, false) {
		w.log.Info("caught up with the master after a reconnect")
		signalChan(w.zkNudge)
	}
	return nil
}

// repairFrom fetches log entries from the master, from seq from on, and
// applies them; if the master no longer has them it resyncs.
func (w *Worker) repairFrom(ctx context.Context, from uint64) error {
	for {
		prevEpoch, err := w.entryEpoch(ctx, from-1)
		if err != nil {
			return err
		}
		var r wire.RepairReply
		if err := w.callRepair(ctx, wire.RepairRequest{From: from, PrevEpoch: prevEpoch, Limit: 2000, Worker: w.opts.ID}, 3*time.Second, &r); err != nil {
			return err
		}
		if r.Diverged {
			w.log.Warn("this replica's log does not match the master's; resyncing from a snapshot", "from", from, "prev_epoch", prevEpoch)
			return w.resync(ctx)
		}
		if r.Truncated {
			w.log.Info("master's log no longer reaches back; resyncing from a snapshot", "from", from)
			return w.resync(ctx)
		}
		st := w.store.Load()
		seq, epoch := st.Applied()
		var apply []wire.Entry
		for _, e := range r.Entries {
			if e.Seq == seq+uint64(len(apply))+1 && e.Epoch >= epoch {
				apply = append(apply, e)
			}
		}
		if len(apply) == 0 {
			return nil
		}
		if err := st.ApplyEntries(ctx, apply); err != nil {
			if errors.Is(err, ErrDiverged) {
				w.log.Warn("diverged from the master's log; resyncing from a snapshot", "err", err)
				return w.resync(ctx)
			}
			return err
		}
		from = apply[len(apply)-1].Seq + 1
		if len(r.Entries) < 2000 {
			return nil
		}
	}
}

// entryEpoch is the epoch of this replica's entry seq (0 for seq 0).
func (w *Worker) entryEpoch(ctx context.Context, seq uint64) (uint64, error) {
	st := w.store.Load()
	if applied, ep := st.Applied(); seq == applied {
		return ep, nil
	}
	if seq == 0 {
		return 0, nil
	}
	ep, _, err := st.EntryEpoch(ctx, seq)
	return ep, err
}

func (w *Worker) callRepair(ctx context.Context, req wire.RepairRequest, timeout time.Duration, out *wire.RepairReply) error {
	r, err := w.repairs.Repair(ctx, req, timeout)
	if err != nil {
		return err
	}
	*out = r
	if out.Error != "" {
		return fmt.Errorf("master: %s", out.Error)
	}
	w.mu.Lock()
	known := w.knownEpoch
	w.mu.Unlock()
	if out.Epoch < known {
		return fmt.Errorf("repair answered by a deposed master (epoch %d < %d)", out.Epoch, known)
	}
	return nil
}

// resync replaces this worker's database with a snapshot of the master's
// and resumes the stream from the snapshot's sequence number. Reads stop
// meanwhile.
// maxSnapshot bounds what a compressed snapshot may expand to (a reply
// that would not fit is refused, and the slave asks again).
const maxSnapshot = 64 << 30

func (w *Worker) resync(ctx context.Context) error {
	if _, _, promoting := w.roleState(); promoting {
		// A candidate that finds its log diverged while it drains the old
		// master's stream must not take over: nobody could give it a
		// snapshot (it is the one being promoted), and what it holds is
		// not the acknowledged history. The promotion fails, the worker
		// exits, and the orchestrator elects another or revives the master.
		w.divergedPromoting.Store(true)
		return errors.New("diverged from the master's log while being promoted")
	}
	w.setState(wire.StateSyncing)
	backoff := 200 * time.Millisecond
	for {
		start := time.Now()
		var r wire.RepairReply
		err := w.callRepair(ctx, wire.RepairRequest{Snapshot: true, Worker: w.opts.ID, Gzip: true}, 60*time.Second, &r)
		var file []byte
		if err == nil {
			file, err = r.SnapshotFile(maxSnapshot)
		}
		if err == nil {
			err = w.install(file)
		}
		if err == nil {
			seq, _ := w.store.Load().Applied()
			w.met.snapshots.Inc()
			w.log.Info("snapshot loaded", "seq", seq, "bytes", len(file), "received_bytes", len(r.Snapshot), "took", time.Since(start).Round(time.Millisecond))
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		w.log.Warn("snapshot not loaded; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 3*time.Second)
	}
	// Entries that arrived meanwhile are still queued in syncIn and are
	// filtered against the snapshot's sequence number as they are applied;
	// anything published before we bound our queue is in the snapshot.
	w.setState(wire.StateReady)
	signalChan(w.kick)
	return nil
}

// install swaps the database file for snapshot.
func (w *Worker) install(snapshot []byte) error {
	if len(snapshot) == 0 {
		return errors.New("empty snapshot")
	}
	path := w.dbPath()
	tmp := path + ".incoming"
	if err := writeFileSync(tmp, snapshot); err != nil {
		return err
	}
	w.readMu.Lock()
	defer w.readMu.Unlock()
	if err := w.store.Load().Close(); err != nil {
		w.log.Warn("closing old database", "err", err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove old database: %w", err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("install snapshot: %w", err)
	}
	st, err := OpenStore(path)
	if err != nil {
		return err
	}
	if err := st.SetDurable(context.Background(), false); err != nil {
		st.Close()
		return err
	}
	w.store.Store(st)
	return nil
}

func writeFileSync(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func toInt64(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case int32:
		return int64(x), nil
	case int:
		return int64(x), nil
	case string:
		return strconv.ParseInt(x, 10, 64)
	}
	return 0, fmt.Errorf("not an integer: %T", v)
}
