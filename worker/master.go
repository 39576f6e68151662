package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

// promote turns this slave into the master of epoch. It first makes sure it
// has received everything the old master published (the barrier), then
// opens its epoch with an epoch entry, applies pending schema migrations,
// and publishes both, before taking writes.
func (w *Worker) promote(ctx context.Context, epoch uint64) error {
	log := w.log.With("epoch", epoch)
	log.Info("promotion: draining the old master's sync stream")
	start := time.Now()
	// The barrier must be seen: entries still queued behind it may be
	// acknowledged writes. Give up (and let the orchestrator elect another
	// worker) only after a long time, and only if still named.
	for attempt := 1; ; attempt++ {
		err := w.drainSync(ctx, 3*time.Second)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if ferr := w.checkFence(ctx, epoch); errors.Is(ferr, ErrFenced) {
			return ferr
		}
		if attempt == 10 {
			return fmt.Errorf("barrier not seen after %d tries: %w", attempt, err)
		}
		log.Warn("promotion: barrier not seen yet; trying again", "err", err)
	}
	if w.divergedPromoting.Load() {
		return errors.New("this worker's log diverged from the old master's while it drained the stream: it cannot take over")
	}
	if w.deposed.Load() {
		return ErrFenced
	}
	// Entries this worker holds may be missing from other slaves (it got
	// some through a repair from the old master, which may never have
	// confirmed them): until proven otherwise, only what every slave has
	// applied counts as confirmed, and the first ack republishes the rest.
	w.dropPending("promoted to master")
	st := w.store.Load()
	// A master's commits are acknowledged: each one fsyncs.
	if err := st.SetDurable(ctx, true); err != nil {
		return err
	}
	w.resetConfirmed(ctx, st)
	b, err := st.Begin(ctx)
	if err != nil {
		return err
	}
	defer b.Rollback()
	entries := []wire.Entry{b.Next(wire.KindEpoch, epoch)}
	if err := b.Append(ctx, entries[0]); err != nil {
		return err
	}
	migs, err := w.migrate(ctx, b, epoch)
	if err != nil {
		return err
	}
	entries = append(entries, migs...)
	// Fence check before the commit, as for every write batch; a
	// ZooKeeper that does not answer is waited for, not taken for a lost
	// election.
	if err := w.holdUntilMaster(ctx, epoch); err != nil {
		return err
	}
	if err := b.Commit(ctx); err != nil {
		return err
	}
	if err := w.confirmUpTo(ctx, epoch, entries); err != nil {
		// Nothing is acknowledged above an unconfirmed entry: the first
		// write batch publishes these again before it acks (confirmUpTo).
		log.Warn("promotion: publishing the epoch entry failed; the first write batch republishes it", "err", err)
	}
	w.mu.Lock()
	w.role = wire.RoleMaster
	w.state = wire.StateReady
	w.masterEpoch = epoch
	w.promoting = false
	w.mu.Unlock()
	// The record named this worker in the check before the commit above,
	// and the watch has not reported otherwise since (it resets this
	// when it does).
	w.watchEpoch.Store(epoch)
	w.changed()
	seq, _ := st.Applied()
	log.Info("promoted to master", "seq", seq, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// drainSync publishes a barrier on the sync fanout and waits until the
// applier has processed it from this worker's own queue: everything the old
// master published before is then applied.
func (w *Worker) drainSync(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	id := uuid.NewString()
	seen := make(chan struct{})
	w.mu.Lock()
	w.barrier, w.barrierSeen = id, seen
	ep := w.knownEpoch
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.barrier, w.barrierSeen = "", nil
		w.mu.Unlock()
	}()
	if err := w.syncOut.PublishSync(ctx, wire.SyncBatch{Epoch: ep, Barrier: id}); err != nil {
		return err
	}
	select {
	case <-seen:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// watchRegistry applies new handlers' migrations after a reload, while
// this worker is master (slaves get them through replication).
func (w *Worker) watchRegistry(ctx context.Context) error {
	cn, ok := w.reg.(ChangeNotifier)
	if !ok {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-cn.Changed():
		}
		w.mu.Lock()
		role, epoch, promoting := w.role, w.masterEpoch, w.promoting
		w.mu.Unlock()
		if role != wire.RoleMaster || promoting {
			continue // a promotion runs the migrations itself
		}
		if err := w.migrateNow(ctx, epoch); err != nil {
			if errors.Is(err, ErrFenced) {
				return err
			}
			w.log.Error("migrations after a handler reload failed", "err", err)
		}
	}
}

// migrateNow runs pending migrations as one replicated batch.
func (w *Worker) migrateNow(ctx context.Context, epoch uint64) error {
	b, err := w.store.Load().Begin(ctx)
	if err != nil {
		return err
	}
	defer b.Rollback()
	entries, err := w.migrate(ctx, b, epoch)
	if err != nil || len(entries) == 0 {
		return err
	}
	if err := w.checkFence(ctx, epoch); err != nil {
		return err
	}
	if err := b.Commit(ctx); err != nil {
		return err
	}
	return w.confirmUpTo(ctx, epoch, entries)
}

// migrate applies the handlers' migrations this database lacks, as admin
// entries of the log, so slaves get the schema through replication.
func (w *Worker) migrate(ctx context.Context, b *Batch, epoch uint64) ([]wire.Entry, error) {
	var out []wire.Entry
	for _, info := range w.reg.Infos() {
		for _, m := range info.Migrations {
			done, err := b.MigrationApplied(ctx, info.Name, m.Version)
			if err != nil {
				return nil, err
			}
			if done {
				continue
			}
			stmts, err := b.Savepoint(ctx, func(db pluginapi.DB) error {
				for _, s := range m.Statements {
					if _, err := db.Exec(ctx, s); err != nil {
						return fmt.Errorf("migration %s v%d: %w", info.Name, m.Version, err)
					}
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			mark, err := b.ExecRecorded(ctx, `INSERT INTO _migrations (handler, version) VALUES (?, ?)`,
				wire.Value{V: info.Name}, wire.Value{V: int64(m.Version)})
			if err != nil {
				return nil, fmt.Errorf("record migration %s v%d: %w", info.Name, m.Version, err)
			}
			stmts = append(stmts, mark)
			e := b.Next(wire.KindAdmin, epoch)
			e.Stmts = stmts
			if err := b.Append(ctx, e); err != nil {
				return nil, err
			}
			out = append(out, e)
			w.log.Info("migration applied", "handler", info.Name, "version", m.Version, "seq", e.Seq)
		}
	}
	return out, nil
}

// confirmUpTo publishes on the sync stream every entry of this master's
// log that is not confirmed yet, up to the store's applied sequence number,
// and returns once the broker confirmed them all. fresh holds entries just
// committed: they are published as they are; anything between the
// confirmed watermark and them (left by a publish that failed, or unknown
// to other slaves after a promotion) is read back from _log and published
// first, so every slave's queue gets the log in order.
//
// This is the rule that makes a reply of 200 mean "in every slave's
// queue": a batch is acked only after confirmUpTo returned, and the
// watermark only moves over a contiguous confirmed range.
func (w *Worker) confirmUpTo(ctx context.Context, epoch uint64, fresh []wire.Entry) error {
	w.confirmMu.Lock()
	defer w.confirmMu.Unlock()
	st := w.store.Load()
	applied, _ := st.Applied()
	for len(fresh) > 0 && fresh[0].Seq <= w.confirmed {
		fresh = fresh[1:]
	}
	// fresh is published as it is only when it is one contiguous run: a
	// batch redone one write per transaction may have let another commit
	// (a migration) take a sequence number in between.
	for i := 1; i < len(fresh); i++ {
		if fresh[i].Seq != fresh[i-1].Seq+1 {
			applied = max(applied, fresh[len(fresh)-1].Seq)
			fresh = nil
			break
		}
	}
	gapEnd := applied
	if len(fresh) > 0 {
		gapEnd = fresh[0].Seq - 1
	}
	for w.confirmed < gapEnd {
		entries, ok, err := st.LogFrom(ctx, w.confirmed+1, 500)
		if err != nil {
			return err
		}
		if !ok {
			// The log no longer reaches back that far: a slave that far
			// behind gets a snapshot when it asks (it is told the log is
			// truncated), and until then it is below what the orchestrator
			// has acknowledged, so it is not elected.
			oldest, err := st.OldestLogged(ctx)
			if err != nil {
				return err
			}
			w.log.Warn("republishing: the log no longer reaches the confirmed watermark",
				"confirmed", w.confirmed, "oldest_logged", oldest)
			w.confirmed = oldest - 1
			continue
		}
		for len(entries) > 0 && entries[len(entries)-1].Seq > gapEnd {
			entries = entries[:len(entries)-1]
		}
		if len(entries) == 0 {
			return fmt.Errorf("republishing: entry %d is missing from the log", w.confirmed+1)
		}
		w.log.Info("republishing entries missing from the sync stream",
			"from", entries[0].Seq, "to", entries[len(entries)-1].Seq)
		if err := w.syncOut.PublishSync(ctx, wire.SyncBatch{Epoch: epoch, Entries: entries}); err != nil {
			return err
		}
		w.confirmed = entries[len(entries)-1].Seq
	}
	if len(fresh) == 0 {
		return nil
	}
	if err := w.syncOut.PublishSync(ctx, wire.SyncBatch{Epoch: epoch, Entries: fresh}); err != nil {
		return err
	}
	w.confirmed = fresh[len(fresh)-1].Seq
	return nil
}

// resetConfirmed sets the confirmed watermark of a master taking office to
// what every other live slave has applied, as ZooKeeper last heard (a
// slave's real position is never lower), or to the store's own position
// when there is no other slave.
func (w *Worker) resetConfirmed(ctx context.Context, st *Store) {
	applied, _ := st.Applied()
	low, ok, err := w.coord.SlavesApplied(ctx, w.opts.ID)
	for wait := 100 * time.Millisecond; err != nil && wait < 5*time.Second && ctx.Err() == nil; wait *= 2 {
		w.log.Warn("cannot read the slaves' positions yet; retrying", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		low, ok, err = w.coord.SlavesApplied(ctx, w.opts.ID)
	}
	w.confirmMu.Lock()
	defer w.confirmMu.Unlock()
	switch {
	case err != nil:
		w.log.Warn("cannot read the slaves' positions; republishing from the oldest logged entry", "err", err)
		w.confirmed = 0
	case !ok:
		w.confirmed = applied
	default:
		w.confirmed = min(low, applied)
	}
}

// checkFence reads the master record and fails unless it still names this
// worker with epoch. It runs before every commit. While ZooKeeper is
// unreachable it fails too, so a master cut off from ZooKeeper commits
// nothing.
func (w *Worker) checkFence(ctx context.Context, epoch uint64) error {
	rec, ok, err := w.coord.MasterRecord(ctx)
	if err != nil {
		return err
	}
	if !ok || rec.ID != w.opts.ID || rec.Epoch != epoch {
		return ErrFenced
	}
	return nil
}

// runMaster consumes writeQ and group-commits what it receives.
func (w *Worker) runMaster(ctx context.Context, conn *amqp.Connection, replies Replier) error {
	w.mu.Lock()
	epoch := w.masterEpoch
	w.mu.Unlock()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open write channel: %w", err)
	}
	defer ch.Close()
	if err := ch.Qos(w.opts.BatchMax, 0, false); err != nil {
		return fmt.Errorf("qos: %w", err)
	}
	deliveries, err := ch.Consume(w.names.WriteQ, "master-"+w.opts.ID, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %s: %w", w.names.WriteQ, err)
	}
	w.log.Info("consuming writes", "queue", w.names.WriteQ, "epoch", epoch)
	return w.masterLoop(ctx, epoch, deliveries, replies)
}

// errPoison marks a batch that failed while it applied or committed its
// writes (as opposed to publishing them or checking the fence): a write in
// it may be what fails, so its writes are redone one by one.
var errPoison = errors.New("batch failed while applying its writes")

// HeaderAttempts counts how many times the master tried a write delivery
// and failed to apply it. The master counts, not the broker: RabbitMQ 3.x
// counts every return of a delivery in x-delivery-count (a failover, a
// session restart), which says nothing about the write.
const HeaderAttempts = "x-rideshare-attempts"

// attempts is how many times applying d failed before.
func attempts(d amqp.Delivery) int {
	if v, ok := d.Headers[HeaderAttempts]; ok {
		if n, err := toInt64(v); err == nil {
			return int(n)
		}
	}
	return 0
}

// fenceBeforeCommit is the check before a commit. It only spares work:
// the check after the confirm is what keeps a deposed master from
// acknowledging. So it reads the local view the master-record watch keeps
// (no round trip), and asks ZooKeeper only when that view is unknown (the
// session was lost, or the watch has not reported since the promotion).
func (w *Worker) fenceBeforeCommit(ctx context.Context, epoch uint64) error {
	if w.deposed.Load() {
		return ErrFenced
	}
	if w.watchEpoch.Load() == epoch {
		return nil
	}
	return w.checkFence(ctx, epoch)
}

// fenceAfterConfirm is the linearizable check made after the batches'
// entries are confirmed on the sync stream, once for every batch
// confirmed before it (the finisher drains every waiting batch first).
func (w *Worker) fenceAfterConfirm(ctx context.Context, epoch uint64) error {
	return w.checkFence(ctx, epoch)
}

func refusal(pe *pluginapi.Error, worker string) *wire.Reply {
	status := 400
	switch pe.Code {
	case pluginapi.CodeNotFound:
		status = 404
	case pluginapi.CodeConflict:
		status = 409
	}
	return &wire.Reply{Status: status, Code: string(pe.Code), Error: pe.Message, Worker: worker}
}

// runRepairServer answers slaves' requests for log ranges and snapshots.
func (w *Worker) runRepairServer(ctx context.Context, conn *amqp.Connection, replies Replier) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open repair channel: %w", err)
	}
	defer ch.Close()
	deliveries, err := ch.Consume(w.names.RepairQ, "repair-"+w.opts.ID, true, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %s: %w", w.names.RepairQ, err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("repair consumer closed")
			}
			replies.Reply(ctx, d, mustJSON(w.serveRepair(ctx, d)))
		}
	}
}

func (w *Worker) serveRepair(ctx context.Context, d amqp.Delivery) wire.RepairReply {
	w.mu.Lock()
	epoch := w.masterEpoch
	w.mu.Unlock()
	var req wire.RepairRequest
	if err := json.Unmarshal(d.Body, &req); err != nil {
		return wire.RepairReply{Epoch: epoch, Error: "malformed repair request"}
	}
	st := w.store.Load()
	if req.Snapshot {
		w.met.repairsSnap.Inc()
		tmp := filepath.Join(w.opts.DataDir, "snapshot-"+uuid.NewString()+".db")
		defer os.Remove(tmp)
		start := time.Now()
		seq, err := st.Snapshot(ctx, tmp)
		if err != nil {
			return wire.RepairReply{Epoch: epoch, Error: err.Error()}
		}
		data, err := os.ReadFile(tmp)
		if err != nil {
			return wire.RepairReply{Epoch: epoch, Error: err.Error()}
		}
		size := len(data)
		if req.Gzip {
			if data, err = wire.GzipSnapshot(data); err != nil {
				return wire.RepairReply{Epoch: epoch, Error: err.Error()}
			}
		}
		w.log.Info("snapshot served", "to", req.Worker, "seq", seq, "bytes", size, "sent_bytes", len(data), "took", time.Since(start).Round(time.Millisecond))
		return wire.RepairReply{Epoch: epoch, Snapshot: data, SnapshotSeq: seq, SnapshotGzip: req.Gzip}
	}
	w.met.repairsLog.Inc()
	// Log matching: the asker's entry From-1 must be ours.
	if req.From > 1 {
		prev := req.From - 1
		if applied, _ := st.Applied(); prev > applied {
			return wire.RepairReply{Epoch: epoch, Diverged: true} // it holds entries we never had
		}
		ep, found, err := st.EntryEpoch(ctx, prev)
		if err != nil {
			return wire.RepairReply{Epoch: epoch, Error: err.Error()}
		}
		if !found {
			return wire.RepairReply{Epoch: epoch, Truncated: true}
		}
		if ep != req.PrevEpoch {
			return wire.RepairReply{Epoch: epoch, Diverged: true}
		}
	}
	limit := req.Limit
	if limit <= 0 || limit > 2000 {
		limit = 2000
	}
	entries, ok, err := st.LogFrom(ctx, req.From, limit)
	if err != nil {
		return wire.RepairReply{Epoch: epoch, Error: err.Error()}
	}
	// Only confirmed entries leave by repair: one the sync stream never
	// confirmed may be undone by the next master, and a slave must not
	// hold it (and answer reads from it) meanwhile.
	w.confirmMu.Lock()
	confirmed := w.confirmed
	w.confirmMu.Unlock()
	for len(entries) > 0 && entries[len(entries)-1].Seq > confirmed {
		entries = entries[:len(entries)-1]
	}
	return wire.RepairReply{Epoch: epoch, Entries: entries, Truncated: !ok}
}
