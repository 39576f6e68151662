package bench

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestReadBatches(t *testing.T) {
	const log = `{"time":"2026-12-02T01:00:00.5Z","level":"DEBUG","msg":"batch committed","writes":3,"seq":10,"commit":2000000,"total":4000000}
{"time":"2026-12-02T01:00:01Z","level":"INFO","msg":"consuming writes"}
not json at all
{"time":"2026-12-02T01:00:01.5Z","level":"DEBUG","msg":"batch committed","writes":5,"seq":15,"took":6000000}
{"time":"2026-12-02T01:00:03Z","level":"DEBUG","msg":"batch committed","writes":9,"seq":24,"took":1000000}
`
	path := filepath.Join(t.TempDir(), "w.log")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	st, err := ReadBatches(path, from, from.Add(2*time.Second)) // the last line is outside
	if err != nil {
		t.Fatal(err)
	}
	if st.Batches != 2 || st.WritesMean != 4 || st.WritesMax != 5 {
		t.Errorf("batches %+v", st)
	}
	// The serial master's line has commit and total; the pipelined one's
	// took is its commit.
	if st.Commit.Max != 6 || st.Commit.P50 != 2 || st.Total.Max != 4 {
		t.Errorf("commit %+v, total %+v", st.Commit, st.Total)
	}
	if want := (0.004 + 0.006) / 2; st.Busy < want-1e-9 || st.Busy > want+1e-9 {
		t.Errorf("busy %v, want %v", st.Busy, want)
	}
	if _, err := ReadBatches(filepath.Join(t.TempDir(), "missing.log"), from, from); err == nil {
		t.Error("a missing log read without error")
	}
}
