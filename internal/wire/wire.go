// Package wire defines the messages the orchestrator and the workers exchange
// over RabbitMQ, and the replicated log entry. It is the one place where the
// wire format lives: every message carries its type and version in the AMQP
// Type property, so a format change is visible rather than silently
// misparsed.
package wire

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// AMQP Type property values. The suffix is the format version.
const (
	TypeWrite    = "write.v1"
	TypeRead     = "read.v1"
	TypeWrites   = "writes.v2" // a WriteBatch, answered with a ReplyBatch
	TypeReads    = "reads.v2"  // a ReadBatch, answered with a ReplyBatch
	TypeReplies  = "replies.v2"
	TypeReply    = "reply.v1"
	TypeSync     = "sync.v1"
	TypeRepair   = "repair.v1"
	TypeRepaired = "repaired.v1"
)

// WriteRequest asks the master to run a write operation.
type WriteRequest struct {
	ID     string          `json:"id"` // idempotency key: applied at most once
	Op     string          `json:"op"`
	Params json.RawMessage `json:"params,omitempty"`
	// RID is the request id (package reqid) the worker logs and hands
	// its handler; optional: older messages have none. It is per request,
	// not per message: a batch carries many requests' ids.
	RID string `json:"rid,omitempty"`
}

// ReadRequest asks a slave to run a read operation once it has applied
// MinSeq.
type ReadRequest struct {
	Op     string          `json:"op"`
	Params json.RawMessage `json:"params,omitempty"`
	MinSeq uint64          `json:"min_seq,omitempty"`
	// Deadline (Unix milliseconds) is this read's own: reads batched in
	// one message are served side by side, each until its deadline.
	Deadline int64 `json:"deadline_ms,omitempty"`
	// RID is the request id, as WriteRequest's.
	RID string `json:"rid,omitempty"`
}

// WriteBatch is several writes in one message: the orchestrator gathers
// the writes that arrive while earlier ones are in flight, so that under
// load one message (one publish, one quorum-queue append, one delivery,
// one ack, one reply) carries many. Each write keeps its own id: exactly
// once holds per write.
type WriteBatch struct {
	Writes []WriteRequest `json:"writes"`
}

// ReadBatch is several reads in one message, answered by one slave.
type ReadBatch struct {
	Reads []ReadRequest `json:"reads"`
}

// ReplyBatch answers a WriteBatch or a ReadBatch: one reply per request,
// in order.
type ReplyBatch struct {
	Replies []Reply `json:"replies"`
}

// Reply is a worker's answer to a read or a write. Status is an HTTP status
// the orchestrator passes on: 200 for success, 400/404/409 for an
// operation's refusal (Code set), 502 for a handler failure.
type Reply struct {
	Status int    `json:"status"`
	Seq    uint64 `json:"seq,omitempty"`
	// Epoch is the epoch of a write's entry: the orchestrator's
	// acknowledged watermark is (epoch, seq), compared as Raft compares
	// logs, so a replica holding a deposed master's entries at a higher
	// sequence number never looks more complete than one holding the
	// acknowledged ones.
	Epoch   uint64          `json:"epoch,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   string          `json:"error,omitempty"`
	Code    string          `json:"code,omitempty"`
	Handler string          `json:"handler,omitempty"`
	Worker  string          `json:"worker,omitempty"`
}

// Entry kinds.
const (
	KindWrite = "write" // a client write (possibly refused: no statements)
	KindEpoch = "epoch" // a new master took over; first entry of its epoch
	KindAdmin = "admin" // worker-initiated change, e.g. a schema migration
)

// Entry is one element of the replicated log. Slaves apply entries strictly
// in Seq order. What is shipped is what the master executed (statements
// with bound values), never the operation name, so replicas do not depend
// on running the same handler version.
type Entry struct {
	Seq   uint64 `json:"seq"`
	Epoch uint64 `json:"epoch"`
	// PrevEpoch is the epoch of entry Seq-1 in the master's log. A replica
	// whose entry Seq-1 has another epoch has diverged (it holds an entry
	// of a deposed master) and must resync: Raft's log-matching check.
	PrevEpoch uint64 `json:"prev_epoch"`
	Kind      string `json:"kind"`
	WriteID   string `json:"write_id,omitempty"`
	Stmts     []Stmt `json:"stmts,omitempty"`
	// Reply is the reply the master gave, kept so a redelivered write (same
	// WriteID) is answered identically on any worker that becomes master.
	Reply *Reply `json:"reply,omitempty"`
}

// Stmt is one executed SQL statement with its bound values.
type Stmt struct {
	SQL  string  `json:"sql"`
	Args []Value `json:"args,omitempty"`
}

// SyncBatch is what the master publishes on the sync fanout after each
// commit: the entries of one group commit, in order.
type SyncBatch struct {
	Epoch   uint64  `json:"epoch"`
	Entries []Entry `json:"entries,omitempty"`
	// Barrier, when set, carries no entries: a worker being promoted
	// publishes it and waits to receive it on its own sync queue, which
	// proves it has received everything the old master published before.
	Barrier string `json:"barrier,omitempty"`
}

// RepairRequest asks the master for log entries from From on (at most
// Limit), or, with Snapshot set, for a consistent copy of its database.
type RepairRequest struct {
	From uint64 `json:"from,omitempty"`
	// PrevEpoch is the epoch of the asker's entry From-1: the master
	// answers Diverged when its own entry there has another epoch, or when
	// it has no entry there at all (the asker holds entries the master
	// never had): Raft's log-matching check, for repairs.
	PrevEpoch uint64 `json:"prev_epoch,omitempty"`
	Limit     int    `json:"limit,omitempty"`
	Snapshot  bool   `json:"snapshot,omitempty"`
	Worker    string `json:"worker,omitempty"`
	// Gzip: the asker takes a gzip-compressed snapshot (RepairReply's
	// SnapshotGzip). A master that does not know the field sends the file
	// as it is, which the asker still takes.
	Gzip bool `json:"gzip,omitempty"`
}

// RepairReply answers a RepairRequest. When the master no longer holds the
// asked-for entries, Truncated is set and the slave must take a snapshot.
type RepairReply struct {
	Epoch     uint64  `json:"epoch"`
	Entries   []Entry `json:"entries,omitempty"`
	Truncated bool    `json:"truncated,omitempty"`
	// Diverged: the asker's log does not match the master's at From-1;
	// it must resync from a snapshot.
	Diverged bool `json:"diverged,omitempty"`
	// Snapshot is a whole SQLite database file (made with VACUUM INTO)
	// holding everything up to and including SnapshotSeq.
	Snapshot    []byte `json:"snapshot,omitempty"`
	SnapshotSeq uint64 `json:"snapshot_seq,omitempty"`
	// SnapshotGzip: Snapshot is the file compressed with gzip (asked for
	// with RepairRequest.Gzip). A database holding the replicated log and
	// the idempotency table is mostly JSON text: gzip's fastest level
	// makes it 5-6 times smaller in a few milliseconds per MB, and every MB
	// not sent saves RabbitMQ ~70 ms and the JSON base64 coding.
	SnapshotGzip bool   `json:"snapshot_gzip,omitempty"`
	Error        string `json:"error,omitempty"`
}

// GzipSnapshot compresses a snapshot file for a RepairReply
// (SnapshotGzip).
func GzipSnapshot(file []byte) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(len(file) / 4)
	zw, err := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(file); err != nil {
		return nil, fmt.Errorf("compressing the snapshot: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing the snapshot: %w", err)
	}
	return b.Bytes(), nil
}

// ErrSnapshotTooLarge: a compressed snapshot expands beyond the limit its
// receiver set.
var ErrSnapshotTooLarge = errors.New("snapshot larger than the limit")

// SnapshotFile returns the database file r carries, decompressed when it
// came compressed, refusing one larger than limit bytes.
func (r *RepairReply) SnapshotFile(limit int64) ([]byte, error) {
	if !r.SnapshotGzip {
		return r.Snapshot, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(r.Snapshot))
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	var b bytes.Buffer
	b.Grow(4 * len(r.Snapshot))
	n, err := b.ReadFrom(io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, fmt.Errorf("snapshot: decompressing: %w", err)
	}
	if n > limit {
		return nil, fmt.Errorf("snapshot: %w (%d bytes)", ErrSnapshotTooLarge, limit)
	}
	return b.Bytes(), nil
}

// Value is one SQL value: nil, int64, float64, string or []byte. Its JSON
// form is tagged so that integers stay exact and bytes stay bytes:
// null, {"i":"42"}, {"f":1.5}, {"s":"x"}, {"b":"<base64>"}.
type Value struct{ V any }

// NewValue normalises a Go value into a Value.
func NewValue(v any) (Value, error) {
	switch x := v.(type) {
	case nil:
		return Value{}, nil
	case int64:
		return Value{x}, nil
	case int:
		return Value{int64(x)}, nil
	case int32:
		return Value{int64(x)}, nil
	case uint32:
		return Value{int64(x)}, nil
	case bool:
		if x {
			return Value{int64(1)}, nil
		}
		return Value{int64(0)}, nil
	case float64:
		return Value{x}, nil
	case string:
		return Value{x}, nil
	case []byte:
		return Value{append([]byte(nil), x...)}, nil
	default:
		return Value{}, fmt.Errorf("unsupported SQL value of type %T", v)
	}
}

// MarshalJSON implements json.Marshaler.
func (v Value) MarshalJSON() ([]byte, error) {
	switch x := v.V.(type) {
	case nil:
		return []byte("null"), nil
	case int64:
		return json.Marshal(map[string]string{"i": strconv.FormatInt(x, 10)})
	case float64:
		return json.Marshal(map[string]float64{"f": x})
	case string:
		return json.Marshal(map[string]string{"s": x})
	case []byte:
		return json.Marshal(map[string]string{"b": base64.StdEncoding.EncodeToString(x)})
	default:
		return nil, fmt.Errorf("unsupported SQL value of type %T", v.V)
	}
}

// UnmarshalJSON implements json.Unmarshaler.
func (v *Value) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		v.V = nil
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("sql value: %w", err)
	}
	if len(m) != 1 {
		return errors.New("sql value: want exactly one tag")
	}
	for tag, raw := range m {
		switch tag {
		case "i":
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return fmt.Errorf("sql value: %w", err)
			}
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return fmt.Errorf("sql value: %w", err)
			}
			v.V = n
		case "f":
			var f float64
			if err := json.Unmarshal(raw, &f); err != nil {
				return fmt.Errorf("sql value: %w", err)
			}
			v.V = f
		case "s":
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return fmt.Errorf("sql value: %w", err)
			}
			v.V = s
		case "b":
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return fmt.Errorf("sql value: %w", err)
			}
			d, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return fmt.Errorf("sql value: %w", err)
			}
			v.V = d
		default:
			return fmt.Errorf("sql value: unknown tag %q", tag)
		}
	}
	return nil
}

// Args converts Values to driver arguments.
func Args(vs []Value) []any {
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = v.V
	}
	return out
}

// Roles and states a worker publishes in its znode.
const (
	RoleMaster = "master"
	RoleSlave  = "slave"

	StateSyncing    = "syncing"     // loading a snapshot: no reads yet
	StateCatchingUp = "catching-up" // serving reads, but may miss entries since a reconnect: not electable
	StateReady      = "ready"       // serving its role
)

// WorkerInfo is the content of a worker's ephemeral znode,
// <root>/workers/<id>.
type WorkerInfo struct {
	ID      string `json:"id"`
	PID     int    `json:"pid"`
	Role    string `json:"role"`
	State   string `json:"state"`
	Applied uint64 `json:"applied_seq"`
	Epoch   uint64 `json:"epoch"`
	// Plugins are the handler plugins the worker has loaded (from its
	// registry's Infos), for operators: the cluster page, rideshare plugins.
	Plugins []PluginInfo `json:"plugins,omitempty"`
	// Metrics is the host:port the worker serves Prometheus' /metrics on
	// (absent from the records of workers that serve none).
	Metrics string `json:"metrics,omitempty"`
}

// PluginInfo is one loaded handler plugin.
type PluginInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	SHA256  string `json:"sha256,omitempty"` // the binary's, from the manifest
}

// Equal reports whether a and b say the same (WorkerInfo holds a slice, so
// == does not compile).
func (a WorkerInfo) Equal(b WorkerInfo) bool {
	if a.ID != b.ID || a.PID != b.PID || a.Role != b.Role || a.State != b.State ||
		a.Applied != b.Applied || a.Epoch != b.Epoch || a.Metrics != b.Metrics || len(a.Plugins) != len(b.Plugins) {
		return false
	}
	for i := range a.Plugins {
		if a.Plugins[i] != b.Plugins[i] {
			return false
		}
	}
	return true
}

// MasterRecord is the content of the persistent znode <root>/master, written
// only by the orchestrator's election with a compare-and-set on its version.
// Epoch grows by one at every election; a worker commits writes only while
// the record names it with the epoch it was promoted in.
type MasterRecord struct {
	ID    string `json:"id"`
	Epoch uint64 `json:"epoch"`
}

// ZK paths under a root.
func WorkersPath(root string) string { return root + "/workers" }

// MasterPath is the master record's path.
func MasterPath(root string) string { return root + "/master" }
