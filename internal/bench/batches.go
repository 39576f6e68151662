package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/loadgen"
)

// BatchStats is the master's own account of its group commits during a
// measured window, from its "batch committed" debug lines (the bench runs
// the workers with --log-level debug: one line per batch).
type BatchStats struct {
	Batches    int     `json:"batches"`
	WritesMean float64 `json:"writes_per_batch_mean"`
	WritesMax  int     `json:"writes_per_batch_max"`
	// Commit is the group commit's transaction: the handlers and the
	// SQLite commit (before the pipeline, the fence check too). Total,
	// when the line has it (the serial master before the pipeline), adds
	// the sync publish, the second fence check and the ack.
	Commit loadgen.Latency `json:"commit_ms"`
	Total  loadgen.Latency `json:"total_ms"`
	// Busy is the share of the window the master spent in batches (in
	// transactions, when the line has no total).
	Busy float64 `json:"busy"`
}

// batchLine is one "batch committed" line of the master: {writes, commit,
// total} from the serial master, {writes, took} from the pipelined one
// (took: the transaction). slog's JSON handler writes durations as
// nanoseconds.
type batchLine struct {
	Time   time.Time     `json:"time"`
	Msg    string        `json:"msg"`
	Writes int           `json:"writes"`
	Commit time.Duration `json:"commit"`
	Total  time.Duration `json:"total"`
	Took   time.Duration `json:"took"`
}

// ReadBatches reads a worker's log and sums up the batches that ended in
// [from, to).
func ReadBatches(logPath string, from, to time.Time) (BatchStats, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return BatchStats{}, err
	}
	defer f.Close()
	var st BatchStats
	var commits, totals []time.Duration
	var writes int
	var busy time.Duration
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var l batchLine
		if json.Unmarshal(line, &l) != nil || l.Msg != "batch committed" || l.Time.Before(from) || !l.Time.Before(to) {
			continue
		}
		if l.Commit == 0 && l.Took > 0 {
			l.Commit = l.Took
		}
		st.Batches++
		writes += l.Writes
		st.WritesMax = max(st.WritesMax, l.Writes)
		commits = append(commits, l.Commit)
		if l.Total > 0 {
			totals = append(totals, l.Total)
			busy += l.Total
		} else {
			busy += l.Commit
		}
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("%s: %w", logPath, err)
	}
	if st.Batches > 0 {
		st.WritesMean = float64(writes) / float64(st.Batches)
		st.Commit, st.Total = loadgen.Summarize(commits), loadgen.Summarize(totals) // no totals: zero
		st.Busy = busy.Seconds() / to.Sub(from).Seconds()
	}
	return st, nil
}

// MasterLog is the log file of the stack's master (the process runtime
// writes each worker's log beside its data directory).
func (s *Stack) MasterLog(ws []WorkerInfo) (string, error) {
	for _, w := range ws {
		if w.Role == "master" {
			return filepath.Join(s.opts.Dir, "dbaas", w.ID+".log"), nil
		}
	}
	return "", fmt.Errorf("stack %s: no master", s.opts.Name)
}
