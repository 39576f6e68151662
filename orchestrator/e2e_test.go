package orchestrator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/testenv"
	"github.com/rideshare-dbaas/rideshare/orchestrator"
)

func TestE2E_WriteThenRead(t *testing.T) {
	s := mustStartStack(t)
	st, m := s.write("users.add", map[string]any{"username": "zoe", "password": "p"})
	if st != 200 || asInt(m["seq"]) <= 0 {
		t.Fatalf("write: %d %v", st, m)
	}
	st, m = s.read("users.list", nil)
	if st != 200 {
		t.Fatalf("read: %d %v", st, m)
	}
	users := m["result"].(map[string]any)["users"].([]any)
	if len(users) != 1 || users[0] != "zoe" {
		t.Fatalf("users = %v", users)
	}
	st, m = s.write("users.add", map[string]any{"username": "zoe", "password": "p"})
	if st != 409 || m["code"] != "conflict" || m["error"] == "" {
		t.Fatalf("duplicate: %d %v", st, m)
	}
}

// Every read that carries the sequence number of the write before it sees
// that write, with "session" consistency (min_seq alone).
func TestE2E_ReadYourWrites(t *testing.T) {
	s := mustStartStack(t)
	for i := range 100 {
		name := fmt.Sprintf("u%03d", i)
		st, m := s.write("users.add", map[string]any{"username": name, "password": "p"})
		if st != 200 {
			t.Fatalf("write %d: %d %v", i, st, m)
		}
		st, m, raw := s.call("POST", "/api/v1/db/read", map[string]any{
			"op": "users.exists", "params": map[string]any{"username": name},
			"min_seq": asInt(m["seq"]), "consistency": "session"})
		if st != 200 || m["result"].(map[string]any)["exists"] != true {
			t.Fatalf("read %d after its write: %d %s", i, st, raw)
		}
		if asInt(m["seq"]) < int64(i) {
			t.Fatalf("read answered at seq %v", m["seq"])
		}
	}
}

// A write sent twice with the same id is applied once and answered the same.
func TestE2E_IdempotentWriteID(t *testing.T) {
	s := mustStartStack(t)
	body := map[string]any{"op": "rides.create", "id": "client-key-1",
		"params": map[string]any{"created_by": "ann", "timestamp": 2000000000, "source": 1, "destination": 2}}
	s.write("users.add", map[string]any{"username": "ann", "password": "p"})
	st1, m1, _ := s.call("POST", "/api/v1/db/write", body)
	st2, m2, _ := s.call("POST", "/api/v1/db/write", body)
	if st1 != 200 || st2 != 200 || fmt.Sprint(m1) != fmt.Sprint(m2) {
		t.Fatalf("first %d %v, second %d %v", st1, m1, st2, m2)
	}
	_, m := s.read("rides.count", nil)
	if n := asInt(m["result"].(map[string]any)["count"]); n != 1 {
		t.Fatalf("rides.count = %d, want 1", n)
	}
}

// A client's retry of one db/clear (same id) runs it once: run twice, it
// would erase the writes made between the two.
func TestE2E_ClearRetryRunsOnce(t *testing.T) {
	s := mustStartStack(t)
	s.write("users.add", map[string]any{"username": "before", "password": "p"})
	if st, _, raw := s.call("POST", "/api/v1/db/clear", map[string]any{"id": "clear-1"}); st != 200 {
		t.Fatalf("clear: %d %s", st, raw)
	}
	if st, m := s.write("users.add", map[string]any{"username": "after", "password": "p"}); st != 200 {
		t.Fatalf("write: %d %v", st, m)
	}
	// The retry (the client never saw the first answer), by body and by header.
	if st, _, raw := s.call("POST", "/api/v1/db/clear", map[string]any{"id": "clear-1"}); st != 200 {
		t.Fatalf("clear retry: %d %s", st, raw)
	}
	req, _ := http.NewRequest("POST", s.url+"/api/v1/db/clear", nil)
	req.Header.Set("Idempotency-Key", "clear-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("clear retry by header: %v %v", resp, err)
	}
	resp.Body.Close()
	_, m := s.read("users.list", nil)
	if users := fmt.Sprint(m["result"].(map[string]any)["users"]); users != "[after]" {
		t.Fatalf("users after the retried clear: %s, want [after]", users)
	}
	// A new clear (another id) clears.
	if st, _, _ := s.call("POST", "/api/v1/db/clear", map[string]any{"id": "clear-2"}); st != 200 {
		t.Fatal("second clear failed")
	}
	_, m = s.read("users.list", nil)
	if users := fmt.Sprint(m["result"].(map[string]any)["users"]); users != "[]" {
		t.Fatalf("users after a new clear: %s", users)
	}
}

// Bad input gets a clear 4xx JSON error and changes nothing.
func TestE2E_BadInput(t *testing.T) {
	s := mustStartStack(t)
	s.write("users.add", map[string]any{"username": "keep", "password": "p"})
	_, before := s.read("users.list", nil)
	tests := []struct {
		name   string
		path   string
		body   string
		status int
		want   string
	}{
		{"malformed JSON", "/api/v1/db/write", `{"op":`, 400, "malformed JSON"},
		{"empty body", "/api/v1/db/write", ``, 400, "body is empty"},
		{"op missing", "/api/v1/db/write", `{"params":{}}`, 400, `"op" is required`},
		{"op not a string", "/api/v1/db/write", `{"op":5}`, 400, `"op" must be a string`},
		{"params not an object", "/api/v1/db/write", `{"op":"users.add","params":[1]}`, 400, "must be a JSON object"},
		{"unknown field", "/api/v1/db/write", `{"op":"users.add","sql":"DROP TABLE users"}`, 400, "unknown field"},
		{"unknown operation", "/api/v1/db/write", `{"op":"DROP TABLE users"}`, 400, "unknown write operation"},
		{"read op as a write", "/api/v1/db/write", `{"op":"users.list"}`, 400, "unknown write operation"},
		{"write op as a read", "/api/v1/db/read", `{"op":"users.delete","params":{"username":"keep"}}`, 400, "unknown read operation"},
		{"wrong param type", "/api/v1/db/write", `{"op":"users.delete","params":{"username":7}}`, 400, "username"},
		{"negative min_seq", "/api/v1/db/read", `{"op":"users.list","min_seq":-1}`, 400, "min_seq"},
		// A read waiting for what nobody committed would hold a slave's
		// read slot until its deadline; a few would stop all reads.
		{"min_seq above anything committed", "/api/v1/db/read", `{"op":"users.list","min_seq":1000000000}`, 400, "above the highest sequence number committed"},
		{"clear with an unknown field", "/api/v1/db/clear", `{"id":"x","all":true}`, 400, "unknown field"},
		{"clear id too long", "/api/v1/db/clear", `{"id":"` + strings.Repeat("x", 129) + `"}`, 400, "longer than"},
		{"bad consistency", "/api/v1/db/read", `{"op":"users.list","consistency":"eventual-ish"}`, 400, "consistency"},
		{"trailing data", "/api/v1/db/write", `{"op":"users.list"} {}`, 400, "after the JSON object"},
		{"body too large", "/api/v1/db/write", `{"op":"users.add","params":{"username":"` + strings.Repeat("x", 17<<20) + `"}}`, 413, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, m, raw := s.call("POST", tt.path, tt.body)
			if st != tt.status {
				t.Fatalf("status %d, want %d: %s", st, tt.status, raw)
			}
			if msg, _ := m["error"].(string); !strings.Contains(msg, tt.want) {
				t.Fatalf("error %q does not mention %q", msg, tt.want)
			}
		})
	}
	if st, _, _ := s.call("GET", "/api/v1/db/write", nil); st != 405 {
		t.Errorf("GET db/write = %d, want 405", st)
	}
	_, after := s.read("users.list", nil)
	if fmt.Sprint(before["result"]) != fmt.Sprint(after["result"]) {
		t.Fatalf("data changed: %v -> %v", before["result"], after["result"])
	}
}

func TestE2E_CrashSlaveIsReplacedAndCatchesUp(t *testing.T) { testCrashSlave(t, runtimeProcess) }

func testCrashSlave(t *testing.T, kind string) {
	s := mustStartStackOn(t, kind)
	for i := range 20 {
		s.write("users.add", map[string]any{"username": fmt.Sprintf("u%d", i), "password": "p"})
	}
	before := s.waitShape(1, 20*time.Second)
	st, _, raw := s.call("POST", "/api/v1/crash/slave", nil)
	if st != 200 {
		t.Fatalf("crash/slave: %d %s", st, raw)
	}
	var slave orchestrator.WorkerView
	for _, w := range before {
		if w.Role == "slave" {
			slave = w
		}
	}
	if want := fmt.Sprintf("[%d]", slave.PID); strings.TrimSpace(string(raw)) != want {
		t.Fatalf("crash/slave answered %s, want %s", raw, want)
	}
	s.waitShape(1, 20*time.Second, slave.PID)
	// The replacement serves reads with everything.
	st, m := s.read("users.list", nil)
	if st != 200 || len(m["result"].(map[string]any)["users"].([]any)) != 20 {
		t.Fatalf("read after replacement: %d %v", st, m)
	}
}

// Writers keep writing while the master is killed: every acknowledged write
// is there afterwards, and none was applied twice (rides.create is not
// idempotent by itself: a double apply would make two rides).
func TestE2E_CrashMasterLosesNothing(t *testing.T) { testCrashMasterLosesNothing(t, runtimeProcess) }

func testCrashMasterLosesNothing(t *testing.T, kind string) {
	s := mustStartStackOn(t, kind)
	s.write("users.add", map[string]any{"username": "ann", "password": "p"})
	s.waitShape(1, 20*time.Second)

	var (
		mu    sync.Mutex
		acked = map[int64]bool{} // rideIds acknowledged
		wg    sync.WaitGroup
		stop  = make(chan struct{})
	)
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := map[string]any{"op": "rides.create", "id": fmt.Sprintf("c%d-%d", c, i),
					"params": map[string]any{"created_by": "ann", "timestamp": 2000000000 + i, "source": 1 + c, "destination": 100}}
				// A client retries with the same id until it gets an answer.
				for attempt := 0; attempt < 20; attempt++ {
					st, m, _ := s.call("POST", "/api/v1/db/write", body)
					if st == 200 {
						mu.Lock()
						id := asInt(m["result"].(map[string]any)["rideId"])
						if acked[id] {
							t.Errorf("rideId %d acknowledged twice", id)
						}
						acked[id] = true
						mu.Unlock()
						break
					}
					if st != 503 {
						t.Errorf("write answered %d %v", st, m)
						return
					}
				}
			}
		}()
	}
	waitAcked := func(n int) {
		testenv.Eventually(t, 30*time.Second, "writes acknowledged", func() (bool, string) {
			mu.Lock()
			defer mu.Unlock()
			return len(acked) >= n, fmt.Sprint(len(acked))
		})
	}
	waitAcked(50)
	st, _, raw := s.call("POST", "/api/v1/crash/master", nil)
	if st != 200 {
		t.Fatalf("crash/master: %d %s", st, raw)
	}
	mu.Lock()
	n := len(acked)
	mu.Unlock()
	waitAcked(n + 100)
	close(stop)
	wg.Wait()

	s.waitShape(1, 30*time.Second)
	_, m := s.read("rides.count", nil)
	count := asInt(m["result"].(map[string]any)["count"])
	if count != int64(len(acked)) {
		t.Fatalf("rides.count = %d, acknowledged %d: a write was lost or applied twice", count, len(acked))
	}
	ids := make([]int64, 0, len(acked))
	for id := range acked {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range []int64{ids[0], ids[len(ids)/2], ids[len(ids)-1]} {
		if st, m := s.read("rides.get", map[string]any{"rideId": id}); st != 200 {
			t.Fatalf("acknowledged ride %d missing: %d %v", id, st, m)
		}
	}
	t.Logf("%d writes acknowledged across a master crash, all present once", len(acked))
}

// A slave started after 10 000 writes loads a snapshot instead of
// replaying history, then serves reads with everything.
func TestE2E_NewSlaveCatchesUpFromSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("10 000 writes")
	}
	s := mustStartStack(t)
	const total, clients = 10000, 16
	var wg sync.WaitGroup
	errs := make(chan string, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < total; i += clients {
				st, m := s.write("users.add", map[string]any{"username": fmt.Sprintf("user%05d", i), "password": "p"})
				if st != 200 {
					errs <- fmt.Sprintf("write %d: %d %v", i, st, m)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	before := s.waitShape(1, 30*time.Second)
	st, _, raw := s.call("POST", "/api/v1/crash/slave", nil)
	if st != 200 {
		t.Fatalf("crash/slave: %d %s", st, raw)
	}
	var killed []int
	_ = json.Unmarshal(raw, &killed)
	after := s.waitShape(1, 30*time.Second, killed...)
	var fresh orchestrator.WorkerView
	for _, w := range after {
		if w.Role == "slave" {
			fresh = w
		}
	}
	for _, w := range before {
		if w.ID == fresh.ID {
			t.Fatalf("no new slave: %+v", after)
		}
	}
	logb, err := os.ReadFile(filepath.Join(s.dataDir, "workers", fresh.ID+".log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logb), `"msg":"snapshot loaded"`) {
		t.Fatalf("new slave did not start from a snapshot:\n%s", logb)
	}
	var m map[string]any
	st, m = s.read("users.list", nil)
	if st != 200 || len(m["result"].(map[string]any)["users"].([]any)) != total {
		t.Fatalf("read from new slave: %d, %d users", st, len(m["result"].(map[string]any)["users"].([]any)))
	}
}

func TestE2E_WorkerListAndCrashMasterAnswers(t *testing.T) {
	testWorkerListAndCrashMaster(t, runtimeProcess)
}

func testWorkerListAndCrashMaster(t *testing.T, kind string) {
	s := mustStartStackOn(t, kind)
	views := s.waitShape(1, 20*time.Second)
	resp, err := http.Get(s.url + "/api/v1/worker/list")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	decodeJSON(t, resp, &pids)
	if len(pids) != 2 || pids[0] > pids[1] {
		t.Fatalf("worker/list = %v", pids)
	}
	var master int
	for _, v := range views {
		if v.Role == "master" {
			master = v.PID
		}
	}
	// The first election is a tie at sequence 0: the lowest pid wins, so
	// crash/slave (the highest pid) never names the master at start.
	if master != pids[0] {
		t.Fatalf("first master has pid %d, want the lowest of %v", master, pids)
	}
	st, _, raw := s.call("POST", "/api/v1/crash/master", nil)
	if st != 200 || strings.TrimSpace(string(raw)) != fmt.Sprintf("[%d]", master) {
		t.Fatalf("crash/master = %d %s, want [%d]", st, raw, master)
	}
	s.waitShape(1, 20*time.Second, master)
	if st, m := s.write("users.add", map[string]any{"username": "after", "password": "p"}); st != 200 {
		t.Fatalf("write after failover: %d %v", st, m)
	}
}

func TestE2E_RabbitMQUnreachable(t *testing.T) {
	testenv.RequireServers(t)
	name := testenv.Name(t)
	rt, err := orchestrator.NewProcess(orchestrator.ProcessOptions{Binary: testenv.Bin(t, "worker"), DataDir: t.TempDir(),
		DieWithParent: true,
		Env:           []string{"RIDESHARE_AMQP_URL=amqp://nobody:x@127.0.0.1:1/", "RIDESHARE_AMQP_URL_FILE="},
		Args: []string{"--zk-servers", strings.Join(testenv.ZKServers(), ","),
			"--zk-root", "/test-" + name, "--queue-prefix", name + "."}})
	if err != nil {
		t.Fatal(err)
	}
	o, err := orchestrator.New(orchestrator.Options{
		Listen: "127.0.0.1:0", AMQPURL: "amqp://nobody:x@127.0.0.1:1/", ZKServers: testenv.ZKServers(), Dev: true,
		ZKRoot: "/test-" + name, QueuePrefix: name + ".", Runtime: rt, WriteTimeout: 3 * time.Second,
		Scale:  orchestrator.ScaleOptions{MinSlaves: 1},
		Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := o.Listen()
	done := runInBackground(t, o)
	defer func() { done(); _ = rt.Close(true) }()
	s := &stack{t: t, url: "http://" + addr.String()}
	start := time.Now()
	st, m := s.write("users.add", map[string]any{"username": "x", "password": "p"})
	if st != 503 || !strings.Contains(fmt.Sprint(m["error"]), "RabbitMQ") {
		t.Fatalf("got %d %v, want 503 naming RabbitMQ", st, m)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("503 took %s, longer than the write deadline", took)
	}
	cleanupZK(t, "/test-"+name)
}

// A restarted orchestrator adopts the workers the old one left running and
// starts none twice.
func TestE2E_OrchestratorRestartAdoptsWorkers(t *testing.T) {
	testOrchestratorRestart(t, runtimeProcess)
}

func testOrchestratorRestart(t *testing.T, kind string) {
	s := mustStartStackOn(t, kind)
	s.write("users.add", map[string]any{"username": "before", "password": "p"})
	before := s.waitShape(1, 20*time.Second)
	s.stopOrchestrator(true) // as if it crashed: workers keep running
	s.startOrchestrator()
	s.waitReady(30 * time.Second)
	after := s.waitShape(1, 20*time.Second)
	if fmt.Sprint(pidsOf(before)) != fmt.Sprint(pidsOf(after)) {
		t.Fatalf("workers changed across the restart: %v -> %v", pidsOf(before), pidsOf(after))
	}
	if st, m := s.write("users.add", map[string]any{"username": "after", "password": "p"}); st != 200 {
		t.Fatalf("write after restart: %d %v", st, m)
	}
	// The adopted workers are under the new orchestrator's control.
	st, _, raw := s.call("POST", "/api/v1/crash/slave", nil)
	if st != 200 {
		t.Fatalf("crash/slave of an adopted worker: %d %s", st, raw)
	}
	var killed []int
	_ = json.Unmarshal(raw, &killed)
	s.waitShape(1, 20*time.Second, killed...)
	_, m := s.read("users.list", nil)
	if got := fmt.Sprint(m["result"]); got != "map[users:[after before]]" {
		t.Fatalf("users = %s", got)
	}
}

func pidsOf(v []orchestrator.WorkerView) []int {
	out := make([]int, 0, len(v))
	for _, w := range v {
		out = append(out, w.PID)
	}
	sort.Ints(out)
	return out
}

// The master dies while the only slave cannot take over — it is still
// loading its snapshot, which it can no longer get: the slave and the
// master are SIGKILLed together, so the replacement slave finds no master
// to copy. No slave can take over, so the orchestrator restarts the master
// on its own data under a new epoch. Nothing acknowledged is lost.
func TestE2E_MasterDiesWhileOnlySlaveIsSyncing(t *testing.T) {
	s := mustStartStack(t)
	for i := range 20 {
		if st, m := s.write("users.add", map[string]any{"username": fmt.Sprintf("keep%02d", i), "password": "p"}); st != 200 {
			t.Fatalf("write: %d %v", st, m)
		}
	}
	var master, slave orchestrator.WorkerView
	for _, w := range s.waitShape(1, 20*time.Second) {
		if w.Role == "master" {
			master = w
		} else {
			slave = w
		}
	}
	errs := make(chan error, 2)
	for _, id := range []string{slave.ID, master.ID} {
		go func() { errs <- s.rt.Kill(context.Background(), id) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if st, m := s.write("users.add", map[string]any{"username": "after", "password": "p"}); st != 200 {
		t.Fatalf("write after both crashes: %d %v", st, m)
	}
	after := s.waitShape(1, 30*time.Second, slave.PID)
	// The two exits reach the orchestrator one after the other: when it
	// sees the master's first, it elects the slave (up to date, and not yet
	// known dead), which is then the dead master that is revived. Either
	// way the new master runs on one of the two old databases.
	revived := false
	for _, w := range after {
		revived = revived || ((w.ID == master.ID || w.ID == slave.ID) && w.Role == "master")
	}
	if !revived {
		t.Fatalf("neither the master %s nor the slave %s was restarted as master on its own data: %+v", master.ID, slave.ID, after)
	}
	logb, _ := os.ReadFile(filepath.Join(s.dataDir, "orchestrator.log"))
	if !strings.Contains(string(logb), "restarting the dead master on its own data") {
		t.Fatal("the orchestrator did not log the revive")
	}
	_, m := s.read("users.list", nil)
	if n := len(m["result"].(map[string]any)["users"].([]any)); n != 21 {
		t.Fatalf("%d users after the crashes, want 21", n)
	}
}

// A slave whose RabbitMQ connection drops loses its sync queue; what the
// master commits meanwhile reaches it only through a repair from the
// master's log. After the reconnect it catches up (and only then counts as
// ready).
func TestE2E_SlaveReconnectRepairsGap(t *testing.T) {
	s := mustStartStack(t)
	ctl, err := exec.LookPath("rabbitmqctl")
	if err != nil {
		testenv.Missing(t, "needs rabbitmqctl (Debian's rabbitmq-server) to close a connection")
	}
	for i := range 10 {
		s.write("users.add", map[string]any{"username": fmt.Sprintf("a%02d", i), "password": "p"})
	}
	var slave orchestrator.WorkerView
	for _, w := range s.waitShape(1, 20*time.Second) {
		if w.Role == "slave" {
			slave = w
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ctl, "-n", "rabbit@localhost", "-q", "list_connections", "pid", "client_properties").CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl list_connections: %v: %s", err, out)
	}
	var conn string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "worker-"+slave.ID) {
			conn, _, _ = strings.Cut(line, "\t")
		}
	}
	if conn == "" {
		t.Fatalf("no connection of worker %s in:\n%s", slave.ID, out)
	}
	if out, err := exec.CommandContext(ctx, ctl, "-n", "rabbit@localhost", "close_connection", conn, "test: drop a slave's connection").CombinedOutput(); err != nil {
		t.Fatalf("close_connection: %v: %s", err, out)
	}
	for i := range 30 {
		if st, m := s.write("users.add", map[string]any{"username": fmt.Sprintf("b%02d", i), "password": "p"}); st != 200 {
			t.Fatalf("write: %d %v", st, m)
		}
	}
	// The same slave process, caught up with everything.
	after := s.waitShape(1, 30*time.Second)
	found := false
	for _, w := range after {
		found = found || w.ID == slave.ID
	}
	if !found {
		t.Fatalf("slave %s was replaced instead of reconnecting: %+v", slave.ID, after)
	}
	logb, _ := os.ReadFile(filepath.Join(s.dataDir, "workers", slave.ID+".log"))
	if !strings.Contains(string(logb), "caught up with the master after a reconnect") {
		t.Fatalf("slave did not report catching up after its reconnect:\n%s", logb)
	}
	st, m, raw := s.call("POST", "/api/v1/db/read", map[string]any{"op": "users.list"})
	if st != 200 || len(m["result"].(map[string]any)["users"].([]any)) != 40 {
		t.Fatalf("users after the reconnect: %d %s", st, raw)
	}
}
