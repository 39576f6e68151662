package chaos

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/wire"
	_ "modernc.org/sqlite" // the "sqlite" driver, to read the workers' files
)

// handlerTables are the rideshare handler's tables, dumped for the replica
// checksum.
var handlerTables = []string{"users", "rides", "ride_members", "counters"}

// keepWrites mirrors worker.Store.KeepWrites: _writes rows older than this
// many sequence numbers may be pruned, at different moments on different
// replicas, so only newer rows are compared.
const keepWrites = 200000

// WorkerCheck is what the final check found in one worker's database.
type WorkerCheck struct {
	ID       string            `json:"id"`
	PID      int               `json:"pid"`
	Role     string            `json:"role"`
	Applied  uint64            `json:"applied_seq"`
	DB       string            `json:"db"`
	Checksum string            `json:"checksum"`
	Tables   map[string]string `json:"tables"` // table → sha256 of its canonical dump
	Rows     map[string]int    `json:"rows"`
	// WritesChecksum covers _writes (id, seq): the exactly-once records.
	WritesChecksum string `json:"writes_checksum"`
}

// Final is the end-of-run check.
type Final struct {
	Converged         bool          `json:"converged"`
	ConvergeSeconds   float64       `json:"converge_s"`
	MasterSeq         uint64        `json:"master_seq"`
	Workers           []WorkerCheck `json:"workers"`
	ReplicasIdentical bool          `json:"replicas_identical"`
	ChecksumsSkipped  string        `json:"checksums_skipped,omitempty"`
	AckedChecked      int           `json:"acked_writes_checked"`
}

// verify waits for the replicas to converge and checks them. Violations go
// to rec.
func (c *Chaos) verify(ctx context.Context, a *api, w *watcher, st *stack, rec *recorder) Final {
	var fin Final
	start := time.Now()
	for attempt := 1; ; attempt++ {
		view, err := waitConverged(ctx, a, c.opts.SettleTimeout-time.Since(start))
		fin.ConvergeSeconds = time.Since(start).Seconds()
		if err != nil {
			rec.violation("not-converged", "%v", err)
			return fin
		}
		fin.Converged = true
		fin.MasterSeq = view[0].Applied
		if st.dataDir == "" {
			fin.ChecksumsSkipped = "the runtime's data dir is unknown (attach with --data-dir to check the replicas' files)"
			return fin
		}
		checks, dumps, err := c.readReplicas(ctx, st, view)
		if err != nil {
			// A worker may have gone (scale-in) between the view and the read.
			if attempt < 3 && ctx.Err() == nil {
				c.log.Warn("reading the replicas failed; again", "err", err)
				continue
			}
			rec.violation("check", "reading the replicas: %v", err)
			return fin
		}
		after, err := a.workers(ctx)
		if err == nil && !sameView(view, after) && attempt < 3 {
			c.log.Warn("the workers changed during the check; again", "before", view, "after", after)
			continue
		}
		fin.Workers = checks
		fin.ReplicasIdentical = compareReplicas(checks, fin.MasterSeq, rec)
		fin.AckedChecked = checkAcked(rec, dumps, fin.MasterSeq, "chaos-"+c.runID+"-")
		return fin
	}
}

// waitConverged waits until the orchestrator shows a ready master and only
// ready workers that all applied the master's sequence number, with that
// number unchanged for two seconds (writes still queued when the load
// stopped are committed by then). The master comes first in the result.
func waitConverged(ctx context.Context, a *api, timeout time.Duration) ([]workerView, error) {
	ctx, cancel := context.WithTimeout(ctx, max(timeout, time.Second))
	defer cancel()
	var last []workerView
	var lastErr error
	var stableSince time.Time
	var stableSeq uint64
	for {
		v, err := a.workers(ctx)
		lastErr = err
		if err == nil {
			last = v
			if m, ok := converged(v); ok {
				if stableSince.IsZero() || m != stableSeq {
					stableSince, stableSeq = time.Now(), m
				} else if time.Since(stableSince) >= 2*time.Second {
					return masterFirst(v), nil
				}
			} else {
				stableSince = time.Time{}
			}
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return nil, fmt.Errorf("replicas did not converge: %w", lastErr)
			}
			return nil, fmt.Errorf("replicas did not converge within the deadline: %+v", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func converged(v []workerView) (uint64, bool) {
	var master *workerView
	for i := range v {
		if v[i].Role == wire.RoleMaster {
			if master != nil {
				return 0, false
			}
			master = &v[i]
		}
	}
	if master == nil || master.State != wire.StateReady || len(v) < 2 {
		return 0, false
	}
	for _, x := range v {
		if x.State != wire.StateReady || x.Applied != master.Applied {
			return 0, false
		}
	}
	return master.Applied, true
}

func masterFirst(v []workerView) []workerView {
	out := slices.Clone(v)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Role == wire.RoleMaster && out[j].Role != wire.RoleMaster })
	return out
}

func sameView(a, b []workerView) bool {
	key := func(v []workerView) string {
		var s []string
		for _, x := range v {
			s = append(s, fmt.Sprintf("%s/%d/%s/%d", x.ID, x.PID, x.Role, x.Applied))
		}
		sort.Strings(s)
		return strings.Join(s, ",")
	}
	return key(a) == key(b)
}

// dump is what one replica holds, indexed for the acknowledged-write check.
type dump struct {
	id      string
	applied uint64
	users   map[string]bool
	rides   map[int64]rideRow
	byKey   map[string][]int64 // created_by + timestamp → ride ids
	members map[string]bool    // "rideId|username"
	writes  map[string]uint64  // _writes: id → seq
}

type rideRow struct {
	createdBy   string
	ts          int64
	source, dst int64
}

func rideKey(user string, ts int64) string { return user + "|" + strconv.FormatInt(ts, 10) }

func (c *Chaos) readReplicas(ctx context.Context, st *stack, view []workerView) ([]WorkerCheck, []*dump, error) {
	var checks []WorkerCheck
	var dumps []*dump
	for _, v := range view {
		path := st.workerDB(v.ID)
		chk, d, err := readReplica(ctx, path, v.Applied)
		if err != nil {
			return nil, nil, fmt.Errorf("worker %s (%s): %w", v.ID, path, err)
		}
		chk.ID, chk.PID, chk.Role, chk.Applied, chk.DB = v.ID, v.PID, v.Role, d.applied, path
		d.id = v.ID
		checks = append(checks, chk)
		dumps = append(dumps, d)
	}
	return checks, dumps, nil
}

// readReplica opens a worker's database read-only and dumps it in one read
// transaction (WAL lets it run beside the worker).
func readReplica(ctx context.Context, path string, applied uint64) (WorkerCheck, *dump, error) {
	var chk WorkerCheck
	if _, err := os.Stat(path); err != nil {
		return chk, nil, err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return chk, nil, err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return chk, nil, err
	}
	defer func() { _ = tx.Rollback() }()
	d := &dump{users: map[string]bool{}, rides: map[int64]rideRow{}, byKey: map[string][]int64{}, members: map[string]bool{}, writes: map[string]uint64{}}
	var seq int64
	if err := tx.QueryRowContext(ctx, `SELECT v FROM _meta WHERE k = 'applied_seq'`).Scan(&seq); err != nil {
		return chk, nil, fmt.Errorf("read _meta: %w", err)
	}
	d.applied = uint64(seq)
	chk.Tables, chk.Rows = map[string]string{}, map[string]int{}
	all := sha256.New()
	for _, t := range handlerTables {
		rows, err := tableRows(ctx, tx, "SELECT * FROM "+t)
		if err != nil {
			return chk, nil, fmt.Errorf("dump %s: %w", t, err)
		}
		sum := canonicalSum(t, rows)
		chk.Tables[t], chk.Rows[t] = sum, len(rows)
		fmt.Fprintf(all, "%s %s\n", t, sum)
		for _, r := range rows {
			switch t {
			case "users":
				d.users[asString(r[0])] = true
			case "rides":
				id := asInt(r[0])
				rr := rideRow{createdBy: asString(r[1]), ts: asInt(r[2]), source: asInt(r[3]), dst: asInt(r[4])}
				d.rides[id] = rr
				k := rideKey(rr.createdBy, rr.ts)
				d.byKey[k] = append(d.byKey[k], id)
			case "ride_members":
				d.members[strconv.FormatInt(asInt(r[0]), 10)+"|"+asString(r[1])] = true
			}
		}
	}
	chk.Checksum = hex.EncodeToString(all.Sum(nil))
	floor := int64(0)
	if applied > keepWrites {
		floor = int64(applied - keepWrites + 1000)
	}
	wrows, err := tableRows(ctx, tx, `SELECT id, seq FROM _writes WHERE seq > ?`, floor)
	if err != nil {
		return chk, nil, fmt.Errorf("dump _writes: %w", err)
	}
	for _, r := range wrows {
		d.writes[asString(r[0])] = uint64(asInt(r[1]))
	}
	chk.WritesChecksum = canonicalSum("_writes", wrows)
	return chk, d, nil
}

func tableRows(ctx context.Context, tx *sql.Tx, q string, args ...any) ([][]any, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		out = append(out, vals)
	}
	return out, rows.Err()
}

// canonicalSum hashes a table's rows independently of their order: each
// row is encoded with typed values, the encodings are sorted, then hashed.
func canonicalSum(table string, rows [][]any) string {
	enc := make([]string, len(rows))
	for i, r := range rows {
		parts := make([]string, len(r))
		for j, v := range r {
			parts[j] = encodeValue(v)
		}
		enc[i] = strings.Join(parts, "\x1f")
	}
	sort.Strings(enc)
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%d\n", table, len(enc))
	for _, e := range enc {
		h.Write([]byte(e))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func encodeValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "n"
	case int64:
		return "i" + strconv.FormatInt(x, 10)
	case float64:
		return "f" + strconv.FormatFloat(x, 'g', -1, 64)
	case string:
		return "s" + strconv.Quote(x)
	case []byte:
		return "b" + hex.EncodeToString(x)
	case bool:
		if x {
			return "i1"
		}
		return "i0"
	case time.Time:
		return "t" + x.UTC().Format(time.RFC3339Nano)
	default:
		return fmt.Sprintf("?%T:%v", v, v)
	}
}

func asString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	}
	return fmt.Sprint(v)
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case float64:
		return int64(x)
	}
	n, _ := strconv.ParseInt(asString(v), 10, 64)
	return n
}

// compareReplicas checks that every replica holds the master's sequence
// number and the master's data.
func compareReplicas(checks []WorkerCheck, masterSeq uint64, rec *recorder) bool {
	if len(checks) == 0 {
		return false
	}
	ok := true
	m := checks[0]
	for _, w := range checks {
		if w.Applied != masterSeq {
			ok = false
			rec.violation("replica-behind", "worker %s (%s) has applied_seq %d in its file, the master %d", w.ID, w.Role, w.Applied, masterSeq)
		}
		if w.Checksum != m.Checksum {
			ok = false
			var diff []string
			for _, t := range handlerTables {
				if w.Tables[t] != m.Tables[t] {
					diff = append(diff, fmt.Sprintf("%s (%d rows vs master's %d)", t, w.Rows[t], m.Rows[t]))
				}
			}
			rec.violation("replica-divergence", "worker %s (%s) checksum %.12s differs from master %s's %.12s in %s",
				w.ID, w.Role, w.Checksum, m.ID, m.Checksum, strings.Join(diff, ", "))
		}
		if w.WritesChecksum != m.WritesChecksum {
			ok = false
			rec.violation("replica-divergence", "worker %s (%s): its _writes (id, seq) differ from master %s's", w.ID, w.Role, m.ID)
		}
	}
	return ok
}

// checkAcked checks every write on every replica: an acknowledged write is
// there exactly once, with the sequence number it was acknowledged with;
// an unacknowledged one is there at most once.
func checkAcked(rec *recorder, dumps []*dump, masterSeq uint64, userPrefix string) int {
	writes := rec.snapshotWrites()
	const maxPerKind = 25
	reported := map[string]int{}
	bad := func(kind, format string, args ...any) {
		reported[kind]++
		if reported[kind] <= maxPerKind {
			rec.violation(kind, format, args...)
		}
	}
	checked := 0
	for _, d := range dumps {
		for _, w := range writes {
			if !w.Acked {
				if w.Op == opCreate {
					if n := len(d.byKey[rideKey(w.Username, w.TS)]); n > 1 {
						bad("duplicate", "worker %s: unacknowledged write %s (rides.create %s ts %d) applied %d times", d.id, w.ID, w.Username, w.TS, n)
					}
				}
				continue
			}
			if w.Status != 200 {
				continue // an acknowledged refusal, already reported
			}
			checked++
			if ws, ok := d.writes[w.ID]; !ok {
				if masterSeq < keepWrites || w.Seq > masterSeq-keepWrites+1000 {
					bad("lost", "worker %s: acknowledged write %s (%s, seq %d) has no _writes record", d.id, w.ID, w.Op, w.Seq)
				}
			} else if ws != w.Seq {
				bad("seq-mismatch", "worker %s: write %s was acknowledged with seq %d but is recorded at seq %d", d.id, w.ID, w.Seq, ws)
			}
			switch w.Op {
			case opAddUser:
				if !d.users[w.Username] {
					bad("lost", "worker %s: acknowledged users.add %s (write %s, seq %d) missing", d.id, w.Username, w.ID, w.Seq)
				}
			case opCreate:
				ids := d.byKey[rideKey(w.Username, w.TS)]
				switch {
				case len(ids) == 0:
					bad("lost", "worker %s: acknowledged rides.create (write %s, seq %d, rideId %d) missing", d.id, w.ID, w.Seq, w.RideID)
				case len(ids) > 1:
					bad("duplicate", "worker %s: acknowledged rides.create (write %s) applied %d times: rides %v", d.id, w.ID, len(ids), ids)
				case ids[0] != w.RideID:
					bad("mismatch", "worker %s: acknowledged rides.create (write %s) answered rideId %d but the ride is %d", d.id, w.ID, w.RideID, ids[0])
				}
			case opJoin:
				if !d.members[strconv.FormatInt(w.RideID, 10)+"|"+w.Username] {
					bad("lost", "worker %s: acknowledged rides.join of %s to ride %d (write %s, seq %d) missing", d.id, w.Username, w.RideID, w.ID, w.Seq)
				}
			}
		}
		// Any ride of this run's users applied twice, acknowledged or not.
		for k, ids := range d.byKey {
			if len(ids) > 1 && strings.HasPrefix(k, userPrefix) {
				bad("duplicate", "worker %s: %d rides with creator|timestamp %s: %v", d.id, len(ids), k, ids)
			}
		}
	}
	for kind, n := range reported {
		if n > maxPerKind {
			rec.violation(kind, "… and %d more %s violations", n-maxPerKind, kind)
		}
	}
	return checked
}
