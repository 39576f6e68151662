package orchestrator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/rideshare-dbaas/rideshare/internal/testenv"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
	"github.com/rideshare-dbaas/rideshare/orchestrator"
)

// BenchmarkDBaaS measures db/write and db/read through the orchestrator's
// HTTP API against a real stack (RabbitMQ, ZooKeeper, worker processes),
// with 1 and 16 concurrent clients. Results: docs/benchmarks.md.
//
//	go test -run '^$' -bench BenchmarkDBaaS -benchtime 2000x ./orchestrator/
func BenchmarkDBaaS(b *testing.B) {
	s := mustStartStack(b)
	s.waitShape(1, 30*time.Second)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	post := func(path string, body any) {
		j, _ := json.Marshal(body)
		resp, err := client.Post(s.url+path, "application/json", bytes.NewReader(j))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	var n atomic.Int64
	post("/api/v1/db/write", map[string]any{"op": "users.add", "params": map[string]any{"username": "bench", "password": "p"}})
	for _, clients := range []int{1, 16} {
		write := func() {
			post("/api/v1/db/write", map[string]any{"op": "rides.create", "params": map[string]any{
				"created_by": "bench", "timestamp": 2000000000 + n.Add(1), "source": 1, "destination": 2}})
		}
		read := func() {
			post("/api/v1/db/read", map[string]any{"op": "rides.get", "params": map[string]any{"rideId": 1 + n.Load()%100}})
		}
		b.Run(fmt.Sprintf("write/clients=%d", clients), func(b *testing.B) { concurrently(b, clients, write) })
		b.Run(fmt.Sprintf("read/clients=%d", clients), func(b *testing.B) { concurrently(b, clients, read) })
	}
}

// concurrently runs b.N calls of f from exactly clients goroutines
// (RunParallel would start a multiple of GOMAXPROCS).
func concurrently(b *testing.B, clients int, f func()) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				f()
			}
		}()
	}
	wg.Wait()
}

// BenchmarkSlaveReplacement measures, per runtime, how long the DBaaS
// cannot serve reads after its only slave is killed: from crash/slave's
// answer to the first read answered by the replacement (a new worker,
// started, registered, loaded with the master's snapshot, consuming
// readQ). Results: docs/benchmarks.md.
//
//	go test -run '^$' -bench BenchmarkSlaveReplacement -benchtime 10x ./orchestrator/
func BenchmarkSlaveReplacement(b *testing.B) {
	for _, rt := range []string{"process", "docker"} {
		b.Run(rt, func(b *testing.B) {
			var s *stack
			if rt == "docker" {
				s, _ = mustStartDockerStack(b)
			} else {
				s = mustStartStack(b)
			}
			for i := range 50 {
				s.write("users.add", map[string]any{"username": fmt.Sprintf("u%d", i), "password": "p"})
			}
			s.waitShape(1, 60*time.Second)
			var total time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				s.waitShape(1, 60*time.Second)
				b.StartTimer()
				st, _, raw := s.call("POST", "/api/v1/crash/slave", nil)
				killed := time.Now()
				if st != 200 {
					b.Fatalf("crash/slave: %d %s", st, raw)
				}
				for {
					st, m := s.read("users.list", nil)
					if st == 200 {
						break
					}
					if st != 503 {
						b.Fatalf("read: %d %v", st, m)
					}
					if time.Since(killed) > time.Minute {
						b.Fatal("no read answered within a minute of the kill")
					}
				}
				total += time.Since(killed)
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/replacement")
		})
	}
}

// BenchmarkDockerWorkerStart measures the docker runtime's Start: create
// and start a worker container of the image and read its pid (the time
// the orchestrator waits), and then the time until the worker in it has
// registered in ZooKeeper (its process started, plugins loaded). Results:
// docs/benchmarks.md.
//
//	go test -run '^$' -bench BenchmarkDockerWorkerStart -benchtime 10x ./orchestrator/
func BenchmarkDockerWorkerStart(b *testing.B) {
	testenv.RequireServers(b)
	cli := testenv.RequireDocker(b)
	image := testenv.WorkerImage(b, cli)
	name := testenv.Name(b)
	root := "/test-" + name
	b.Cleanup(func() { cleanupBroker(b, name+"."); cleanupZK(b, root) })
	rt, err := orchestrator.NewDocker(context.Background(), orchestrator.DockerOptions{
		Stack: name, Image: image, DataDir: b.TempDir(), Client: cli, Logger: slog.New(slog.DiscardHandler),
		Args: []string{"--amqp-url", testenv.AMQPURL(), "--zk-servers", strings.Join(testenv.ZKServers(), ","),
			"--zk-root", root, "--queue-prefix", name + "."},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close(true)
	conn, _, err := zk.Connect(testenv.ZKServers(), 2*time.Second, zk.WithLogInfo(false), zk.WithLogger(quietZK{}))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	var started, registered time.Duration
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("w-bench%d", i)
		t0 := time.Now()
		if _, err := rt.Start(context.Background(), id); err != nil {
			b.Fatal(err)
		}
		started += time.Since(t0)
		for {
			if ok, _, _ := conn.Exists(wire.WorkersPath(root) + "/" + id); ok {
				break
			}
			if time.Since(t0) > time.Minute {
				b.Fatalf("worker %s did not register within a minute", id)
			}
			time.Sleep(5 * time.Millisecond)
		}
		registered += time.Since(t0)
		b.StopTimer()
		if err := rt.Stop(context.Background(), id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(started.Seconds()/float64(b.N), "s/start")
	b.ReportMetric(registered.Seconds()/float64(b.N), "s/registered")
}
