package bench

import "github.com/rideshare-dbaas/rideshare/internal/loadgen"

// DiskSync is the latency of durable 4 KiB appends on one file system
// (Prober.RoundTrips): what a commit costs on this disk at least (SQLite's
// WAL commit, BoltDB's commit and RabbitMQ's quorum-queue WAL all end in
// one of these).
type DiskSync struct {
	Dir       string          `json:"dir"`
	Writes    int             `json:"writes"`
	Fsync     loadgen.Latency `json:"fsync_ms"`     // write + fsync
	Fdatasync loadgen.Latency `json:"fdatasync_ms"` // write + fdatasync
}
