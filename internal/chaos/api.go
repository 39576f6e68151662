package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// api is a thin client of the orchestrator's HTTP API (docs/dbaas-api.md).
// Unlike internal/dbaasclient it retries nothing by itself: the run decides
// what to resend and measures every attempt.
type api struct {
	base string
	http *http.Client
}

func newAPI(base string) *api {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 128
	return &api{base: base, http: &http.Client{Transport: t}}
}

// reply is one HTTP answer; status 0 means no answer (transport error).
type reply struct {
	Status int
	Seq    uint64          `json:"seq"`
	Result json.RawMessage `json:"result"`
	Error  string          `json:"error"`
	Code   string          `json:"code"`
	Raw    []byte
	Err    error
}

func (r reply) String() string {
	if r.Status == 0 {
		return fmt.Sprintf("no answer: %v", r.Err)
	}
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Raw))
}

func (a *api) post(ctx context.Context, p string, body any, timeout time.Duration) reply {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return reply{Err: err}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+p, rd)
	if err != nil {
		return reply{Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	return a.do(req)
}

func (a *api) get(ctx context.Context, p string, timeout time.Duration) reply {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+p, nil)
	if err != nil {
		return reply{Err: err}
	}
	return a.do(req)
}

func (a *api) do(req *http.Request) reply {
	resp, err := a.http.Do(req)
	if err != nil {
		return reply{Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{Err: err}
	}
	r := reply{Status: resp.StatusCode, Raw: raw}
	if len(raw) > 0 && raw[0] == '{' {
		_ = json.Unmarshal(raw, &r)
	}
	return r
}

type writeReq struct {
	Op     string `json:"op"`
	Params any    `json:"params"`
	ID     string `json:"id"`
}

type readReq struct {
	Op          string `json:"op"`
	Params      any    `json:"params"`
	MinSeq      uint64 `json:"min_seq"`
	Consistency string `json:"consistency"`
}

// The orchestrator answers a write within its write timeout (10 s by
// default) with 503; the HTTP deadline is a little longer.
const callTimeout = 15 * time.Second

func (a *api) write(ctx context.Context, id, op string, params any) reply {
	return a.post(ctx, "/api/v1/db/write", writeReq{Op: op, Params: params, ID: id}, callTimeout)
}

func (a *api) read(ctx context.Context, op string, params any, minSeq uint64) reply {
	return a.post(ctx, "/api/v1/db/read", readReq{Op: op, Params: params, MinSeq: minSeq, Consistency: "session"}, callTimeout)
}

// workerView is one entry of GET /api/v1/workers.
type workerView struct {
	ID      string `json:"id"`
	PID     int    `json:"pid"`
	Role    string `json:"role"`
	State   string `json:"state"`
	Applied uint64 `json:"applied_seq"`
	Epoch   uint64 `json:"epoch"`
}

func (a *api) workers(ctx context.Context) ([]workerView, error) {
	r := a.get(ctx, "/api/v1/workers", 5*time.Second)
	if r.Status != 200 {
		return nil, fmt.Errorf("GET /api/v1/workers: %s", r)
	}
	var v []workerView
	if err := json.Unmarshal(r.Raw, &v); err != nil {
		return nil, fmt.Errorf("GET /api/v1/workers: %w", err)
	}
	return v, nil
}

// crash calls POST /api/v1/crash/{master,slave} and returns the pid killed.
func (a *api) crash(ctx context.Context, what string) (int, reply) {
	r := a.post(ctx, "/api/v1/crash/"+what, nil, 15*time.Second)
	if r.Status != 200 {
		return 0, r
	}
	var pids []int
	if err := json.Unmarshal(r.Raw, &pids); err != nil || len(pids) != 1 {
		return 0, r
	}
	return pids[0], r
}

// waitReady polls /readyz until it answers 200.
func waitReady(ctx context.Context, a *api, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last reply
	for {
		last = a.get(ctx, "/readyz", 2*time.Second)
		if last.Status == 200 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("/readyz not 200 after %s: %s", timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
