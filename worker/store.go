package worker

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rideshare-dbaas/rideshare/internal/wire"
	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Store is a worker's SQLite database: the handlers' tables plus the
// replication bookkeeping, which lives in the same file so that data and
// the sequence number it corresponds to can never disagree.
//
//	_meta(k, v)                 applied_seq and epoch of the last applied entry
//	_log(seq, epoch, entry)     the recent replicated log (gap repair, failover)
//	_writes(id, seq, reply)     applied write ids with their replies (exactly once)
//	_migrations(handler, version)
//
// One writer connection (BEGIN IMMEDIATE), a pool of read-only readers (WAL
// lets them run beside the writer), and a snapshot connection for VACUUM
// INTO.
type Store struct {
	path string
	w    *sql.DB // the one writer connection
	r    *sql.DB // the worker's own reads
	hr   *sql.DB // reads lent to handlers
	snap *sql.DB // VACUUM INTO

	wguard *guard // the writer's, switched on around handler statements
	hguard *guard // the handler readers', always on

	// KeepLog and KeepWrites bound _log and _writes; older rows are pruned.
	KeepLog    uint64
	KeepWrites uint64

	applied atomic.Uint64
	epoch   atomic.Uint64

	// wmu is held from Begin to Commit or Rollback, so a batch's sequence
	// numbers are read and published under one lock: database/sql gives the
	// single writer connection back before Commit has advanced applied.
	wmu sync.Mutex

	mu       sync.Mutex
	advanced chan struct{} // closed and replaced whenever applied grows
}

const schemaMeta = `
CREATE TABLE IF NOT EXISTS _meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS _log (seq INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, entry BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS _writes (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, reply BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS _writes_seq ON _writes(seq);
CREATE TABLE IF NOT EXISTS _migrations (handler TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (handler, version));
INSERT OR IGNORE INTO _meta (k, v) VALUES ('applied_seq', 0), ('epoch', 0);
`

func dsn(path string, extra string) string {
	return "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)" + extra
}

// OpenStore opens (creating if needed) the database at path.
func OpenStore(path string) (*Store, error) {
	wguard, wparam := newGuard(false)
	hguard, hparam := newGuard(true)
	s := &Store{path: path, wguard: wguard, hguard: hguard, KeepLog: 20000, KeepWrites: 200000, advanced: make(chan struct{})}
	fail := func(err error) (*Store, error) {
		s.Close()
		return nil, err
	}
	var err error
	// The writer: one connection, BEGIN IMMEDIATE, handler statements
	// guarded (sqlguard.go).
	if s.w, err = sql.Open(driverName, dsn(path, "&_txlock=immediate"+wparam)); err != nil {
		return fail(fmt.Errorf("open %s: %w", path, err))
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetConnMaxIdleTime(0)
	if _, err := s.w.Exec(schemaMeta); err != nil {
		return fail(fmt.Errorf("init %s: %w", path, err))
	}
	// Readers for the worker's own bookkeeping reads (the log, repairs).
	if s.r, err = sql.Open(driverName, dsn(path, "&_pragma=query_only(1)")); err != nil {
		return fail(fmt.Errorf("open readers %s: %w", path, err))
	}
	s.r.SetMaxOpenConns(4)
	// Readers lent to handlers: connections that cannot write (query_only)
	// and whose every statement is guarded.
	if s.hr, err = sql.Open(driverName, dsn(path, "&_pragma=query_only(1)"+hparam)); err != nil {
		return fail(fmt.Errorf("open handler readers %s: %w", path, err))
	}
	s.hr.SetMaxOpenConns(8)
	if s.snap, err = sql.Open(driverName, dsn(path, "")); err != nil {
		return fail(fmt.Errorf("open snapshot conn %s: %w", path, err))
	}
	s.snap.SetMaxOpenConns(1)
	seq, ep, err := readMeta(context.Background(), s.w)
	if err != nil {
		return fail(err)
	}
	s.applied.Store(seq)
	s.epoch.Store(ep)
	return s, nil
}

func readMeta(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (seq, epoch uint64, err error) {
	var s, e int64
	if err := q.QueryRowContext(ctx, `SELECT (SELECT v FROM _meta WHERE k='applied_seq'), (SELECT v FROM _meta WHERE k='epoch')`).Scan(&s, &e); err != nil {
		return 0, 0, fmt.Errorf("read _meta: %w", err)
	}
	return uint64(s), uint64(e), nil
}

// Close closes every connection.
func (s *Store) Close() error {
	var errs []error
	for _, db := range []*sql.DB{s.w, s.r, s.hr, s.snap} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	s.wguard.release()
	s.hguard.release()
	return errors.Join(errs...)
}

// SetDurable chooses what a commit waits for: with durable (the DSN's
// synchronous=FULL, a master's setting) every commit fsyncs the WAL; without
// (synchronous=NORMAL, a slave's) commits fsync only at checkpoints. Either
// survives a kill -9 of the process (the WAL is in the OS's cache); only a
// crash of the whole machine can take a slave's last commits, which it then
// repairs from the master like any gap.
func (s *Store) SetDurable(ctx context.Context, durable bool) error {
	mode := "NORMAL"
	if durable {
		mode = "FULL"
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, err := s.w.ExecContext(ctx, `PRAGMA synchronous = `+mode); err != nil {
		return fmt.Errorf("synchronous=%s: %w", mode, err)
	}
	return nil
}

// Applied returns the sequence number and epoch of the last applied entry.
func (s *Store) Applied() (seq, epoch uint64) { return s.applied.Load(), s.epoch.Load() }

func (s *Store) setApplied(seq, epoch uint64) {
	s.epoch.Store(epoch)
	s.applied.Store(seq)
	s.mu.Lock()
	close(s.advanced)
	s.advanced = make(chan struct{})
	s.mu.Unlock()
}

// WaitApplied waits until the store has applied seq.
func (s *Store) WaitApplied(ctx context.Context, seq uint64) error {
	for {
		s.mu.Lock()
		ch := s.advanced
		s.mu.Unlock()
		if s.applied.Load() >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// EntryEpoch returns the epoch of the logged entry seq, if still logged.
func (s *Store) EntryEpoch(ctx context.Context, seq uint64) (uint64, bool, error) {
	var e int64
	err := s.r.QueryRowContext(ctx, `SELECT epoch FROM _log WHERE seq = ?`, int64(seq)).Scan(&e)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read _log: %w", err)
	}
	return uint64(e), true, nil
}

// LogFrom returns up to limit logged entries from seq from on. ok is false
// when from is older than the oldest entry kept (the caller needs a
// snapshot).
func (s *Store) LogFrom(ctx context.Context, from uint64, limit int) (entries []wire.Entry, ok bool, err error) {
	var oldest sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT min(seq) FROM _log`).Scan(&oldest); err != nil {
		return nil, false, fmt.Errorf("read _log: %w", err)
	}
	applied := s.applied.Load()
	if from > applied {
		return nil, true, nil
	}
	if !oldest.Valid || uint64(oldest.Int64) > from {
		return nil, false, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT entry FROM _log WHERE seq >= ? ORDER BY seq LIMIT ?`, int64(from), limit)
	if err != nil {
		return nil, false, fmt.Errorf("read _log: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, false, fmt.Errorf("read _log: %w", err)
		}
		var e wire.Entry
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, false, fmt.Errorf("decode _log entry: %w", err)
		}
		entries = append(entries, e)
	}
	return entries, true, rows.Err()
}

// OldestLogged returns the sequence number of the oldest entry still in
// _log (applied+1 when the log is empty).
func (s *Store) OldestLogged(ctx context.Context) (uint64, error) {
	var oldest sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT min(seq) FROM _log`).Scan(&oldest); err != nil {
		return 0, fmt.Errorf("read _log: %w", err)
	}
	if !oldest.Valid {
		return s.applied.Load() + 1, nil
	}
	return uint64(oldest.Int64), nil
}

// Snapshot writes a consistent copy of the database to dst with VACUUM
// INTO (a read transaction: writers are not blocked, and the copy holds
// exactly the data of the sequence number it records) and returns that
// sequence number.
func (s *Store) Snapshot(ctx context.Context, dst string) (uint64, error) {
	_ = os.Remove(dst)
	if _, err := s.snap.ExecContext(ctx, `VACUUM INTO '`+strings.ReplaceAll(dst, "'", "''")+`'`); err != nil {
		return 0, fmt.Errorf("vacuum into %s: %w", dst, err)
	}
	db, err := sql.Open(driverName, "file:"+dst+"?mode=ro")
	if err != nil {
		return 0, fmt.Errorf("open snapshot: %w", err)
	}
	defer db.Close()
	seq, _, err := readMeta(ctx, db)
	return seq, err
}

// Reader returns a read-only DB for one handler call and a function to end
// it. Reads see one consistent snapshot (a read transaction).
func (s *Store) Reader(ctx context.Context) (pluginapi.DB, func(), error) {
	tx, err := s.hr.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, nil, fmt.Errorf("begin read: %w", err)
	}
	return &txDB{tx: tx, readOnly: true, pool: s.hguard}, func() { _ = tx.Rollback() }, nil
}

// ErrDiverged means a replicated entry does not continue this store's log:
// its PrevEpoch differs from the epoch of the store's last entry, so the
// store holds an entry the master's log does not. The replica must resync.
var ErrDiverged = errors.New("replica diverged from the master's log")

// isAuthError reports whether err is SQLite's SQLITE_AUTH (23): the
// authorizer refused the statement.
func isAuthError(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "(23)") || strings.Contains(msg, "not authorized")
}

// errTxLost means SQLite abandoned the write transaction under us (a
// savepoint could not be rolled back): the whole batch must be retried.
var errTxLost = errors.New("write transaction lost")

// ApplyEntries applies replicated entries, which must continue the store's
// sequence exactly, in one transaction.
func (s *Store) ApplyEntries(ctx context.Context, entries []wire.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	b, err := s.Begin(ctx)
	if err != nil {
		return err
	}
	defer b.Rollback()
	for _, e := range entries {
		if e.Seq != b.seq+1 {
			return fmt.Errorf("apply: entry %d does not follow %d", e.Seq, b.seq)
		}
		if e.PrevEpoch != b.epoch {
			return fmt.Errorf("%w: entry %d follows epoch %d, this replica's entry %d has epoch %d",
				ErrDiverged, e.Seq, e.PrevEpoch, b.seq, b.epoch)
		}
		for i, st := range e.Stmts {
			if _, err := b.tx.ExecContext(ctx, st.SQL, wire.Args(st.Args)...); err != nil {
				return fmt.Errorf("apply entry %d statement %d: %w", e.Seq, i, err)
			}
		}
		if err := b.Append(ctx, e); err != nil {
			return err
		}
	}
	return b.Commit(ctx)
}

// Batch is an open write transaction that appends entries to the log.
type Batch struct {
	s     *Store
	tx    *sql.Tx
	seq   uint64
	epoch uint64
	done  bool
}

// Begin opens a write transaction (BEGIN IMMEDIATE).
func (s *Store) Begin(ctx context.Context) (*Batch, error) {
	s.wmu.Lock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		s.wmu.Unlock()
		return nil, fmt.Errorf("begin write: %w", err)
	}
	seq, ep := s.Applied()
	return &Batch{s: s, tx: tx, seq: seq, epoch: ep}, nil
}

// Seq is the sequence number of the last entry in the batch (or the store's
// applied sequence number when the batch is empty).
func (b *Batch) Seq() uint64 { return b.seq }

// Next returns the next entry of the log, of kind and epoch, with its
// sequence number and PrevEpoch filled in.
func (b *Batch) Next(kind string, epoch uint64) wire.Entry {
	return wire.Entry{Seq: b.seq + 1, Epoch: epoch, PrevEpoch: b.epoch, Kind: kind}
}

// Lookup returns the reply recorded for write id, if it was applied.
func (b *Batch) Lookup(ctx context.Context, id string) (*wire.Reply, bool, error) {
	var raw []byte
	err := b.tx.QueryRowContext(ctx, `SELECT reply FROM _writes WHERE id = ?`, id).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("look up write %q: %w", id, err)
	}
	var r wire.Reply
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, false, fmt.Errorf("decode reply of write %q: %w", id, err)
	}
	return &r, true, nil
}

// Savepoint runs fn inside a savepoint: if fn returns an error, everything
// it executed is rolled back and the batch stays usable. fn's statements
// pass the guard (sqlguard.go); those that write are recorded and
// returned. A write statement that failed makes the operation fail (its
// partial effects, with ON CONFLICT FAIL, cannot be known), and a
// savepoint that cannot be opened, released or rolled back makes the
// whole batch lost (errTxLost): the caller rolls it back and redoes it.
func (b *Batch) Savepoint(ctx context.Context, fn func(db pluginapi.DB) error) ([]wire.Stmt, error) {
	if _, err := b.tx.ExecContext(ctx, `SAVEPOINT op`); err != nil {
		return nil, fmt.Errorf("%w: savepoint: %v", errTxLost, err)
	}
	// The handler's statements run with a context that is never cancelled:
	// SQLite answers an interrupt (a cancelled statement) by rolling back
	// the whole transaction, which would take the rest of the group commit
	// with it. A handler's deadline bounds the handler, not SQLite.
	db := &txDB{tx: b.tx, record: true, guard: b.s.wguard, ctx: context.WithoutCancel(ctx)}
	err := fn(db)
	if err == nil && db.tainted != nil {
		err = fmt.Errorf("a write statement of the operation failed, so none of its changes are kept: %w", db.tainted)
	}
	if err != nil {
		if _, rerr := b.tx.ExecContext(context.WithoutCancel(ctx), `ROLLBACK TO op; RELEASE op`); rerr != nil {
			return nil, fmt.Errorf("%w: rollback to savepoint: %v (after: %v)", errTxLost, rerr, err)
		}
		return nil, err
	}
	if _, err := b.tx.ExecContext(context.WithoutCancel(ctx), `RELEASE op`); err != nil {
		return nil, fmt.Errorf("%w: release savepoint: %v", errTxLost, err)
	}
	return db.stmts, nil
}

// ExecRecorded runs one of the worker's own statements in the batch (not
// guarded) and returns it for the log.
func (b *Batch) ExecRecorded(ctx context.Context, query string, args ...wire.Value) (wire.Stmt, error) {
	if _, err := b.tx.ExecContext(ctx, query, wire.Args(args)...); err != nil {
		return wire.Stmt{}, err
	}
	return wire.Stmt{SQL: query, Args: args}, nil
}

// Append records e (whose statements the caller already executed in this
// transaction) in the log, its write id, and the applied sequence number.
func (b *Batch) Append(ctx context.Context, e wire.Entry) error {
	raw, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode entry %d: %w", e.Seq, err)
	}
	if _, err := b.tx.ExecContext(ctx, `INSERT INTO _log (seq, epoch, entry) VALUES (?, ?, ?)`, int64(e.Seq), int64(e.Epoch), raw); err != nil {
		return fmt.Errorf("log entry %d: %w", e.Seq, err)
	}
	if e.WriteID != "" && e.Reply != nil {
		rr, err := json.Marshal(e.Reply)
		if err != nil {
			return fmt.Errorf("encode reply %d: %w", e.Seq, err)
		}
		if _, err := b.tx.ExecContext(ctx, `INSERT OR REPLACE INTO _writes (id, seq, reply) VALUES (?, ?, ?)`, e.WriteID, int64(e.Seq), rr); err != nil {
			return fmt.Errorf("record write %q: %w", e.WriteID, err)
		}
	}
	b.seq, b.epoch = e.Seq, e.Epoch
	return nil
}

// Commit records the applied sequence number, prunes old bookkeeping now
// and then, and commits.
func (b *Batch) Commit(ctx context.Context) error {
	if b.done {
		return errors.New("batch already finished")
	}
	before, _ := b.s.Applied()
	if b.seq != before {
		if _, err := b.tx.ExecContext(ctx, `UPDATE _meta SET v = CASE k WHEN 'applied_seq' THEN ? ELSE ? END WHERE k IN ('applied_seq','epoch')`, int64(b.seq), int64(b.epoch)); err != nil {
			return fmt.Errorf("update _meta: %w", err)
		}
		// Prune when the batch crosses a multiple of 1000.
		if b.seq/1000 != before/1000 {
			if b.seq > b.s.KeepLog {
				if _, err := b.tx.ExecContext(ctx, `DELETE FROM _log WHERE seq <= ?`, int64(b.seq-b.s.KeepLog)); err != nil {
					return fmt.Errorf("prune _log: %w", err)
				}
			}
			if b.seq > b.s.KeepWrites {
				if _, err := b.tx.ExecContext(ctx, `DELETE FROM _writes WHERE seq <= ?`, int64(b.seq-b.s.KeepWrites)); err != nil {
					return fmt.Errorf("prune _writes: %w", err)
				}
			}
		}
	}
	b.done = true
	defer b.s.wmu.Unlock()
	if err := b.tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if b.seq != before {
		b.s.setApplied(b.seq, b.epoch)
	}
	return nil
}

// Rollback abandons the batch (a no-op after Commit).
func (b *Batch) Rollback() {
	if !b.done {
		b.done = true
		_ = b.tx.Rollback()
		b.s.wmu.Unlock()
	}
}

// txDB is the pluginapi.DB a handler gets: it runs statements in the
// worker's transaction, through the guard, and, for writes, records those
// that change the database for replication, whichever call carried them.
type txDB struct {
	tx       *sql.Tx
	readOnly bool
	record   bool
	guard    *guard          // the writer's guard (nil: the pool's own, always on)
	pool     *guard          // a handler reader pool's guard, for its reasons
	ctx      context.Context // if set, used instead of the caller's (see Savepoint)
	stmts    []wire.Stmt
	tainted  error // a write statement failed
}

func (d *txDB) context(ctx context.Context) context.Context {
	if d.ctx != nil {
		return d.ctx
	}
	return ctx
}

var _ pluginapi.DB = (*txDB)(nil)

// run checks query, runs it through f with the guard on, and records it
// when it wrote.
func (d *txDB) run(query string, args []any, f func(args []any) error) error {
	if err := checkStatement(query); err != nil {
		return err
	}
	vals := make([]wire.Value, len(args))
	for i, a := range args {
		v, err := wire.NewValue(a)
		if err != nil {
			return fmt.Errorf("argument %d: %w", i+1, err)
		}
		vals[i] = v
	}
	if d.guard != nil {
		d.guard.begin()
	}
	err := f(wire.Args(vals))
	wrote, refused := false, ""
	if d.guard != nil {
		wrote, refused = d.guard.end()
	}
	if refused != "" {
		return fmt.Errorf("%w: %s", ErrStatementRefused, refused)
	}
	if err != nil && isAuthError(err) {
		// A handler reader's guard is shared by its pool: its last reason
		// is this statement's but for a race with another refusal.
		if d.pool != nil {
			if why := d.pool.why.Load(); why != nil {
				return fmt.Errorf("%w: %s", ErrStatementRefused, *why)
			}
		}
		return fmt.Errorf("%w: %v", ErrStatementRefused, err)
	}
	if err != nil {
		if wrote {
			d.tainted = err
		}
		return err
	}
	if wrote && d.record {
		d.stmts = append(d.stmts, wire.Stmt{SQL: query, Args: vals})
	}
	return nil
}

func (d *txDB) Exec(ctx context.Context, query string, args ...any) (pluginapi.ExecResult, error) {
	if d.readOnly {
		return pluginapi.ExecResult{}, errors.New("exec in a read operation: reads cannot change data")
	}
	var res sql.Result
	err := d.run(query, args, func(a []any) (err error) {
		res, err = d.tx.ExecContext(d.context(ctx), query, a...)
		return err
	})
	if err != nil {
		return pluginapi.ExecResult{}, err
	}
	id, _ := res.LastInsertId()
	n, _ := res.RowsAffected()
	return pluginapi.ExecResult{LastInsertID: id, RowsAffected: n}, nil
}

func (d *txDB) Query(ctx context.Context, query string, args ...any) (pluginapi.Rows, error) {
	var out pluginapi.Rows
	err := d.run(query, args, func(a []any) error {
		rows, err := d.tx.QueryContext(d.context(ctx), query, a...)
		if err != nil {
			return err
		}
		// Reading every row runs the statement to its end (a RETURNING
		// write is complete only then).
		out, err = pluginapi.ScanRows(rows)
		return err
	})
	return out, err
}
