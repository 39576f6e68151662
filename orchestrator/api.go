package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/rideshare-dbaas/rideshare/internal/apirecord"
	"github.com/rideshare-dbaas/rideshare/internal/httpx"
	"github.com/rideshare-dbaas/rideshare/internal/mq"
	"github.com/rideshare-dbaas/rideshare/internal/reqid"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
)

// HeaderSeq carries a write's sequence number on every write reply.
const HeaderSeq = "X-DBaaS-Seq"

// headerDeadline must match worker.HeaderDeadline (the worker package is
// not imported here: the orchestrator never links database code).
const headerDeadline = "x-deadline-ms"

// Handler returns the HTTP API.
func (o *Orchestrator) Handler() http.Handler {
	r := chi.NewRouter()
	// The request id first: the metrics, the replies and every log line
	// about the request see it (package reqid).
	r.Use(reqid.Middleware)
	r.Use(o.met.Middleware(apirecord.FromEnv("dbaas")))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no route "+r.Method+" "+r.URL.Path)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			if r.Match(chi.NewRouteContext(), m, req.URL.Path) {
				allow = append(allow, m)
			}
		}
		for _, m := range allow {
			w.Header().Add("Allow", m)
		}
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s", req.Method, req.URL.Path))
	})
	r.Post("/api/v1/db/write", o.countDB("write", o.handleWrite))
	r.Post("/api/v1/db/read", o.countDB("read", o.handleRead))
	// Admin endpoints: the bearer token outside dev mode (ops.go).
	r.With(o.guard.Wrap).Post("/api/v1/db/clear", o.countDB("clear", o.handleClear))
	r.With(o.guard.Wrap).Post("/api/v1/crash/master", o.handleCrashMaster)
	r.With(o.guard.Wrap).Post("/api/v1/crash/slave", o.handleCrashSlave)
	r.Get("/api/v1/worker/list", o.handleWorkerList)
	r.Get("/api/v1/workers", o.handleWorkers)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	r.Get("/readyz", o.handleReady)
	o.opsRoutes(r)
	return r
}

var (
	writeJSON  = httpx.WriteJSON
	writeError = httpx.WriteError
)

// decodeBody reads at most max bytes and decodes them strictly into v,
// answering the 4xx itself when it cannot.
func decodeBody(w http.ResponseWriter, r *http.Request, max int64, v any) bool {
	body, herr := httpx.ReadBody(r, max)
	if herr == nil {
		herr = httpx.DecodeJSON(body, v)
	}
	if herr != nil {
		httpx.Fail(w, herr)
		return false
	}
	return true
}

type writeBody struct {
	Op     *string         `json:"op"`
	Params json.RawMessage `json:"params"`
	ID     string          `json:"id"`
}

type readBody struct {
	Op          *string         `json:"op"`
	Params      json.RawMessage `json:"params"`
	MinSeq      *int64          `json:"min_seq"`
	Consistency string          `json:"consistency"`
}

// validParams accepts an absent params or a JSON object.
func validParams(p json.RawMessage) (json.RawMessage, string) {
	t := bytes.TrimSpace(p)
	if len(t) == 0 || string(t) == "null" {
		return json.RawMessage("{}"), ""
	}
	if t[0] != '{' {
		return nil, `"params" must be a JSON object`
	}
	return t, ""
}

func validOp(op *string) string {
	switch {
	case op == nil:
		return `"op" is required`
	case *op == "":
		return `"op" must not be empty`
	case len(*op) > 128:
		return `"op" is longer than 128 bytes`
	}
	return ""
}

func (o *Orchestrator) handleWrite(w http.ResponseWriter, r *http.Request) {
	var b writeBody
	if !decodeBody(w, r, o.opts.MaxBody, &b) {
		return
	}
	if msg := validOp(b.Op); msg != "" {
		writeError(w, 400, msg)
		return
	}
	params, msg := validParams(b.Params)
	if msg != "" {
		writeError(w, 400, msg)
		return
	}
	if len(b.ID) > 128 {
		writeError(w, 400, `"id" is longer than 128 bytes`)
		return
	}
	if b.ID == "" {
		b.ID = uuid.NewString()
	}
	ctx := r.Context()
	o.forwardWrite(w, ctx, wire.WriteRequest{ID: b.ID, Op: *b.Op, Params: params, RID: reqid.FromContext(ctx)}, nil)
}

type clearBody struct {
	ID string `json:"id"`
}

// handleClear runs db.clear as a write. Its idempotency id comes from the
// body ({"id": ...}) or the Idempotency-Key header, so that a client's
// retries of one clear run it once: a clear run twice would erase the
// writes made between the two. Without one, every call is a new clear.
func (o *Orchestrator) handleClear(w http.ResponseWriter, r *http.Request) {
	var b clearBody
	body, herr := httpx.ReadBody(r, o.opts.MaxBody)
	if herr == nil && len(bytes.TrimSpace(body)) > 0 {
		herr = httpx.DecodeJSON(body, &b)
	}
	if herr != nil {
		httpx.Fail(w, herr)
		return
	}
	id := b.ID
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		if id != "" && id != key {
			writeError(w, 400, `"id" and the Idempotency-Key header differ`)
			return
		}
		id = key
	}
	if len(id) > 128 {
		writeError(w, 400, `"id" is longer than 128 bytes`)
		return
	}
	if id == "" {
		id = uuid.NewString()
	}
	ctx := r.Context()
	o.forwardWrite(w, ctx, wire.WriteRequest{ID: "clear:" + id, Op: "db.clear", Params: json.RawMessage("{}"), RID: reqid.FromContext(ctx)}, struct{}{})
}

// forwardWrite sends a write and relays the master's reply. With
// override set, a success answers override instead of the reply body.
func (o *Orchestrator) forwardWrite(w http.ResponseWriter, ctx context.Context, req wire.WriteRequest, override any) {
	ctx, cancel := context.WithTimeout(ctx, o.opts.WriteTimeout)
	defer cancel()
	rep, err := o.writes.do(ctx, req)
	if err != nil {
		o.unavailable(w, ctx, "write", req.Op, err)
		return
	}
	if rep.Seq > 0 {
		o.acked.raise(rep.Epoch, rep.Seq)
		w.Header().Set(HeaderSeq, strconv.FormatUint(rep.Seq, 10))
	}
	if rep.Status == 200 && override != nil {
		writeJSON(w, 200, override)
		return
	}
	o.relay(w, ctx, req.Op, &rep)
}

func (o *Orchestrator) handleRead(w http.ResponseWriter, r *http.Request) {
	o.scaler.countRead() // every db/read call counts, valid or not
	if !o.cluster.recovered.Load() {
		// Right after a start, what was acknowledged before is not known
		// yet: a min_seq cannot be checked, a strong read cannot be made.
		writeError(w, http.StatusServiceUnavailable, "read failed: the orchestrator is starting and does not know yet what was acknowledged before it; retry shortly")
		return
	}
	var b readBody
	if !decodeBody(w, r, o.opts.MaxBody, &b) {
		return
	}
	if msg := validOp(b.Op); msg != "" {
		writeError(w, 400, msg)
		return
	}
	params, msg := validParams(b.Params)
	if msg != "" {
		writeError(w, 400, msg)
		return
	}
	var minSeq uint64
	if b.MinSeq != nil {
		if *b.MinSeq < 0 {
			writeError(w, 400, `"min_seq" must not be negative`)
			return
		}
		minSeq = uint64(*b.MinSeq)
		// A read waiting for a sequence number nobody committed would hold
		// a slave's read slot until its deadline: refuse it at once.
		if top := o.committedSeq(); minSeq > top {
			writeError(w, 400, fmt.Sprintf(`"min_seq" %d is above the highest sequence number committed (%d)`, minSeq, top))
			return
		}
	}
	switch b.Consistency {
	case "", "strong":
		_, ackedSeq := o.acked.get()
		minSeq = max(minSeq, ackedSeq)
	case "session":
	default:
		writeError(w, 400, `"consistency" must be "strong" or "session"`)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), o.opts.ReadTimeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	rep, err := o.reads.do(ctx, wire.ReadRequest{Op: *b.Op, Params: params, MinSeq: minSeq, Deadline: deadline.UnixMilli(),
		RID: reqid.FromContext(ctx)})
	if err != nil {
		o.unavailable(w, ctx, "read", *b.Op, err)
		return
	}
	o.relay(w, ctx, *b.Op, &rep)
}

// retrySafe ends the message of a write that got no answer: it may or may
// not have been applied, and resending it is how a client finds out.
const retrySafe = `; it may have been applied: retrying it with the same "id" is safe (a write is applied at most once per id)`

// unavailable answers a read or write (what) of op that got no reply, and
// logs it at warn level with the request's id.
func (o *Orchestrator) unavailable(w http.ResponseWriter, ctx context.Context, what, op string, err error) {
	status, msg := http.StatusServiceUnavailable, ""
	if errors.Is(err, context.DeadlineExceeded) && !o.caller.Connected() {
		// The request's own deadline came first, but the reason is this.
		err = fmt.Errorf("%w: not connected", mq.ErrUnavailable)
	}
	switch {
	case errors.Is(err, errBadReply):
		status, msg = http.StatusBadGateway, fmt.Sprintf("%s failed: %v", what, err)
	case errors.Is(err, mq.ErrUnavailable):
		msg = fmt.Sprintf("%s failed: RabbitMQ is unreachable (%v)", what, err)
	case errors.Is(err, context.DeadlineExceeded):
		who := "master"
		if what == "read" {
			who = "slave"
		}
		msg = fmt.Sprintf("%s failed: no %s answered in time", what, who)
	default:
		msg = fmt.Sprintf("%s failed: %v", what, err)
	}
	o.log.WarnContext(ctx, what+" failed", "op", op, "status", status, "err", err)
	if what == "write" {
		msg += retrySafe
	}
	writeError(w, status, msg)
}

// HeaderWorker names the worker that answered.
const HeaderWorker = "X-DBaaS-Worker"

// relay turns a worker reply to op into the HTTP answer. A refusal is
// logged at debug level, a worker's failure (5xx) at warn, both with the
// request's id; a success is not logged.
func (o *Orchestrator) relay(w http.ResponseWriter, ctx context.Context, op string, rep *wire.Reply) {
	if rep.Worker != "" {
		w.Header().Set(HeaderWorker, rep.Worker)
	}
	if rep.Status == 200 {
		result := rep.Result
		if len(result) == 0 {
			result = json.RawMessage("{}")
		}
		writeJSON(w, 200, struct {
			Seq    uint64          `json:"seq"`
			Result json.RawMessage `json:"result"`
		}{rep.Seq, result})
		return
	}
	level := slog.LevelDebug
	if rep.Status >= 500 {
		level = slog.LevelWarn
	}
	if o.log.Enabled(ctx, level) {
		o.log.Log(ctx, level, "worker answered an error", "op", op, "status", rep.Status, "code", rep.Code,
			"worker", rep.Worker, "error", rep.Error)
	}
	out := map[string]any{"error": rep.Error}
	if id := reqid.FromResponse(w); id != "" {
		out[reqid.Attr] = id
	}
	if rep.Code != "" {
		out["code"] = rep.Code
	}
	if rep.Seq > 0 {
		out["seq"] = rep.Seq
	}
	if rep.Handler != "" {
		out["handler"] = rep.Handler
	}
	writeJSON(w, rep.Status, out)
}

func (o *Orchestrator) handleCrashMaster(w http.ResponseWriter, r *http.Request) {
	rec, _, exists, err := o.cluster.readMaster()
	if err != nil {
		writeError(w, 503, "reading the master record: "+err.Error())
		return
	}
	insts, err := o.rt.List(r.Context())
	if err != nil {
		writeError(w, 503, "listing workers: "+err.Error())
		return
	}
	for _, in := range insts {
		if exists && in.ID == rec.ID {
			o.kill(w, r, in, wire.RoleMaster)
			return
		}
	}
	writeError(w, http.StatusConflict, "there is no live master to crash right now")
}

func (o *Orchestrator) handleCrashSlave(w http.ResponseWriter, r *http.Request) {
	rec, _, _, err := o.cluster.readMaster()
	if err != nil {
		writeError(w, 503, "reading the master record: "+err.Error())
		return
	}
	insts, err := o.rt.List(r.Context())
	if err != nil {
		writeError(w, 503, "listing workers: "+err.Error())
		return
	}
	var victim *Instance
	for i, in := range insts {
		if in.ID != rec.ID && (victim == nil || in.PID > victim.PID) {
			victim = &insts[i]
		}
	}
	if victim == nil {
		writeError(w, http.StatusConflict, "there is no slave to crash right now")
		return
	}
	o.kill(w, r, *victim, wire.RoleSlave)
}

func (o *Orchestrator) kill(w http.ResponseWriter, r *http.Request, in Instance, role string) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	// Killed on request, not crashed: its exit must not count as a worker
	// dying right after starting (that backs off the replacement).
	o.cluster.forgetStart(in.ID)
	if err := o.rt.Kill(ctx, in.ID); err != nil {
		writeError(w, 503, fmt.Sprintf("killing worker %s: %v", in.ID, err))
		return
	}
	o.log.Info("crashed worker on request", "id", in.ID, "pid", in.PID)
	o.obs.crashed(in, role)
	o.cluster.poke()
	writeJSON(w, 200, []int{in.PID})
}

func (o *Orchestrator) handleWorkerList(w http.ResponseWriter, r *http.Request) {
	insts, err := o.rt.List(r.Context())
	if err != nil {
		writeError(w, 503, "listing workers: "+err.Error())
		return
	}
	pids := make([]int, 0, len(insts))
	for _, in := range insts {
		if in.PID > 0 { // 0: a Nomad worker not registered yet (no pid known)
			pids = append(pids, in.PID)
		}
	}
	sort.Ints(pids)
	writeJSON(w, 200, pids)
}

func (o *Orchestrator) handleWorkers(w http.ResponseWriter, _ *http.Request) {
	view, _, _ := o.cluster.snapshot()
	for i := range view {
		view[i].Runtime = o.rt.Name()
	}
	writeJSON(w, 200, view)
}

func (o *Orchestrator) handleReady(w http.ResponseWriter, _ *http.Request) {
	_, master, ready := o.cluster.snapshot()
	switch {
	case !o.caller.Connected():
		writeJSON(w, 503, map[string]string{"error": "not connected to RabbitMQ", "runtime": o.rt.Name(), reqid.Attr: reqid.FromResponse(w)})
	case !ready:
		writeJSON(w, 503, map[string]string{"error": "no master is ready yet", "runtime": o.rt.Name(), reqid.Attr: reqid.FromResponse(w)})
	default:
		writeJSON(w, 200, map[string]string{"status": "ready", "master": master, "runtime": o.rt.Name()})
	}
}
