// Package apirecord writes down which status codes each HTTP route
// produced, so that a check run after the whole test suite can compare
// them with the OpenAPI documents (docs/openapi): every documented status
// must have been produced by some test, and nothing undocumented may be.
//
// It is off unless RIDESHARE_API_RECORD names a directory (make test sets
// it); then every process that serves HTTP appends the combinations it has
// not written yet to DIR/<api>-<pid>.tsv, one "api method route status"
// line each. Binaries started by tests inherit the variable, so statuses
// produced through real processes count too.
package apirecord

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/rideshare-dbaas/rideshare/internal/metrics"
)

// EnvDir names the directory records go to.
const EnvDir = "RIDESHARE_API_RECORD"

// Key is one observed combination.
type Key struct {
	API, Method, Route string
	Status             int
}

type recorder struct {
	api  string
	path string
	mu   sync.Mutex
	seen map[Key]bool
}

// FromEnv returns an observer for api ("users", "rides", "dbaas") when
// RIDESHARE_API_RECORD is set, else nil.
func FromEnv(api string) metrics.Observer {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		return nil
	}
	rec := &recorder{api: api, seen: map[Key]bool{},
		path: filepath.Join(dir, fmt.Sprintf("%s-%d.tsv", api, os.Getpid()))}
	return rec.observe
}

func (r *recorder) observe(route, method string, status int) {
	k := Key{API: r.api, Method: method, Route: route, Status: status}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[k] {
		return
	}
	r.seen[k] = true
	// Best effort: a failed record shows up as a status the check misses.
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	fmt.Fprintf(f, "%s\t%s\t%s\t%d\n", k.API, k.Method, k.Route, k.Status)
	f.Close()
}

// ReadDir reads every record file under dir.
func ReadDir(dir string) (map[Key]bool, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.tsv"))
	if err != nil {
		return nil, err
	}
	out := map[Key]bool{}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			parts := strings.Split(sc.Text(), "\t")
			if len(parts) != 4 {
				continue
			}
			st, err := strconv.Atoi(parts[3])
			if err != nil {
				continue
			}
			out[Key{API: parts[0], Method: parts[1], Route: parts[2], Status: st}] = true
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return out, nil
}
