package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

// The hostile plugin (testdata/hostile) is built once with `go build` and
// run as a real go-plugin process, as the worker runs its plugins.
var hostileBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if hostileBin.dir != "" {
		os.RemoveAll(hostileBin.dir)
	}
	os.Exit(code)
}

func goTool() string {
	if p, err := osexec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// mustHostile starts the hostile plugin and returns its handler; the
// process is killed when the test ends.
func mustHostile(t *testing.T) pluginapi.Handler {
	t.Helper()
	hostileBin.once.Do(func() {
		hostileBin.dir, hostileBin.err = os.MkdirTemp("", "worker-hostile-")
		if hostileBin.err != nil {
			return
		}
		hostileBin.path = filepath.Join(hostileBin.dir, "hostile")
		out, err := osexec.Command(goTool(), "build", "-o", hostileBin.path, "./testdata/hostile").CombinedOutput()
		if err != nil {
			hostileBin.err = fmt.Errorf("go build ./testdata/hostile: %v\n%s", err, out)
		}
	})
	if hostileBin.err != nil {
		t.Fatal(hostileBin.err)
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  pluginapi.Handshake,
		VersionedPlugins: pluginapi.VersionedPlugins,
		Cmd:              osexec.Command(hostileBin.path),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           hclog.NewNullLogger(),
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := rpc.Dispense(pluginapi.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(pluginapi.Handler)
}

// op makes the delivery of write operation op (no parameters).
func (n *node) op(id, op string) amqp.Delivery {
	n.tag++
	body, _ := json.Marshal(wire.WriteRequest{ID: id, Op: op, Params: json.RawMessage(`{}`)})
	return amqp.Delivery{Acknowledger: n.ack, DeliveryTag: n.tag, Type: wire.TypeWrite, Body: body,
		ReplyTo: "replies", CorrelationId: id}
}

// dumpAll returns every table a handler can see, for replica comparison.
func dumpAll(t *testing.T, st *Store) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{`SELECT k, v FROM kv ORDER BY k`, `SELECT id, v FROM hostile ORDER BY id`} {
		db, done, err := st.Reader(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		rows, err := db.Query(context.Background(), q)
		done()
		if err != nil {
			t.Fatal(err)
		}
		j, _ := json.Marshal(rows.Values)
		b.Write(j)
	}
	return b.String()
}

// A write handler that tries to get around the worker is refused with a
// clear error, fails only its own write, and never changes what SQLite
// holds behind the worker's back: the writes before and after it in the
// same group commit succeed, and a replica replaying the sync stream ends
// identical to the master. Writes a handler makes through Query (INSERT …
// RETURNING) are recorded like those through Exec.
func TestHostilePlugin_Writes(t *testing.T) {
	h := mustHostile(t)
	tests := []struct {
		op, wantErr string // wantErr "" means 200
	}{
		{"hostile.insert", ""},
		{"hostile.returning", ""},
		{"hostile.cte_write", ""},
		{"hostile.commit", "transaction control belongs to the worker"},
		{"hostile.commit_ignored", ""},
		{"hostile.commit_comment", "transaction control belongs to the worker"},
		{"hostile.rollback", "transaction control belongs to the worker"},
		{"hostile.savepoint", "transaction control belongs to the worker"},
		{"hostile.release", "transaction control belongs to the worker"},
		{"hostile.attach", "attaching databases is not allowed"},
		{"hostile.pragma", "PRAGMA is not allowed"},
		{"hostile.pragma_fn", "PRAGMA is not allowed"},
		{"hostile.vacuum", "VACUUM is not allowed"},
		{"hostile.meta", "_meta belongs to the worker"},
		{"hostile.log", "_log belongs to the worker"},
		{"hostile.writes", "_writes belongs to the worker"},
		{"hostile.migrations", "belongs to the worker"},
		{"hostile.read_log", "_log belongs to the worker"},
		{"hostile.multi", "one statement per call"},
		{"hostile.random", "not deterministic"},
		{"hostile.failed_write_ignored", "a write statement of the operation failed"},
	}
	for _, tt := range tests {
		t.Run(tt.op, func(t *testing.T) {
			m := mustNode(t, "m1", kvHandler, h)
			m.mustBeMaster(1)
			err := m.session(1, m.write("before", "a", "1", false), m.op("hostile", tt.op), m.write("after", "b", "2", false))
			if err != nil {
				t.Fatalf("session: %v (events %q)", err, m.ev.all())
			}
			for _, id := range []string{"before", "after"} {
				if rep, ok := m.rep.get(id); !ok || rep.Status != 200 {
					t.Fatalf("%s, in the same batch: %+v %v", id, rep, ok)
				}
			}
			rep, _ := m.rep.get("hostile")
			switch {
			case tt.wantErr == "" && rep.Status != 200:
				t.Fatalf("%s: %d %s, want 200", tt.op, rep.Status, rep.Error)
			case tt.wantErr != "" && (rep.Status != 502 || !strings.Contains(rep.Error, tt.wantErr)):
				t.Fatalf("%s: %d %q, want 502 mentioning %q", tt.op, rep.Status, rep.Error, tt.wantErr)
			}
			// Nothing reached SQLite behind the worker: a replica fed the
			// stream is identical, and the master's log is intact.
			s := mustNode(t, "s1", kvHandler, h)
			if err := s.w.applyStream(context.Background(), m.sync.stream()); err != nil {
				t.Fatal(err)
			}
			if a, b := dumpAll(t, m.w.store.Load()), dumpAll(t, s.w.store.Load()); a != b {
				t.Fatalf("replica %s != master %s", b, a)
			}
			ms, _ := m.w.store.Load().Applied()
			ss, _ := s.w.store.Load().Applied()
			if ms != ss || ms != m.ackedUpTo() {
				t.Fatalf("master at %d, replica at %d, acknowledged %d", ms, ss, m.ackedUpTo())
			}
			if got, _, err := readMeta(context.Background(), m.w.store.Load().w); err != nil || got != ms {
				t.Fatalf("_meta says %d (%v), the store %d", got, err, ms)
			}
		})
	}
}

// A read handler gets a connection that cannot write, and the same guard.
func TestHostilePlugin_Reads(t *testing.T) {
	h := mustHostile(t)
	m := mustNode(t, "m1", kvHandler, h)
	m.mustBeMaster(1)
	s := mustNode(t, "s1", kvHandler, h)
	if err := s.w.applyStream(context.Background(), m.sync.stream()); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ op, wantErr string }{
		{"hostile.read_ok", ""},
		{"hostile.read_write", "readonly"},
		{"hostile.read_meta", "_meta belongs to the worker"},
		{"hostile.read_commit", "transaction control belongs to the worker"},
	}
	for _, tt := range tests {
		t.Run(tt.op, func(t *testing.T) {
			body, _ := json.Marshal(wire.ReadRequest{Op: tt.op, Params: json.RawMessage(`{}`)})
			raw, ok := s.w.serveReads(context.Background(), amqp.Delivery{Type: wire.TypeRead, Body: body})
			var rep wire.Reply
			if err := json.Unmarshal(raw, &rep); !ok || err != nil {
				t.Fatalf("no reply: %v %s", err, raw)
			}
			switch {
			case tt.wantErr == "" && rep.Status != 200:
				t.Fatalf("%d %s", rep.Status, rep.Error)
			case tt.wantErr != "" && (rep.Status != 502 || !strings.Contains(rep.Error, tt.wantErr)):
				t.Fatalf("%d %q, want 502 mentioning %q", rep.Status, rep.Error, tt.wantErr)
			}
		})
	}
	if got := dumpAll(t, s.w.store.Load()); got != `nullnull` && got != `[][]` && !strings.HasSuffix(got, "[]") {
		t.Fatalf("a read changed the replica: %s", got)
	}
}

// One hung handler must not stall its group commit: in a batch of 2 hung
// writes and 14 healthy ones, the 14 are answered 200 well within the
// orchestrator's write deadline (10 s), and the hung ones fail alone.
func TestMaster_HungWritesFailAlone(t *testing.T) {
	h := mustHostile(t)
	m := mustNode(t, "m1", kvHandler, h)
	m.mustBeMaster(1)
	const orchestratorWriteTimeout = 10 * time.Second
	var ds []amqp.Delivery
	for i := range 16 {
		switch i {
		case 0, 6:
			ds = append(ds, m.op(fmt.Sprintf("hung%d", i), "hostile.hang"))
		default:
			ds = append(ds, m.write(fmt.Sprintf("ok%d", i), fmt.Sprint(i), "v", false))
		}
	}
	start := time.Now()
	answered := map[string]time.Duration{}
	var mu sync.Mutex
	m.rep.onReply = func(corr string) {
		mu.Lock()
		answered[corr] = time.Since(start)
		mu.Unlock()
	}
	if err := m.session(1, ds...); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, d := range ds {
		rep, ok := m.rep.get(d.CorrelationId)
		at, seen := answered[d.CorrelationId]
		switch {
		case !ok || !seen:
			t.Fatalf("%s never answered", d.CorrelationId)
		case strings.HasPrefix(d.CorrelationId, "hung") && rep.Status != 502:
			t.Fatalf("%s: %d %s, want 502", d.CorrelationId, rep.Status, rep.Error)
		case strings.HasPrefix(d.CorrelationId, "ok") && rep.Status != 200:
			t.Fatalf("%s: %d %s", d.CorrelationId, rep.Status, rep.Error)
		case strings.HasPrefix(d.CorrelationId, "ok") && at >= orchestratorWriteTimeout:
			t.Fatalf("%s answered after %s: the orchestrator had given up", d.CorrelationId, at)
		}
	}
}
