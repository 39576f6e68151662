// Package dbaasclient is a small client for the DBaaS orchestrator's HTTP API
// (docs/dbaas-api.md): named write and read operations, and db/clear.
//
// Writes carry a random idempotency id and are resent with the same id, with
// backoff, after a transport error or a 503 until the context's deadline: the
// DBaaS applies an id at most once, so a resend never applies a write twice.
// The client remembers the highest sequence number any write (or clear) has
// returned and sends it as min_seq on every read, with consistency "strong",
// so a caller always reads its own writes.
//
// A read that got an HTTP answer is never resent, so the orchestrator (whose
// autoscaler counts reads) sees each Read call once; only a read whose
// connection failed is tried again.
//
// A context carrying a request id (package reqid) sends it as X-Request-ID,
// so that the orchestrator's and the workers' lines about the call carry
// the caller's id.
//
// Refusals (HTTP 400/404/409 with a code) come back as *RefusalError, which
// errors.Is matches against ErrInvalid, ErrNotFound or ErrConflict. Every
// other failure wraps ErrUnavailable.
package dbaasclient

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/reqid"
)

// Refusal codes the orchestrator sends with HTTP 400, 404 and 409.
const (
	CodeInvalid  = "invalid"
	CodeNotFound = "not_found"
	CodeConflict = "conflict"
)

var (
	// ErrInvalid matches a refusal with code "invalid": the operation
	// refused its parameters.
	ErrInvalid = errors.New("dbaas: invalid")
	// ErrNotFound matches a refusal with code "not_found".
	ErrNotFound = errors.New("dbaas: not found")
	// ErrConflict matches a refusal with code "conflict".
	ErrConflict = errors.New("dbaas: conflict")
	// ErrUnavailable is wrapped by every error that is not a refusal: the
	// orchestrator could not be reached, answered 502/503, answered
	// something unexpected, or the deadline passed.
	ErrUnavailable = errors.New("dbaas: unavailable")
	// ErrUnknownOp matches a 400 without a refusal code that says the
	// operation is unknown ("unknown read operation ..."): no loaded
	// handler serves it, e.g. its plugin is not installed on the workers.
	// Such an error also matches ErrUnavailable, so callers that do not
	// look for it treat it like any other failure.
	ErrUnknownOp = errors.New("dbaas: unknown operation")
)

// DefaultTimeout bounds a call whose context has no deadline.
const DefaultTimeout = 15 * time.Second

// Result is a successful reply: the sequence number and the raw result.
type Result struct {
	Seq    uint64          `json:"seq"`
	Result json.RawMessage `json:"result"`
}

// Decode unmarshals the result into v.
func (r Result) Decode(v any) error {
	if err := json.Unmarshal(r.Result, v); err != nil {
		return fmt.Errorf("%w: decode result: %v", ErrUnavailable, err)
	}
	return nil
}

// RefusalError is the operation's own answer to a request it refused.
type RefusalError struct {
	Status  int    // HTTP status: 400, 404 or 409
	Code    string // "invalid", "not_found" or "conflict"
	Message string // the orchestrator's "error" text
	Seq     uint64 // the refusal's sequence number (0 for reads)
}

func (e *RefusalError) Error() string {
	return fmt.Sprintf("dbaas refused (%s): %s", e.Code, e.Message)
}

// Is lets errors.Is match the sentinel for the refusal's code.
func (e *RefusalError) Is(target error) bool {
	switch e.Code {
	case CodeInvalid:
		return target == ErrInvalid
	case CodeNotFound:
		return target == ErrNotFound
	case CodeConflict:
		return target == ErrConflict
	}
	return false
}

// Client talks to one orchestrator. It is safe for concurrent use.
type Client struct {
	base       string
	http       *http.Client
	timeout    time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
	seq        atomic.Uint64 // highest seq seen from writes and clears
	adminToken string        // sent with db/clear only
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (default: a client with no overall
// timeout, deadlines come from the context, and 64 idle connections per
// host).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithTimeout sets the per-call timeout used when the context has no deadline.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithBackoff sets the first and the largest pause between write attempts.
func WithBackoff(min, max time.Duration) Option {
	return func(c *Client) { c.minBackoff, c.maxBackoff = min, max }
}

// WithAdminToken sets the bearer token sent with Clear: db/clear is an
// admin endpoint of the orchestrator outside dev mode. Reads and writes
// never carry it.
func WithAdminToken(token string) Option { return func(c *Client) { c.adminToken = token } }

// New returns a client for the orchestrator at baseURL (e.g.
// "http://127.0.0.1:8000").
func New(baseURL string, opts ...Option) *Client {
	c := &Client{
		base:       strings.TrimRight(baseURL, "/"),
		http:       defaultHTTPClient(),
		timeout:    DefaultTimeout,
		minBackoff: 25 * time.Millisecond,
		maxBackoff: time.Second,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

func defaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: t}
}

// Seq is the highest sequence number the client has seen from a write or a
// clear; reads ask for at least this.
func (c *Client) Seq() uint64 { return c.seq.Load() }

func (c *Client) observe(seq uint64) {
	for {
		cur := c.seq.Load()
		if seq <= cur || c.seq.CompareAndSwap(cur, seq) {
			return
		}
	}
}

type writeRequest struct {
	Op     string `json:"op"`
	Params any    `json:"params,omitempty"`
	ID     string `json:"id"`
}

type readRequest struct {
	Op          string `json:"op"`
	Params      any    `json:"params,omitempty"`
	MinSeq      uint64 `json:"min_seq"`
	Consistency string `json:"consistency"`
}

// Write runs the write operation op with params. It resends the same
// idempotency id after a transport error or a 503 until ctx ends.
func (c *Client) Write(ctx context.Context, op string, params any) (Result, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	id, err := newID()
	if err != nil {
		return Result{}, err
	}
	body, err := json.Marshal(writeRequest{Op: op, Params: params, ID: id})
	if err != nil {
		return Result{}, fmt.Errorf("dbaas write %s: encode params: %w", op, err)
	}
	res, _, err := c.retry(ctx, call{kindWrite, "write " + op}, func() (reply, error) {
		return c.post(ctx, "/api/v1/db/write", body, id)
	})
	return res, err
}

// Read runs the read operation op with params, asking for a replica that
// has applied at least max(minSeq, c.Seq()).
func (c *Client) Read(ctx context.Context, op string, params any, minSeq uint64) (Result, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	body, err := json.Marshal(readRequest{
		Op: op, Params: params, MinSeq: max(minSeq, c.seq.Load()), Consistency: "strong",
	})
	if err != nil {
		return Result{}, fmt.Errorf("dbaas read %s: encode params: %w", op, err)
	}
	res, _, err := c.retry(ctx, call{kindRead, "read " + op}, func() (reply, error) {
		return c.post(ctx, "/api/v1/db/read", body, "")
	})
	return res, err
}

// Clear empties every table (POST /api/v1/db/clear) and returns the clear's
// sequence number. Like a write it is resent after a transport error or
// 503, with one idempotency id for all its attempts: a clear applied twice
// would erase the writes made in between.
func (c *Client) Clear(ctx context.Context) (uint64, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	id, err := newID()
	if err != nil {
		return 0, err
	}
	body, err := json.Marshal(clearRequest{ID: id})
	if err != nil {
		return 0, fmt.Errorf("dbaas clear: %w", err)
	}
	_, seq, err := c.retry(ctx, call{kindClear, "clear"}, func() (reply, error) {
		return c.post(ctx, clearPath, body, id)
	})
	return seq, err
}

type clearRequest struct {
	ID string `json:"id"`
}

func (c *Client) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || c.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.timeout)
}

// kind says which endpoint a call used; it decides how a reply is read.
type kind int

const (
	kindWrite kind = iota
	kindRead
	kindClear
)

// call names one request in errors, e.g. "write users.add".
type call struct {
	kind kind
	name string
}

func (c call) String() string { return c.name }

// reply is one HTTP exchange's outcome.
type reply struct {
	status    int
	body      []byte
	headerSeq string
}

// retry runs do until it succeeds, is refused, or fails for good. Transport
// errors are always retried; a 503 only for writes and clears, which are
// safe to resend (a read that got an answer is not sent twice).
func (c *Client) retry(ctx context.Context, what call, do func() (reply, error)) (Result, uint64, error) {
	resendOn503 := what.kind != kindRead
	pause := c.minBackoff
	for attempt := 1; ; attempt++ {
		rp, err := do()
		var final error
		if err == nil {
			res, seq, err := c.interpret(what, rp)
			if err == nil || rp.status != http.StatusServiceUnavailable || !resendOn503 {
				return res, seq, err
			}
			final = err
		} else {
			final = fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
		}
		if ctx.Err() != nil {
			return Result{}, 0, fmt.Errorf("%w (gave up after %d attempts: %w)", final, attempt, ctx.Err())
		}
		// Full jitter keeps many clients from resending in lockstep.
		sleep := pause/2 + rand.N(pause/2+1)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < sleep {
			return Result{}, 0, fmt.Errorf("%w (gave up after %d attempts: deadline too close)", final, attempt)
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return Result{}, 0, fmt.Errorf("%w (gave up after %d attempts: %w)", final, attempt, ctx.Err())
		case <-t.C:
		}
		pause = min(pause*2, c.maxBackoff)
	}
}

func (c *Client) post(ctx context.Context, path string, body []byte, id string) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	reqid.Set(ctx, req.Header) // the orchestrator logs the caller's request id
	if path == clearPath && c.adminToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.adminToken)
	}
	if id != "" {
		// Lets net/http itself resend on a stale keep-alive connection.
		req.Header.Set("Idempotency-Key", id)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("read reply: %w", err)
	}
	return reply{status: resp.StatusCode, body: b, headerSeq: resp.Header.Get("X-DBaaS-Seq")}, nil
}

type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
	Seq   uint64 `json:"seq"`
}

// interpret turns an HTTP reply into a result or an error and records seq.
func (c *Client) interpret(what call, rp reply) (Result, uint64, error) {
	if rp.status == http.StatusOK {
		if what.kind == kindClear {
			var seq uint64
			if rp.headerSeq != "" {
				s, err := strconv.ParseUint(rp.headerSeq, 10, 64)
				if err != nil {
					return Result{}, 0, fmt.Errorf("%w: %s: bad X-DBaaS-Seq %q", ErrUnavailable, what, rp.headerSeq)
				}
				seq = s
			}
			c.observe(seq)
			return Result{Seq: seq}, seq, nil
		}
		var res Result
		if err := json.Unmarshal(rp.body, &res); err != nil {
			return Result{}, 0, fmt.Errorf("%w: %s: undecodable reply: %v", ErrUnavailable, what, err)
		}
		if what.kind == kindWrite {
			c.observe(res.Seq)
		}
		return res, res.Seq, nil
	}
	var eb errorBody
	_ = json.Unmarshal(rp.body, &eb) // a non-JSON error body still yields its status
	msg := eb.Error
	if msg == "" {
		msg = strings.TrimSpace(string(rp.body))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
	}
	switch rp.status {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict:
		if eb.Code != "" {
			if what.kind == kindWrite {
				c.observe(eb.Seq)
			}
			return Result{}, 0, &RefusalError{Status: rp.status, Code: eb.Code, Message: msg, Seq: eb.Seq}
		}
	}
	err := fmt.Errorf("%w: %s: HTTP %d: %s", ErrUnavailable, what, rp.status, msg)
	if rp.status == http.StatusBadRequest && eb.Code == "" && unknownOpMessage(msg) {
		err = unknownOpError{err}
	}
	return Result{}, 0, err
}

// unknownOpMessage reports whether a 400's message is the DBaaS saying no
// handler serves the operation (docs/dbaas-api.md: worker replies
// "unknown read operation %q" / "unknown write operation %q").
func unknownOpMessage(msg string) bool {
	return strings.HasPrefix(msg, "unknown read operation") || strings.HasPrefix(msg, "unknown write operation")
}

// unknownOpError is an ErrUnavailable failure that also matches
// ErrUnknownOp; its text is the wrapped error's.
type unknownOpError struct{ err error }

func (e unknownOpError) Error() string   { return e.err.Error() }
func (e unknownOpError) Unwrap() []error { return []error{e.err, ErrUnknownOp} }

func newID() (string, error) {
	var b [16]byte
	if _, err := crand.Read(b[:]); err != nil {
		return "", fmt.Errorf("dbaas: idempotency id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// clearPath is the orchestrator's admin endpoint Clear calls.
const clearPath = "/api/v1/db/clear"
