package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rideshare-dbaas/rideshare/internal/mq"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

// The replication logic driven through fakes of ZooKeeper and RabbitMQ
// (ports.go) that fail on cue, over real SQLite files. Each test replays
// one way a write could be acknowledged and then lost, and checks the
// invariant that closes it: nothing is acked or answered before every
// entry up to its sequence number is confirmed on the sync stream, and a
// replica never drops entries it cannot place yet.

// ---- fakes ----

// events is an ordered log shared by the fakes, for assertions on order.
type events struct {
	mu  sync.Mutex
	log []string
}

func (e *events) add(format string, args ...any) {
	e.mu.Lock()
	e.log = append(e.log, fmt.Sprintf(format, args...))
	e.mu.Unlock()
}

func (e *events) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.log...)
}

// fakeCoord is a Coordinator whose master record a test sets, or scripts
// per call (check is called with the 1-based call number).
type fakeCoord struct {
	mu    sync.Mutex
	rec   wire.MasterRecord
	calls int
	// slavesLow/slavesOK answer SlavesApplied.
	slavesLow uint64
	slavesOK  bool
	check     func(n int) (wire.MasterRecord, bool, error)
}

func (c *fakeCoord) Connected() bool { return true }

// SlavesApplied: no other slave, unless slaves is set.
func (c *fakeCoord) SlavesApplied(context.Context, string) (uint64, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slavesLow, c.slavesOK, nil
}

func (c *fakeCoord) MasterRecord(context.Context) (wire.MasterRecord, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.check != nil {
		return c.check(c.calls)
	}
	return c.rec, true, nil
}

// fakeSync is a SyncPublisher. fail, when set, decides per publish
// whether it fails; lost publishes still reach the stream (the message
// was routed, the confirm never came). Every confirmed or routed batch is
// kept, and handed to tap (a slave's queue) when set.
type fakeSync struct {
	ev   *events
	mu   sync.Mutex
	fail func(b wire.SyncBatch) (routed bool, err error)
	tap  func(b wire.SyncBatch)
	seen []wire.SyncBatch // routed to the slaves' queues
}

func (s *fakeSync) PublishSync(_ context.Context, b wire.SyncBatch) error {
	s.mu.Lock()
	fail, tap := s.fail, s.tap
	s.mu.Unlock()
	routed, err := true, error(nil)
	if fail != nil {
		routed, err = fail(b)
	}
	if routed {
		s.mu.Lock()
		s.seen = append(s.seen, b)
		s.mu.Unlock()
		if tap != nil {
			tap(b)
		}
	}
	if err != nil {
		s.ev.add("publish failed %s", batchRange(b))
		return err
	}
	s.ev.add("confirmed %s", batchRange(b))
	return nil
}

// stream returns every entry routed to the slaves, in order.
func (s *fakeSync) stream() []wire.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []wire.Entry
	for _, b := range s.seen {
		out = append(out, b.Entries...)
	}
	return out
}

func batchRange(b wire.SyncBatch) string {
	if b.Barrier != "" {
		return "barrier"
	}
	if len(b.Entries) == 0 {
		return "empty"
	}
	return fmt.Sprintf("seq %d..%d", b.Entries[0].Seq, b.Entries[len(b.Entries)-1].Seq)
}

// fakeReplier records replies.
type fakeReplier struct {
	ev      *events
	mu      sync.Mutex
	by      map[string]wire.Reply // by correlation id
	onReply func(corr string)
}

func (r *fakeReplier) Reply(_ context.Context, d amqp.Delivery, body []byte) {
	var rep wire.Reply
	_ = json.Unmarshal(body, &rep)
	r.mu.Lock()
	if r.by == nil {
		r.by = map[string]wire.Reply{}
	}
	r.by[d.CorrelationId] = rep
	on := r.onReply
	r.mu.Unlock()
	if on != nil {
		on(d.CorrelationId)
	}
	r.ev.add("reply %s status %d seq %d", d.CorrelationId, rep.Status, rep.Seq)
}

func (r *fakeReplier) get(corr string) (wire.Reply, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep, ok := r.by[corr]
	return rep, ok
}

// fakeAck is the amqp.Acknowledger of test deliveries. It remembers which
// tags were settled (acked or nacked, one by one or up to a tag).
type fakeAck struct {
	ev      *events
	failAck bool

	mu      sync.Mutex
	upTo    uint64
	settled map[uint64]bool
}

func (a *fakeAck) settle(tag uint64, multiple bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.settled == nil {
		a.settled = map[uint64]bool{}
	}
	if multiple {
		a.upTo = max(a.upTo, tag)
	}
	a.settled[tag] = true
}

func (a *fakeAck) isSettled(tag uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return tag <= a.upTo || a.settled[tag]
}

func (a *fakeAck) Ack(tag uint64, multiple bool) error {
	if a.failAck {
		a.ev.add("ack %d failed", tag)
		return errors.New("channel closed")
	}
	a.ev.add("ack %d multiple=%v", tag, multiple)
	a.settle(tag, multiple)
	return nil
}

func (a *fakeAck) Nack(tag uint64, multiple, requeue bool) error {
	a.ev.add("nack %d multiple=%v requeue=%v", tag, multiple, requeue)
	a.settle(tag, multiple)
	return nil
}

func (a *fakeAck) Reject(tag uint64, requeue bool) error {
	a.ev.add("reject %d requeue=%v", tag, requeue)
	a.settle(tag, false)
	return nil
}

// kvHandler is an in-process handler over a kv table.
var kvHandler = &pluginapi.Table{
	Name:    "kv",
	Version: "1",
	Ops: []pluginapi.TableOp{
		{Name: "kv.put", Kind: pluginapi.Write, Run: func(ctx context.Context, raw json.RawMessage, db pluginapi.DB) (any, error) {
			var p struct {
				K string `json:"k"`
				V string `json:"v"`
			}
			if err := pluginapi.DecodeParams(raw, &p); err != nil {
				return nil, err
			}
			_, err := db.Exec(ctx, `INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)`, p.K, p.V)
			return struct{}{}, err
		}},
		{Name: "kv.get", Kind: pluginapi.Read, Run: func(ctx context.Context, raw json.RawMessage, db pluginapi.DB) (any, error) {
			var p struct {
				K string `json:"k"`
			}
			if err := pluginapi.DecodeParams(raw, &p); err != nil {
				return nil, err
			}
			rows, err := db.Query(ctx, `SELECT v FROM kv WHERE k = ?`, p.K)
			if err != nil {
				return nil, err
			}
			if len(rows.Values) == 0 {
				return nil, pluginapi.Errorf(pluginapi.CodeNotFound, "no key %q", p.K)
			}
			return rows.Values[0][0], nil
		}},
	},
	Migrations: []pluginapi.Migration{{Version: 1, Statements: []string{`CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)`}}},
}

// ---- harness ----

// node is one worker under test: real store, fake ports.
type node struct {
	t     *testing.T
	w     *Worker
	ev    *events
	coord *fakeCoord
	sync  *fakeSync
	rep   *fakeReplier
	ack   *fakeAck
	tag   uint64
}

func mustNode(t *testing.T, id string, handlers ...pluginapi.Handler) *node {
	t.Helper()
	if len(handlers) == 0 {
		handlers = []pluginapi.Handler{kvHandler}
	}
	reg, err := NewStaticRegistry(context.Background(), handlers...)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w, err := New(Options{ID: id, DataDir: dir, AMQPURL: "amqp://unused", ZKServers: []string{"unused"},
		Registry: reg, Logger: slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug})),
		PublishTimeout: time.Second}) // the production timeouts otherwise
	if err != nil {
		t.Fatal(err)
	}
	st, err := OpenStore(filepath.Join(dir, "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.store.Load().Close() })
	w.store.Store(st)
	ev := &events{}
	n := &node{t: t, w: w, ev: ev, coord: &fakeCoord{}, sync: &fakeSync{ev: ev}, rep: &fakeReplier{ev: ev}, ack: &fakeAck{ev: ev}}
	w.coord, w.syncOut, w.requeue = n.coord, n.sync, requeueFunc(func(_ context.Context, d amqp.Delivery, attempt int) error {
		ev.add("requeue %d attempt=%d", d.DeliveryTag, attempt)
		return d.Ack(false)
	})
	w.setState(wire.StateReady)
	return n
}

// testWriter sends a logger's output to t.Log until the test ends
// (goroutines may still log while they stop).
type testWriter struct {
	t    *testing.T
	mu   *sync.Mutex
	done *bool
}

func newTestWriter(t *testing.T) testWriter {
	w := testWriter{t: t, mu: &sync.Mutex{}, done: new(bool)}
	t.Cleanup(func() {
		w.mu.Lock()
		*w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !*w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// mustBeMaster makes n the master of epoch, with the handlers' schema
// applied (and published) the way a promotion does it.
func (n *node) mustBeMaster(epoch uint64) {
	n.t.Helper()
	n.coord.mu.Lock()
	n.coord.rec = wire.MasterRecord{ID: n.w.opts.ID, Epoch: epoch}
	n.coord.mu.Unlock()
	n.w.mu.Lock()
	n.w.role, n.w.masterEpoch, n.w.knownEpoch, n.w.masterID = wire.RoleMaster, epoch, epoch, n.w.opts.ID
	n.w.mu.Unlock()
	if err := n.w.migrateNow(context.Background(), epoch); err != nil {
		n.t.Fatalf("migrations: %v", err)
	}
}

// failApplying makes applying write id fail every time (a poison write).
func (n *node) failApplying(id string) {
	n.w.faults.apply = func(wid string) error {
		if wid == id {
			return errors.New("disk I/O error (injected)")
		}
		return nil
	}
}

// write makes the delivery of a kv.put with write id (also its correlation id).
func (n *node) write(id, k, v string, redelivered bool) amqp.Delivery {
	n.tag++
	body, _ := json.Marshal(wire.WriteRequest{ID: id, Op: "kv.put", Params: json.RawMessage(fmt.Sprintf(`{"k":%q,"v":%q}`, k, v))})
	return amqp.Delivery{Acknowledger: n.ack, DeliveryTag: n.tag, Type: wire.TypeWrite, Body: body,
		ReplyTo: "replies", CorrelationId: id, Redelivered: redelivered}
}

// session runs the master loop over ds (as one AMQP session would) and
// returns what it ended with once every delivery was handled.
func (n *node) session(epoch uint64, ds ...amqp.Delivery) error {
	n.t.Helper()
	in := make(chan amqp.Delivery, len(ds))
	for _, d := range ds {
		in <- d
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.w.masterLoop(ctx, epoch, in, n.rep) }()
	// The session ends when the loop fails, or once every delivery was
	// acked, nacked or answered (then we stop it).
	deadline := time.After(10 * time.Second)
	for {
		select {
		case err := <-done:
			return err
		case <-deadline:
			n.t.Fatalf("master loop still busy after 10 s; events: %q", n.ev.all())
		case <-time.After(20 * time.Millisecond):
		}
		if n.settled(ds) {
			cancel()
			return <-done
		}
	}
}

// settled reports whether every delivery in ds was acked or nacked.
func (n *node) settled(ds []amqp.Delivery) bool {
	for _, d := range ds {
		if !n.ack.isSettled(d.DeliveryTag) {
			return false
		}
	}
	return true
}

// ackedUpTo returns the highest sequence number answered 200 so far.
func (n *node) ackedUpTo() uint64 {
	n.rep.mu.Lock()
	defer n.rep.mu.Unlock()
	var top uint64
	for _, r := range n.rep.by {
		if r.Status == 200 {
			top = max(top, r.Seq)
		}
	}
	return top
}

// checkStreamCovers fails unless every entry up to upTo reached the
// slaves' queues: nothing answered may be missing from the stream.
func (n *node) checkStreamCovers(upTo uint64) {
	n.t.Helper()
	have := map[uint64]bool{}
	for _, e := range n.sync.stream() {
		have[e.Seq] = true
	}
	for s := uint64(1); s <= upTo; s++ {
		if !have[s] {
			n.t.Fatalf("entry %d was acknowledged (replies up to seq %d) but never reached the sync stream; events: %q",
				s, upTo, n.ev.all())
		}
	}
}

func indexOf(evs []string, prefix string) int {
	for i, e := range evs {
		if strings.HasPrefix(e, prefix) {
			return i
		}
	}
	return -1
}

// ---- master: nothing acknowledged before it is on the sync stream ----

// Hole 1: the publish after the commit fails; the batch is redelivered
// and answered from _writes. The old master acked it without ever
// publishing its entry.
func TestMaster_RedeliveryAfterFailedPublishRepublishes(t *testing.T) {
	n := mustNode(t, "m1")
	n.mustBeMaster(1)
	n.sync.fail = func(b wire.SyncBatch) (bool, error) { return false, errors.New("channel closed") }
	if err := n.session(1, n.write("w1", "a", "1", false)); err == nil {
		t.Fatal("a session whose sync publish failed did not end with an error")
	}
	if _, ok := n.rep.get("w1"); ok {
		t.Fatal("w1 answered although its entry was not confirmed on the sync stream")
	}
	n.sync.fail = nil // the broker is back; the write comes again
	if err := n.session(1, n.write("w1", "a", "1", true)); err != nil {
		t.Fatalf("second session: %v", err)
	}
	rep, ok := n.rep.get("w1")
	if !ok || rep.Status != 200 {
		t.Fatalf("w1 after redelivery: %+v %v; events %q", rep, ok, n.ev.all())
	}
	n.checkStreamCovers(rep.Seq)
	// And confirmed before it was acked.
	evs := n.ev.all()
	a := indexOf(evs, "ack 2")
	covered := false
	for _, e := range evs[:max(a, 0)] {
		var lo, hi uint64
		if _, err := fmt.Sscanf(e, "confirmed seq %d..%d", &lo, &hi); err == nil && lo <= rep.Seq && rep.Seq <= hi {
			covered = true
		}
	}
	if !covered {
		t.Fatalf("w1 (seq %d) acked before its entry was confirmed: %q", rep.Seq, evs)
	}
}

// Hole 1, second shape: after a failed publish the next session takes the
// redelivered write together with a new one. The old master published
// only the new entry: the redelivered one's entry existed on the master
// alone, and both were acknowledged.
func TestMaster_NoAckPastAnUnconfirmedEntry(t *testing.T) {
	n := mustNode(t, "m1")
	n.mustBeMaster(1)
	calls := 0
	n.sync.fail = func(b wire.SyncBatch) (bool, error) {
		calls++
		if calls == 1 {
			return false, errors.New("confirm timed out")
		}
		return true, nil
	}
	_ = n.session(1, n.write("w1", "a", "1", false))
	if err := n.session(1, n.write("w1", "a", "1", true), n.write("w2", "b", "2", false)); err != nil {
		t.Fatalf("second session: %v", err)
	}
	for _, id := range []string{"w1", "w2"} {
		if rep, ok := n.rep.get(id); !ok || rep.Status != 200 {
			t.Fatalf("%s: %+v %v", id, rep, ok)
		}
	}
	n.checkStreamCovers(n.ackedUpTo())
}

// A confirm that is lost although the message was routed: the entries
// reach the slaves twice, which they skip; the write is answered once
// the range is confirmed.
func TestMaster_LostConfirm(t *testing.T) {
	n := mustNode(t, "m1")
	n.mustBeMaster(1)
	calls := 0
	n.sync.fail = func(b wire.SyncBatch) (bool, error) {
		calls++
		if calls == 1 {
			return true, errors.New("confirm timed out")
		}
		return true, nil
	}
	_ = n.session(1, n.write("w1", "a", "1", false))
	if err := n.session(1, n.write("w1", "a", "1", true)); err != nil {
		t.Fatal(err)
	}
	if rep, ok := n.rep.get("w1"); !ok || rep.Status != 200 {
		t.Fatalf("w1: %+v %v", rep, ok)
	}
	n.checkStreamCovers(n.ackedUpTo())
	// A slave fed the stream (with the duplicate) ends identical.
	s := mustNode(t, "s1")
	if err := s.w.applyStream(context.Background(), n.sync.stream()); err != nil {
		t.Fatal(err)
	}
	if a, b := dumpKV(t, n.w.store.Load()), dumpKV(t, s.w.store.Load()); a != b {
		t.Fatalf("slave %s != master %s", b, a)
	}
}

// The fence is lost between the commit and the ack: another master was
// named. Nothing is acked or answered, the batch goes back to the queue,
// and the worker stops (ErrFenced).
func TestMaster_FenceLostBetweenCommitAndAck(t *testing.T) {
	n := mustNode(t, "m1")
	n.mustBeMaster(1)
	calls := n.coord.calls
	n.coord.check = func(c int) (wire.MasterRecord, bool, error) {
		if c <= calls+1 {
			return wire.MasterRecord{ID: "m1", Epoch: 1}, true, nil // before the commit
		}
		return wire.MasterRecord{ID: "m2", Epoch: 2}, true, nil // after the publish
	}
	err := n.session(1, n.write("w1", "a", "1", false))
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("err = %v, want ErrFenced", err)
	}
	if _, ok := n.rep.get("w1"); ok {
		t.Fatal("a deposed master answered a write")
	}
	evs := n.ev.all()
	if indexOf(evs, "ack ") >= 0 || indexOf(evs, "nack 1") < 0 {
		t.Fatalf("want the batch nacked back to the queue, not acked: %q", evs)
	}
}

// The ack is lost after everything succeeded (the channel died): the
// redelivered write is answered from _writes with its first reply and is
// not applied twice.
func TestMaster_RedeliveryAfterCommitIsExactlyOnce(t *testing.T) {
	n := mustNode(t, "m1")
	n.mustBeMaster(1)
	n.ack.failAck = true
	_ = n.session(1, n.write("w1", "a", "1", false))
	first, ok := n.rep.get("w1")
	_ = ok
	n.ack.failAck = false
	if err := n.session(1, n.write("w1", "a", "2", true)); err != nil {
		t.Fatal(err)
	}
	again, ok := n.rep.get("w1")
	if !ok || again.Status != 200 {
		t.Fatalf("w1 again: %+v %v", again, ok)
	}
	if first.Seq != 0 && again.Seq != first.Seq {
		t.Fatalf("redelivery answered seq %d, first answer was %d", again.Seq, first.Seq)
	}
	if got := dumpKV(t, n.w.store.Load()); got != `[["a","1"]]` {
		t.Fatalf("kv after redelivery = %s, want the first write only", got)
	}
}

// Hole 1, third shape: the new master's epoch entry (and migrations) fail
// to publish. The old promotion carried on, and the next batches were
// acknowledged above an entry no slave had.
func TestMaster_UnpublishedEpochEntryIsRepublishedBeforeAnyAck(t *testing.T) {
	n := mustNode(t, "m1")
	n.coord.rec = wire.MasterRecord{ID: "m1", Epoch: 1}
	n.sync.fail = func(b wire.SyncBatch) (bool, error) {
		if b.Barrier != "" {
			return true, nil
		}
		return false, errors.New("broker unreachable")
	}
	// The barrier comes back on our own queue, as through RabbitMQ.
	n.sync.tap = func(b wire.SyncBatch) {
		if b.Barrier != "" {
			n.w.syncIn <- amqp.Delivery{Body: mustJSON(b)}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = n.w.runApplier(ctx, false) }()
	n.w.mu.Lock()
	n.w.promoting = true
	n.w.mu.Unlock()
	if err := n.w.promote(ctx, 1); err != nil {
		t.Fatalf("promotion: %v", err)
	}
	n.sync.fail = nil
	// The promotion carries on; what it must not do is let a write be
	// acknowledged above its unpublished entries.
	if serr := n.session(1, n.write("w1", "a", "1", false)); serr != nil {
		t.Fatalf("session: %v", serr)
	}
	if rep, ok := n.rep.get("w1"); !ok || rep.Status != 200 {
		t.Fatalf("w1: %+v %v", rep, ok)
	}
	n.checkStreamCovers(n.ackedUpTo())
}

// A slave promoted to master may hold entries the other slaves lack (it
// got them through a repair from the old master, which never confirmed
// them; their writes are redelivered and answered from _writes). Before
// it acknowledges anything it republishes what the slaves have not
// applied, as ZooKeeper last saw them.
func TestMaster_PromotionRepublishesWhatSlavesLack(t *testing.T) {
	old := mustNode(t, "m0")
	old.mustBeMaster(1)
	for i := range 4 {
		if err := old.session(1, old.write(fmt.Sprintf("w%d", i), fmt.Sprint(i), "x", false)); err != nil {
			t.Fatal(err)
		}
	}
	n := mustNode(t, "m1")
	if err := n.w.applyStream(context.Background(), old.sync.stream()); err != nil {
		t.Fatal(err)
	}
	top, _ := n.w.store.Load().Applied()
	n.coord.rec = wire.MasterRecord{ID: "m1", Epoch: 2}
	n.coord.slavesLow, n.coord.slavesOK = top-2, true // the other slave lacks the last two
	n.sync.tap = func(b wire.SyncBatch) {
		if b.Barrier != "" {
			n.w.syncIn <- amqp.Delivery{Body: mustJSON(b)}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = n.w.runApplier(ctx, false) }()
	n.w.mu.Lock()
	n.w.promoting = true
	n.w.mu.Unlock()
	if err := n.w.promote(ctx, 2); err != nil {
		t.Fatal(err)
	}
	// The redelivered last write of the old master, answered from _writes.
	if err := n.session(2, n.write("w3", "3", "x", true)); err != nil {
		t.Fatal(err)
	}
	rep, ok := n.rep.get("w3")
	if !ok || rep.Status != 200 || rep.Seq != top {
		t.Fatalf("w3: %+v %v (want seq %d)", rep, ok, top)
	}
	have := map[uint64]bool{}
	for _, e := range n.sync.stream() {
		have[e.Seq] = true
	}
	for s := top - 1; s <= top+1; s++ {
		if !have[s] {
			t.Fatalf("entry %d not published by the new master: %q", s, n.ev.all())
		}
	}
}

// ---- slave: entries beyond a gap are kept, not dropped ----

// Hole 1, the replica's side: entries arrive after a gap while the master
// cannot be asked (it died, or this slave is being promoted). The old
// applier dropped them; the missing entry then came (republished) and
// the later ones were gone for good.
func TestSlave_KeepsEntriesBeyondAGap(t *testing.T) {
	m := mustNode(t, "m1")
	m.mustBeMaster(1)
	for i := range 3 {
		if err := m.session(1, m.write(fmt.Sprintf("w%d", i), fmt.Sprint(i), "x", false)); err != nil {
			t.Fatal(err)
		}
	}
	stream := m.sync.stream()
	if len(stream) < 4 {
		t.Fatalf("stream has %d entries", len(stream))
	}
	s := mustNode(t, "s1")
	s.w.repairs = repairFunc(func(context.Context, wire.RepairRequest, time.Duration) (wire.RepairReply, error) {
		return wire.RepairReply{}, errors.New("master gone")
	})
	s.w.mu.Lock()
	s.w.role, s.w.masterID = wire.RoleSlave, "m1"
	s.w.mu.Unlock()
	last := len(stream) - 1
	// Everything but entry `last-1`, then that one alone.
	if err := s.w.applyStream(context.Background(), append(stream[:last-1:last-1], stream[last])); err == nil {
		t.Log("gap reported no error")
	}
	if err := s.w.applyStream(context.Background(), []wire.Entry{stream[last-1]}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.w.store.Load().Applied(); got != stream[last].Seq {
		t.Fatalf("slave applied %d, want %d: the entry after the gap was dropped", got, stream[last].Seq)
	}
}

// requeueFunc is a Requeuer from a function.
type requeueFunc func(context.Context, amqp.Delivery, int) error

func (f requeueFunc) Requeue(ctx context.Context, d amqp.Delivery, attempt int) error {
	return f(ctx, d, attempt)
}

// repairFunc is a RepairClient from a function.
type repairFunc func(context.Context, wire.RepairRequest, time.Duration) (wire.RepairReply, error)

func (f repairFunc) Repair(ctx context.Context, req wire.RepairRequest, timeout time.Duration) (wire.RepairReply, error) {
	return f(ctx, req, timeout)
}

func dumpKV(t *testing.T, st *Store) string {
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

// ---- poison ----

// A write whose application fails every time (not its handler's answer:
// the worker cannot apply it) must not take its batch with it, and must
// not loop: its batch-mates are answered, and on its DeliveryLimit-th
// delivery it is answered with an error and dead-lettered. The old master
// nacked the whole batch back to the queue, forever.
func TestMaster_PoisonWriteIsDroppedAfterTheDeliveryLimit(t *testing.T) {
	n := mustNode(t, "m1")
	n.mustBeMaster(1)
	n.failApplying("poison")
	if err := n.session(1, n.write("ok1", "a", "1", false), n.write("poison", "p", "x", false), n.write("ok2", "b", "2", false)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ok1", "ok2"} {
		if rep, ok := n.rep.get(id); !ok || rep.Status != 200 {
			t.Fatalf("%s, in the batch of a poison write: %+v %v; events %q", id, rep, ok, n.ev.all())
		}
	}
	if _, ok := n.rep.get("poison"); ok {
		t.Fatal("the poison write was answered on its first delivery")
	}
	limit := n.w.opts.DeliveryLimit
	for count := 1; count < limit; count++ {
		d := n.write("poison", "p", "x", true)
		// The broker's own count says nothing (every failover raises it);
		// the master's does.
		d.Headers = amqp.Table{"x-delivery-count": int64(100), HeaderAttempts: int64(count)}
		if err := n.session(1, d); err != nil {
			t.Fatal(err)
		}
		evs := n.ev.all()
		if count+1 < limit {
			if indexOf(evs, fmt.Sprintf("requeue %d attempt=%d", d.DeliveryTag, count+1)) < 0 {
				t.Fatalf("try %d: %q, want it back in the queue with the try counted", count+1, evs)
			}
			if _, ok := n.rep.get("poison"); ok {
				t.Fatalf("delivery %d answered before its last try", count+1)
			}
			continue
		}
		rep, ok := n.rep.get("poison")
		if !ok || rep.Status != 500 || !strings.Contains(rep.Error, "dropped") || !strings.Contains(rep.Error, "writeQ.dead") {
			t.Fatalf("last delivery: %+v %v, want a 500 saying it was dropped to the dead-letter queue", rep, ok)
		}
		if indexOf(evs, fmt.Sprintf("nack %d multiple=false requeue=false", d.DeliveryTag)) < 0 {
			t.Fatalf("last delivery: %q, want it dead-lettered (nack without requeue)", evs)
		}
	}
}

// Review finding: confirmUpTo published a batch's entries as one run
// even when another commit (a migration, between the one-write
// transactions of a poison redo) took a sequence number in between; the
// watermark then jumped over an entry never published.
func TestMaster_ConfirmUpToFillsHolesInsideABatch(t *testing.T) {
	n := mustNode(t, "m1")
	n.mustBeMaster(1)
	var es []wire.Entry
	for i := range 3 {
		es = append(es, mustWrite(t, n.w.store.Load(), fmt.Sprintf("w%d", i), exec(`INSERT INTO kv (k, v) VALUES (?, 'x')`, fmt.Sprint(i))))
	}
	// The first and the last are the batch's; the middle one is another
	// commit's, not published yet.
	if err := n.w.confirmUpTo(context.Background(), 1, []wire.Entry{es[0], es[2]}); err != nil {
		t.Fatal(err)
	}
	n.checkStreamCovers(es[2].Seq)
}

// Review finding: a repair compared sequence numbers only, so a slave
// holding a deposed master's unconfirmed entries, ahead of the new
// master, was told it had nothing to repair. The master now checks the
// entry before the asked range (log matching), and serves only entries
// confirmed on the sync stream.
func TestMaster_RepairChecksLogMatching(t *testing.T) {
	n := mustNode(t, "m1")
	n.mustBeMaster(2)
	for i := range 3 {
		if err := n.session(2, n.write(fmt.Sprintf("w%d", i), fmt.Sprint(i), "x", false)); err != nil {
			t.Fatal(err)
		}
	}
	top, ep := n.w.store.Load().Applied()
	ask := func(from, prevEpoch uint64) wire.RepairReply {
		return n.w.serveRepair(context.Background(), amqp.Delivery{Body: mustJSON(wire.RepairRequest{From: from, PrevEpoch: prevEpoch})})
	}
	if r := ask(top, ep); r.Diverged || len(r.Entries) != 1 {
		t.Fatalf("a matching replica one entry behind: %+v", r)
	}
	if r := ask(top, ep+1); !r.Diverged {
		t.Fatalf("a replica whose entry %d has another epoch was not told it diverged: %+v", top-1, r)
	}
	if r := ask(top+3, ep); !r.Diverged {
		t.Fatalf("a replica ahead of the master was not told it diverged: %+v", r)
	}
	// An entry committed but not confirmed is not served.
	mustWrite(t, n.w.store.Load(), "unconfirmed", exec(`INSERT INTO kv (k, v) VALUES ('u', 'x')`))
	if r := ask(top+1, ep); len(r.Entries) != 0 {
		t.Fatalf("an unconfirmed entry was served by repair: %+v", r.Entries)
	}
}

// Review finding: reads of one message were served one after another,
// so one waiting for a min_seq this slave had not reached made every
// read behind it miss its deadline.
func TestSlave_ReadsOfABatchWaitAlone(t *testing.T) {
	s, top := mustSlaveAfterOneWrite(t)
	now := time.Now()
	batch := wire.ReadBatch{Reads: []wire.ReadRequest{
		{Op: "kv.get", Params: json.RawMessage(`{"k":"a"}`), MinSeq: top + 100, Deadline: now.Add(time.Second).UnixMilli()},
		{Op: "kv.get", Params: json.RawMessage(`{"k":"a"}`), MinSeq: top, Deadline: now.Add(10 * time.Second).UnixMilli()},
	}}
	raw, ok := s.w.serveReads(context.Background(), amqp.Delivery{Type: wire.TypeReads, Body: mustJSON(batch)})
	if !ok {
		t.Fatal("no answer")
	}
	var out wire.ReplyBatch
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Replies) != 2 {
		t.Fatalf("%v %s", err, raw)
	}
	if out.Replies[0].Status != 503 || out.Replies[1].Status != 200 {
		t.Fatalf("replies %+v: want the unreachable read 503 and the other 200", out.Replies)
	}
}

// mustSlaveAfterOneWrite is a slave that applied a master's stream after
// the write of k "a" = "1", and its applied sequence number.
func mustSlaveAfterOneWrite(t *testing.T) (*node, uint64) {
	t.Helper()
	m := mustNode(t, "m1")
	m.mustBeMaster(1)
	if err := m.session(1, m.write("w0", "a", "1", false)); err != nil {
		t.Fatal(err)
	}
	s := mustNode(t, "s1")
	if err := s.w.applyStream(context.Background(), m.sync.stream()); err != nil {
		t.Fatal(err)
	}
	top, _ := s.w.store.Load().Applied()
	return s, top
}

// Review finding: after a failover a slave answered reads from a log that
// still ended in the deposed master's epoch (possibly with its
// unacknowledged entries). A slave now answers once its log reached the
// epoch of the master it knows.
func TestSlave_ReadsWaitForTheKnownEpoch(t *testing.T) {
	m := mustNode(t, "m1")
	m.mustBeMaster(1)
	s := mustNode(t, "s1")
	if err := s.w.applyStream(context.Background(), m.sync.stream()); err != nil {
		t.Fatal(err)
	}
	s.w.noteEpoch(2) // a new master was named; its epoch entry has not come yet
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := s.w.waitReadable(ctx, 0); err == nil {
		t.Fatal("a slave still in epoch 1 answered after epoch 2 was named")
	}
	m2 := mustNode(t, "m2")
	if err := m2.w.applyStream(context.Background(), m.sync.stream()); err != nil {
		t.Fatal(err)
	}
	m2.coord.rec = wire.MasterRecord{ID: "m2", Epoch: 2}
	m2.sync.tap = func(b wire.SyncBatch) {
		if b.Barrier != "" {
			m2.w.syncIn <- amqp.Delivery{Body: mustJSON(b)}
		}
	}
	pctx, pcancel := context.WithCancel(context.Background())
	defer pcancel()
	go func() { _ = m2.w.runApplier(pctx, false) }()
	m2.w.mu.Lock()
	m2.w.promoting = true
	m2.w.mu.Unlock()
	if err := m2.w.promote(pctx, 2); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := s.w.waitReadable(c, 0)
		done <- err
	}()
	var epochEntry []wire.Entry
	for _, e := range m2.sync.stream() {
		if e.Epoch == 2 {
			epochEntry = append(epochEntry, e)
		}
	}
	if err := s.w.applyStream(context.Background(), epochEntry); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the slave did not answer after applying the new epoch's entry: %v", err)
	}
}

// A repair call waiting on a master that died (its request sits in the
// repair queue nobody consumes) is abandoned as soon as a new master is
// named, rather than waiting out its timeout (a minute for a snapshot).
func TestRepair_AbandonedWhenANewMasterIsNamed(t *testing.T) {
	n := mustNode(t, "s1")
	n.w.noteEpoch(1)
	// No AMQP session ever comes: the call blocks until its context ends.
	n.w.caller = mq.NewCaller(n.w.log)
	n.w.caller.ConnectWait = time.Minute
	done := make(chan error, 1)
	go func() {
		_, err := mqRepair{n.w}.Repair(context.Background(), wire.RepairRequest{Snapshot: true, Worker: "s1"}, time.Minute)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("repair returned before any new master: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	n.w.noteEpoch(1) // the same master again: nothing moves
	select {
	case err := <-done:
		t.Fatalf("repair returned on a known epoch: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	n.w.noteEpoch(2)
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("repair ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("repair still waiting 10 s after a new master was named")
	}
}
