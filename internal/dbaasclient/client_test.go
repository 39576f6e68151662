package dbaasclient

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/reqid"
)

// request is what the fake orchestrator decoded from one call.
type request struct {
	Path        string          `json:"-"`
	Op          string          `json:"op"`
	Params      json.RawMessage `json:"params"`
	ID          string          `json:"id"`
	MinSeq      *uint64         `json:"min_seq"`
	Consistency string          `json:"consistency"`
	RequestID   string          `json:"-"` // the X-Request-ID header
}

// fakeOrchestrator answers each endpoint with a function field; a nil field
// answers 200 with seq 1 and an empty result.
type fakeOrchestrator struct {
	write func(n int, req request) (status int, body string)
	read  func(n int, req request) (status int, body string)
	clear func(n int) (status int, seq string)

	mu   sync.Mutex
	reqs []request
}

func (f *fakeOrchestrator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var req request
	_ = json.Unmarshal(b, &req)
	req.Path = r.URL.Path
	req.RequestID = r.Header.Get("X-Request-ID")
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	n := len(f.reqs)
	f.mu.Unlock()
	status, body := http.StatusOK, `{"seq":1,"result":{}}`
	switch r.URL.Path {
	case "/api/v1/db/write":
		if f.write != nil {
			status, body = f.write(n, req)
		}
	case "/api/v1/db/read":
		if f.read != nil {
			status, body = f.read(n, req)
		}
	case "/api/v1/db/clear":
		seq := "1"
		if f.clear != nil {
			status, seq = f.clear(n)
		}
		w.Header().Set("X-DBaaS-Seq", seq)
		body = "{}"
	default:
		status, body = http.StatusNotFound, `{"error":"no route"}`
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (f *fakeOrchestrator) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.reqs...)
}

func mustStart(t *testing.T, f http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(f) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	return srv.URL
}

func fastClient(url string) *Client {
	return New(url, WithBackoff(time.Millisecond, 5*time.Millisecond))
}

// The request id of the caller's context goes with every call, so the
// orchestrator's lines carry the caller's id; without one, none is sent.
func TestRequestIDForwarded(t *testing.T) {
	f := &fakeOrchestrator{}
	c := fastClient(mustStart(t, f))
	ctx := reqid.WithID(context.Background(), "t-forward")
	if _, err := c.Write(ctx, "users.add", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx, "users.list", nil, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(context.Background(), "users.list", nil, 0); err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	for i, want := range []string{"t-forward", "t-forward", "t-forward", ""} {
		if reqs[i].RequestID != want {
			t.Errorf("call %d (%s): X-Request-ID %q, want %q", i, reqs[i].Path, reqs[i].RequestID, want)
		}
	}
}

func TestWrite_ResultAndSeqTracking(t *testing.T) {
	f := &fakeOrchestrator{
		write: func(n int, req request) (int, string) {
			return 200, `{"seq":42,"result":{"rideId":7}}`
		},
		read: func(n int, req request) (int, string) {
			return 200, `{"seq":50,"result":{"count":3}}`
		},
	}
	c := fastClient(mustStart(t, f))
	res, err := c.Write(context.Background(), "rides.create", map[string]any{"created_by": "u"})
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ RideID int64 }
	if err := res.Decode(&out); err != nil || res.Seq != 42 || out.RideID != 7 {
		t.Fatalf("got %+v %+v %v", res, out, err)
	}
	if c.Seq() != 42 {
		t.Fatalf("Seq() = %d, want 42", c.Seq())
	}
	if _, err := c.Read(context.Background(), "rides.count", struct{}{}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(context.Background(), "rides.count", nil, 99); err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests", len(reqs))
	}
	w, r1, r2 := reqs[0], reqs[1], reqs[2]
	if w.Op != "rides.create" || len(w.ID) != 32 || string(w.Params) != `{"created_by":"u"}` {
		t.Errorf("write request %+v", w)
	}
	if r1.MinSeq == nil || *r1.MinSeq != 42 || r1.Consistency != "strong" || r1.Op != "rides.count" {
		t.Errorf("first read %+v", r1)
	}
	if r2.MinSeq == nil || *r2.MinSeq != 99 {
		t.Errorf("explicit minSeq not sent: %+v", r2)
	}
	if c.Seq() != 42 {
		t.Errorf("a read moved the write seq to %d", c.Seq())
	}
}

func TestWrite_IDsAreUnique(t *testing.T) {
	f := &fakeOrchestrator{}
	c := fastClient(mustStart(t, f))
	for range 20 {
		if _, err := c.Write(context.Background(), "db.clear", nil); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, r := range f.requests() {
		if seen[r.ID] {
			t.Fatalf("id %s reused", r.ID)
		}
		seen[r.ID] = true
	}
}

func TestRefusals(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		sentinel error
		code     string
	}{
		{"invalid", 400, `{"error":"empty username","code":"invalid","seq":5}`, ErrInvalid, CodeInvalid},
		{"not found", 404, `{"error":"no such user","code":"not_found","seq":6}`, ErrNotFound, CodeNotFound},
		{"conflict", 409, `{"error":"username taken","code":"conflict","seq":7}`, ErrConflict, CodeConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeOrchestrator{write: func(int, request) (int, string) { return tt.status, tt.body }}
			c := fastClient(mustStart(t, f))
			_, err := c.Write(context.Background(), "users.add", nil)
			var re *RefusalError
			if !errors.As(err, &re) || re.Code != tt.code || re.Status != tt.status || re.Message == "" {
				t.Fatalf("err = %v", err)
			}
			if !errors.Is(err, tt.sentinel) || errors.Is(err, ErrUnavailable) {
				t.Fatalf("errors.Is wrong for %v", err)
			}
			for _, other := range []error{ErrInvalid, ErrNotFound, ErrConflict} {
				if other != tt.sentinel && errors.Is(err, other) {
					t.Fatalf("%v also matches %v", err, other)
				}
			}
			if c.Seq() != re.Seq || re.Seq == 0 {
				t.Fatalf("refusal seq %d not tracked (Seq()=%d)", re.Seq, c.Seq())
			}
			if n := len(f.requests()); n != 1 {
				t.Fatalf("refusal was sent %d times", n)
			}
		})
	}
}

func TestUnavailable(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
	}{
		{"handler failed", 502, `{"error":"handler crashed","handler":"rideshare"}`},
		{"malformed request", 400, `{"error":"unknown operation"}`},
		{"too large", 413, `{"error":"body over the cap"}`},
		{"not json", 500, `oops`},
		{"bad success body", 200, `not json`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeOrchestrator{write: func(int, request) (int, string) { return tt.status, tt.body }}
			c := fastClient(mustStart(t, f))
			_, err := c.Write(context.Background(), "users.add", nil)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v", err)
			}
			var re *RefusalError
			if errors.As(err, &re) {
				t.Fatalf("not a refusal: %v", err)
			}
			if n := len(f.requests()); n != 1 {
				t.Fatalf("sent %d times, want 1", n)
			}
		})
	}
}

func TestUnknownOp(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		body        string
		wantUnknown bool
	}{
		{"unknown read op", 400, `{"error":"unknown read operation \"stats.top_users\""}`, true},
		{"unknown write op", 400, `{"error":"unknown write operation \"stats.top_users\""}`, true},
		{"other malformed request", 400, `{"error":"\"op\" is required"}`, false},
		{"a refusal saying unknown", 400, `{"error":"unknown read operation","code":"invalid"}`, false},
		{"handler failed", 502, `{"error":"unknown read operation"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeOrchestrator{read: func(int, request) (int, string) { return tt.status, tt.body }}
			c := fastClient(mustStart(t, f))
			_, err := c.Read(context.Background(), "stats.top_users", nil, 0)
			if got := errors.Is(err, ErrUnknownOp); got != tt.wantUnknown {
				t.Fatalf("errors.Is(%v, ErrUnknownOp) = %v, want %v", err, got, tt.wantUnknown)
			}
			if tt.wantUnknown && (!errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "HTTP 400: unknown")) {
				t.Fatalf("err = %v, want ErrUnavailable with the DBaaS's message", err)
			}
		})
	}
}

func TestWrite_Retries503WithSameID(t *testing.T) {
	f := &fakeOrchestrator{write: func(n int, req request) (int, string) {
		if n < 4 {
			return 503, `{"error":"no master answered in time"}`
		}
		return 200, `{"seq":9,"result":{}}`
	}}
	c := fastClient(mustStart(t, f))
	if _, err := c.Write(context.Background(), "users.add", nil); err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	if len(reqs) != 4 {
		t.Fatalf("%d attempts, want 4", len(reqs))
	}
	for _, r := range reqs {
		if r.ID != reqs[0].ID {
			t.Fatalf("id changed between attempts: %q vs %q", r.ID, reqs[0].ID)
		}
	}
}

func TestWrite_RetriesTransportErrorWithSameID(t *testing.T) {
	var ids []string
	var mu sync.Mutex
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		_ = json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		ids = append(ids, req.ID)
		n := len(ids)
		mu.Unlock()
		if n < 3 {
			// Drop the connection without an answer.
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		_, _ = io.WriteString(w, `{"seq":3,"result":{}}`)
	})
	c := fastClient(mustStart(t, h))
	if _, err := c.Write(context.Background(), "users.add", nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) < 3 {
		t.Fatalf("%d attempts", len(ids))
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("ids differ: %v", ids)
		}
	}
}

func TestWrite_GivesUpAtDeadline(t *testing.T) {
	f := &fakeOrchestrator{write: func(int, request) (int, string) {
		return 503, `{"error":"rabbitmq unreachable"}`
	}}
	c := fastClient(mustStart(t, f))
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Write(ctx, "users.add", nil)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("took %v", el)
	}
	if n := len(f.requests()); n < 2 {
		t.Fatalf("only %d attempts before the deadline", n)
	}
}

func TestRead_NotResentAfterAnAnswer(t *testing.T) {
	f := &fakeOrchestrator{read: func(int, request) (int, string) {
		return 503, `{"error":"no slave answered"}`
	}}
	c := fastClient(mustStart(t, f))
	_, err := c.Read(context.Background(), "rides.upcoming", nil, 0)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if n := len(f.requests()); n != 1 {
		t.Fatalf("read sent %d times, want exactly 1", n)
	}
}

func TestRead_RefusalNotFound(t *testing.T) {
	f := &fakeOrchestrator{read: func(int, request) (int, string) {
		return 404, `{"error":"no such ride","code":"not_found"}`
	}}
	c := fastClient(mustStart(t, f))
	_, err := c.Read(context.Background(), "rides.get", map[string]int{"rideId": 1}, 0)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
}

func TestClear(t *testing.T) {
	calls := 0
	f := &fakeOrchestrator{clear: func(n int) (int, string) {
		calls++
		if n == 1 {
			return 503, "0"
		}
		return 200, "77"
	}}
	c := fastClient(mustStart(t, f))
	seq, err := c.Clear(context.Background())
	if err != nil || seq != 77 || c.Seq() != 77 || calls != 2 {
		t.Fatalf("seq=%d err=%v Seq()=%d calls=%d", seq, err, c.Seq(), calls)
	}
	// Both attempts carried one idempotency id (a clear run twice would
	// erase the writes made between the two); the next clear gets another.
	reqs := f.requests()
	if reqs[0].ID == "" || reqs[0].ID != reqs[1].ID {
		t.Fatalf("the retry of one clear carried ids %q and %q", reqs[0].ID, reqs[1].ID)
	}
	if _, err := c.Clear(context.Background()); err != nil {
		t.Fatal(err)
	}
	if reqs = f.requests(); reqs[2].ID == reqs[0].ID {
		t.Fatalf("two clears carried the same id %q", reqs[0].ID)
	}
}

func TestDefaultTimeout(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	url := mustStart(t, h)
	defer close(release)
	c := New(url, WithTimeout(100*time.Millisecond), WithBackoff(time.Millisecond, 5*time.Millisecond))
	start := time.Now()
	_, err := c.Read(context.Background(), "users.list", nil, 0)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("took %v", el)
	}
}

func TestSeq_ConcurrentWritesKeepTheMaximum(t *testing.T) {
	var next atomic.Uint64
	f := &fakeOrchestrator{write: func(int, request) (int, string) {
		return 200, `{"seq":` + strconv.FormatUint(next.Add(1), 10) + `,"result":{}}`
	}}
	c := fastClient(mustStart(t, f))
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := c.Write(context.Background(), "db.clear", nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if c.Seq() != 50 {
		t.Fatalf("Seq() = %d, want 50", c.Seq())
	}
}
