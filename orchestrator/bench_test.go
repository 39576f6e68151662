package orchestrator_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
