package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestValueRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want any
	}{
		{"null", nil, nil},
		{"int64", int64(42), int64(42)},
		{"int64 beyond float precision", int64(math.MaxInt64), int64(math.MaxInt64)},
		{"negative", int64(-7), int64(-7)},
		{"int", 5, int64(5)},
		{"bool true", true, int64(1)},
		{"float", 1.5, 1.5},
		{"string", "x'); DROP TABLE users;--", "x'); DROP TABLE users;--"},
		{"empty string", "", ""},
		{"bytes", []byte{0, 1, 255}, []byte{0, 1, 255}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewValue(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			var got Value
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("unmarshal %s: %v", b, err)
			}
			if gb, ok := got.V.([]byte); ok {
				if !bytes.Equal(gb, tt.want.([]byte)) {
					t.Fatalf("got %v, want %v", gb, tt.want)
				}
				return
			}
			if got.V != tt.want {
				t.Fatalf("%s decoded to %#v, want %#v", b, got.V, tt.want)
			}
		})
	}
}

func TestValueRejects(t *testing.T) {
	if _, err := NewValue(struct{}{}); err == nil {
		t.Fatal("a struct is not an SQL value")
	}
	for _, in := range []string{`{"i":"x"}`, `{"q":1}`, `{"i":"1","s":"a"}`, `[1]`, `{"b":"***"}`} {
		var v Value
		if err := json.Unmarshal([]byte(in), &v); err == nil {
			t.Errorf("%s: want an error", in)
		}
	}
}

func TestEntryRoundTrip(t *testing.T) {
	e := Entry{Seq: 9, Epoch: 2, Kind: KindWrite, WriteID: "w1",
		Stmts: []Stmt{{SQL: "INSERT INTO t VALUES (?, ?)", Args: []Value{{int64(1)}, {"a"}}}},
		Reply: &Reply{Status: 200, Seq: 9, Result: json.RawMessage(`{"rideId":3}`)}}
	b, _ := json.Marshal(e)
	var got Entry
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(got)
	if !bytes.Equal(b, b2) {
		t.Fatalf("round trip changed the entry:\n%s\n%s", b, b2)
	}
}

// The request id is optional on the wire: a request without one has no
// rid key, and a message from before it existed still decodes.
func TestRequestIDOptional(t *testing.T) {
	b, err := json.Marshal(WriteBatch{Writes: []WriteRequest{{ID: "w1", Op: "users.add"}}})
	if err != nil || strings.Contains(string(b), "rid") {
		t.Fatalf("%s, %v: want no rid", b, err)
	}
	var old WriteBatch
	if err := json.Unmarshal([]byte(`{"writes":[{"id":"w1","op":"users.add","params":{}}]}`), &old); err != nil || old.Writes[0].RID != "" {
		t.Fatalf("old batch: %+v, %v", old, err)
	}
	var r ReadBatch
	if err := json.Unmarshal([]byte(`{"reads":[{"op":"users.list","rid":"t-1"},{"op":"users.list"}]}`), &r); err != nil ||
		r.Reads[0].RID != "t-1" || r.Reads[1].RID != "" {
		t.Fatalf("read batch: %+v, %v", r, err)
	}
}

// A snapshot asked for compressed comes back as the same file; one that
// expands past the receiver's limit is refused; one sent as it is (by a
// master that does not compress) is taken as it is.
func TestSnapshotGzip(t *testing.T) {
	file := bytes.Repeat([]byte(`{"seq":1,"kind":"write","stmts":[{"sql":"INSERT INTO users VALUES (?, ?)"}]}`), 4096)
	z, err := GzipSnapshot(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(z) >= len(file)/4 {
		t.Fatalf("compressed %d bytes into %d: want a JSON-like file at least 4 times smaller", len(file), len(z))
	}
	for _, c := range []struct {
		name  string
		reply RepairReply
		limit int64
		want  []byte
		err   error
	}{
		{"compressed", RepairReply{Snapshot: z, SnapshotGzip: true}, int64(len(file)), file, nil},
		{"as it is", RepairReply{Snapshot: file}, 1, file, nil},
		{"over the limit", RepairReply{Snapshot: z, SnapshotGzip: true}, int64(len(file) - 1), nil, ErrSnapshotTooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			// The reply crosses the wire as JSON.
			var r RepairReply
			if err := json.Unmarshal(mustMarshal(t, c.reply), &r); err != nil {
				t.Fatal(err)
			}
			got, err := r.SnapshotFile(c.limit)
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if c.err == nil && !bytes.Equal(got, c.want) {
				t.Fatalf("got %d bytes, want the %d of the file", len(got), len(c.want))
			}
		})
	}
	if _, err := (&RepairReply{Snapshot: []byte("not gzip"), SnapshotGzip: true}).SnapshotFile(1 << 20); err == nil {
		t.Fatal("a corrupt compressed snapshot was taken")
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
