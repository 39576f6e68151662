package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/loadgen"
)

// DiskSync is the latency of durable 4 KiB appends on one file system.
type DiskSync struct {
	Dir       string          `json:"dir"`
	Writes    int             `json:"writes"`
	Fsync     loadgen.Latency `json:"fsync_ms"`     // write + fsync
	Fdatasync loadgen.Latency `json:"fdatasync_ms"` // write + fdatasync
}

// ProbeDisk appends n 4 KiB blocks to a temporary file in dir, each
// followed by fsync, then n more each followed by fdatasync, and times
// each write+sync pair: what a commit costs on this disk at least (SQLite's
// WAL commit, BoltDB's commit and RabbitMQ's quorum-queue WAL all end in one
// of these).
func ProbeDisk(dir string, n int) (DiskSync, error) {
	f, err := os.CreateTemp(dir, ".bench-fsync-*")
	if err != nil {
		return DiskSync{}, fmt.Errorf("disk probe: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, 4096)
	for i := range block {
		block[i] = byte(i)
	}
	probe := func(sync func() error) ([]time.Duration, error) {
		lat := make([]time.Duration, 0, n)
		for range n {
			t0 := time.Now()
			if _, err := f.Write(block); err != nil {
				return nil, err
			}
			if err := sync(); err != nil {
				return nil, err
			}
			lat = append(lat, time.Since(t0))
		}
		return lat, nil
	}
	fs, err := probe(f.Sync)
	if err != nil {
		return DiskSync{}, fmt.Errorf("disk probe: %w", err)
	}
	fds, err := probe(func() error { return syscall.Fdatasync(int(f.Fd())) })
	if err != nil {
		return DiskSync{}, fmt.Errorf("disk probe: %w", err)
	}
	abs, _ := filepath.Abs(dir)
	return DiskSync{Dir: abs, Writes: n, Fsync: loadgen.Summarize(fs), Fdatasync: loadgen.Summarize(fds)}, nil
}
