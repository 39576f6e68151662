package pluginapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"github.com/rideshare-dbaas/rideshare/worker/pluginapi/pluginpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors a host-side GRPCClient returns besides the handler's own *Error.
// Anything else it returns (gRPC status errors) is a transport failure: the
// plugin process died, hung past the deadline, or broke the protocol.
var (
	// ErrInvalidResult: the plugin answered, but not with something the
	// contract allows (a result that is not JSON, an unknown refusal code,
	// no outcome at all). The process is alive; the call failed.
	ErrInvalidResult = errors.New("plugin returned an invalid result")
	// ErrCallNotOpen: the plugin used the DB of a call that has returned.
	ErrCallNotOpen = errors.New("database call of a handler call that is no longer open")
)

// RemoteError is a handler failure reported by the plugin process (any
// error of its Execute that is not an *Error): the process is healthy, the
// operation failed.
type RemoteError struct {
	Message string
}

func (e *RemoteError) Error() string { return e.Message }

// attachTimeout bounds the Info call that makes a new plugin dial the DB
// service.
const attachTimeout = 10 * time.Second

// ---- host side ----

// GRPCClient is the host side of a handler plugin: a Handler whose calls
// run in the plugin process. At dispense time it serves the DB service on
// one brokered stream; each Execute registers the caller's DB under a fresh
// call id, valid only until Execute returns, and the plugin sends every
// statement of the call with that id.
type GRPCClient struct {
	client   pluginpb.HandlerClient
	brokerID uint32
	nextCall atomic.Uint64

	mu    sync.Mutex
	calls map[uint64]*openCall
}

var _ Handler = (*GRPCClient)(nil)

// openCall is one Execute in progress.
type openCall struct {
	mu     sync.Mutex // serialises the call's statements, and its end
	db     DB
	ctx    context.Context // the Execute's context, cancelled when it returns
	closed bool
}

// NewGRPCClient opens the DB service on the broker and has the plugin
// connect to it. HandlerPlugin.GRPCClient calls it; tests may too.
func NewGRPCClient(ctx context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) (*GRPCClient, error) {
	c := &GRPCClient{client: pluginpb.NewHandlerClient(conn), calls: map[uint64]*openCall{}}
	c.brokerID = broker.NextId()
	// One brokered server for the client's lifetime (it stops when the
	// broker closes, i.e. when the plugin client is killed): a per-call
	// AcceptAndServe would open a socket and a TLS handshake per call.
	go broker.AcceptAndServe(c.brokerID, func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(opts...)
		pluginpb.RegisterDBServer(s, &dbServer{c: c})
		return s
	})
	// The broker forgets connection info nobody dialed within 5 seconds, so
	// the plugin must dial now rather than on its first Execute.
	actx, cancel := context.WithTimeout(ctx, attachTimeout)
	defer cancel()
	if _, err := c.client.Info(actx, &pluginpb.InfoRequest{DbBrokerId: c.brokerID}); err != nil {
		return nil, fmt.Errorf("attach the DB service: %w", err)
	}
	return c, nil
}

// Info implements Handler.
func (c *GRPCClient) Info(ctx context.Context) (Info, error) {
	resp, err := c.client.Info(ctx, &pluginpb.InfoRequest{DbBrokerId: c.brokerID})
	if err != nil {
		return Info{}, err
	}
	info := Info{Name: resp.Name, Version: resp.Version}
	for _, op := range resp.Ops {
		info.Ops = append(info.Ops, Op{Name: op.Name, Kind: Kind(op.Kind)})
	}
	for _, m := range resp.Migrations {
		info.Migrations = append(info.Migrations, Migration{Version: int(m.Version), Statements: m.Statements})
	}
	return info, nil
}

// Execute implements Handler. db is usable by the plugin only until
// Execute returns: statements arriving later are refused, and one still
// running then is interrupted and waited for, so the caller can roll back
// or commit knowing the plugin can no longer touch its transaction.
func (c *GRPCClient) Execute(ctx context.Context, op string, params json.RawMessage, db DB) (json.RawMessage, error) {
	id := c.nextCall.Add(1)
	cctx, cancel := context.WithCancel(ctx)
	call := &openCall{db: db, ctx: cctx}
	c.mu.Lock()
	c.calls[id] = call
	c.mu.Unlock()
	defer func() {
		cancel() // interrupts a statement of this call still running
		call.mu.Lock()
		call.closed, call.db = true, nil
		call.mu.Unlock()
		c.mu.Lock()
		delete(c.calls, id)
		c.mu.Unlock()
	}()
	resp, err := c.client.Execute(outgoingRequestIDs(ctx, RequestID(ctx)),
		&pluginpb.ExecuteRequest{Op: op, Params: params, DbBrokerId: c.brokerID, CallId: id})
	if err != nil {
		return nil, err
	}
	switch o := resp.Outcome.(type) {
	case *pluginpb.ExecuteResponse_Result:
		if !json.Valid(o.Result) {
			return nil, fmt.Errorf("%w: %s answered %d bytes that are not JSON (%q)", ErrInvalidResult, op, len(o.Result), truncate(o.Result, 40))
		}
		return o.Result, nil
	case *pluginpb.ExecuteResponse_Refusal:
		switch code := Code(o.Refusal.Code); code {
		case CodeInvalid, CodeNotFound, CodeConflict:
			return nil, &Error{Code: code, Message: o.Refusal.Message}
		default:
			return nil, fmt.Errorf("%w: %s refused with unknown code %q", ErrInvalidResult, op, o.Refusal.Code)
		}
	case *pluginpb.ExecuteResponse_Failure:
		return nil, &RemoteError{Message: o.Failure}
	default:
		return nil, fmt.Errorf("%w: %s answered no outcome", ErrInvalidResult, op)
	}
}

var _ Planner = (*GRPCClient)(nil)

// Plan implements Planner with one call to the plugin for all calls. A
// plugin built before plans existed answers Unimplemented: everything is
// interactive then. A transport failure fails every call of the batch.
func (c *GRPCClient) Plan(ctx context.Context, calls []Call) []PlanResult {
	out := make([]PlanResult, len(calls))
	fail := func(err error) []PlanResult {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	req := &pluginpb.PlanRequest{Calls: make([]*pluginpb.PlanCall, len(calls))}
	ids := make([]string, len(calls))
	for i, cl := range calls {
		req.Calls[i] = &pluginpb.PlanCall{Op: cl.Op, Params: cl.Params}
		ids[i] = cl.RequestID
	}
	resp, err := c.client.Plan(outgoingRequestIDs(ctx, ids...), req)
	if status.Code(err) == codes.Unimplemented {
		return fail(ErrInteractive)
	}
	if err != nil {
		return fail(err)
	}
	if len(resp.Outcomes) != len(calls) {
		return fail(fmt.Errorf("%w: %d plans for %d calls", ErrInvalidResult, len(resp.Outcomes), len(calls)))
	}
	for i, o := range resp.Outcomes {
		switch x := o.Outcome.(type) {
		case *pluginpb.PlanOutcome_Plan:
			p, err := planFromProto(x.Plan)
			if err == nil {
				err = p.Check()
			}
			if err != nil {
				out[i].Err = fmt.Errorf("%w: plan of %s: %v", ErrInvalidResult, calls[i].Op, err)
				continue
			}
			out[i].Plan = p
		case *pluginpb.PlanOutcome_Refusal:
			switch code := Code(x.Refusal.Code); code {
			case CodeInvalid, CodeNotFound, CodeConflict:
				out[i].Err = &Error{Code: code, Message: x.Refusal.Message}
			default:
				out[i].Err = fmt.Errorf("%w: %s refused with unknown code %q", ErrInvalidResult, calls[i].Op, x.Refusal.Code)
			}
		case *pluginpb.PlanOutcome_Failure:
			out[i].Err = &RemoteError{Message: x.Failure}
		case *pluginpb.PlanOutcome_Interactive:
			out[i].Err = ErrInteractive
		default:
			out[i].Err = fmt.Errorf("%w: %s answered no plan outcome", ErrInvalidResult, calls[i].Op)
		}
	}
	return out
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// withCall runs f with the DB of open call id, holding the call's lock.
// rctx is the DB request's context (the plugin may cancel one statement);
// the call's own context ends when the call returns.
func (c *GRPCClient) withCall(rctx context.Context, id uint64, f func(ctx context.Context, db DB) error) error {
	c.mu.Lock()
	call := c.calls[id]
	c.mu.Unlock()
	if call == nil {
		return ErrCallNotOpen
	}
	call.mu.Lock()
	defer call.mu.Unlock()
	if call.closed {
		return ErrCallNotOpen
	}
	ctx, cancel := context.WithCancel(call.ctx)
	defer cancel()
	stop := context.AfterFunc(rctx, cancel)
	defer stop()
	return f(ctx, call.db)
}

// dbServer is the host's DB service; it routes by call id.
type dbServer struct {
	pluginpb.UnimplementedDBServer
	c *GRPCClient
}

func (s *dbServer) Exec(ctx context.Context, req *pluginpb.ExecRequest) (*pluginpb.ExecResponse, error) {
	args, err := fromValues(req.Args)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	var res ExecResult
	err = s.c.withCall(ctx, req.CallId, func(ctx context.Context, db DB) (err error) {
		res, err = db.Exec(ctx, req.Query, args...)
		return err
	})
	if err != nil {
		return nil, dbStatus(err)
	}
	return &pluginpb.ExecResponse{LastInsertId: res.LastInsertID, RowsAffected: res.RowsAffected}, nil
}

func (s *dbServer) Query(ctx context.Context, req *pluginpb.QueryRequest) (*pluginpb.QueryResponse, error) {
	args, err := fromValues(req.Args)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	var rows Rows
	err = s.c.withCall(ctx, req.CallId, func(ctx context.Context, db DB) (err error) {
		rows, err = db.Query(ctx, req.Query, args...)
		return err
	})
	if err != nil {
		return nil, dbStatus(err)
	}
	out := &pluginpb.QueryResponse{Columns: rows.Columns, Rows: make([]*pluginpb.Row, len(rows.Values))}
	for i, row := range rows.Values {
		vals, err := toValues(row)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "row %d: %v", i, err)
		}
		out.Rows[i] = &pluginpb.Row{Values: vals}
	}
	return out, nil
}

func dbStatus(err error) error {
	if errors.Is(err, ErrCallNotOpen) {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return status.Error(codes.Unknown, strings.ToValidUTF8(err.Error(), "\uFFFD"))
}

// ---- plugin side ----

// GRPCServer is the plugin side: it serves Impl over gRPC and hands it a DB
// that calls the host back.
type GRPCServer struct {
	pluginpb.UnimplementedHandlerServer
	Impl   Handler
	broker *plugin.GRPCBroker

	mu  sync.Mutex
	dbs map[uint32]*dbConn
}

var _ pluginpb.HandlerServer = (*GRPCServer)(nil)

type dbConn struct {
	once   sync.Once
	client pluginpb.DBClient
	err    error
}

// NewGRPCServer returns the plugin-side adapter of impl.
func NewGRPCServer(impl Handler, broker *plugin.GRPCBroker) *GRPCServer {
	return &GRPCServer{Impl: impl, broker: broker, dbs: map[uint32]*dbConn{}}
}

// dbClient returns the connection to the host's DB service id, dialing it
// once.
func (s *GRPCServer) dbClient(id uint32) (pluginpb.DBClient, error) {
	s.mu.Lock()
	d := s.dbs[id]
	if d == nil {
		d = &dbConn{}
		s.dbs[id] = d
	}
	s.mu.Unlock()
	d.once.Do(func() {
		conn, err := s.broker.Dial(id)
		if err != nil {
			d.err = fmt.Errorf("dial the worker's DB service: %w", err)
			return
		}
		d.client = pluginpb.NewDBClient(conn)
	})
	return d.client, d.err
}

// Info implements pluginpb.HandlerServer.
func (s *GRPCServer) Info(ctx context.Context, req *pluginpb.InfoRequest) (*pluginpb.InfoResponse, error) {
	if req.DbBrokerId != 0 {
		if _, err := s.dbClient(req.DbBrokerId); err != nil {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
	}
	info, err := s.Impl.Info(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "handler info: %v", err)
	}
	resp := &pluginpb.InfoResponse{Name: info.Name, Version: info.Version}
	for _, op := range info.Ops {
		resp.Ops = append(resp.Ops, &pluginpb.Op{Name: op.Name, Kind: string(op.Kind)})
	}
	for _, m := range info.Migrations {
		resp.Migrations = append(resp.Migrations, &pluginpb.Migration{Version: int64(m.Version), Statements: m.Statements})
	}
	return resp, nil
}

// Execute implements pluginpb.HandlerServer. A panic in Impl is not
// recovered: the process dies, the host fails the call and restarts the
// plugin (a panicking handler may have broken its own state).
func (s *GRPCServer) Execute(ctx context.Context, req *pluginpb.ExecuteRequest) (*pluginpb.ExecuteResponse, error) {
	var db DB // stays a nil interface without a DB service
	if req.DbBrokerId != 0 {
		client, err := s.dbClient(req.DbBrokerId)
		if err != nil {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
		db = &remoteDB{client: client, callID: req.CallId}
	}
	if ids := incomingRequestIDs(ctx); len(ids) == 1 {
		ctx = WithRequestID(ctx, ids[0])
	}
	res, err := s.Impl.Execute(ctx, req.Op, req.Params, db)
	if err != nil {
		logOutcome(ctx, "execute", req.Op, err)
		if pe, ok := AsError(err); ok {
			return &pluginpb.ExecuteResponse{Outcome: &pluginpb.ExecuteResponse_Refusal{
				Refusal: &pluginpb.Refusal{Code: string(pe.Code), Message: strings.ToValidUTF8(pe.Message, "\uFFFD")},
			}}, nil
		}
		return &pluginpb.ExecuteResponse{Outcome: &pluginpb.ExecuteResponse_Failure{
			Failure: strings.ToValidUTF8(err.Error(), "\uFFFD"),
		}}, nil
	}
	if res == nil {
		res = json.RawMessage("null")
	}
	return &pluginpb.ExecuteResponse{Outcome: &pluginpb.ExecuteResponse_Result{Result: res}}, nil
}

// planMargin is how long before the host's deadline the plugin side
// answers the calls that are done, failing those still planning: a hung
// planner fails its own call, not the batch.
const planMargin = 100 * time.Millisecond

// Plan implements pluginpb.HandlerServer. Each call is planned on its
// own goroutine, so one that hangs fails alone at the deadline.
func (s *GRPCServer) Plan(ctx context.Context, req *pluginpb.PlanRequest) (*pluginpb.PlanResponse, error) {
	pl, ok := s.Impl.(Planner)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "handler has no plans")
	}
	pctx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		pctx, cancel = context.WithDeadline(ctx, dl.Add(-planMargin))
		defer cancel()
	}
	// One request id per call, in order (the worker sends none, or all).
	ids := incomingRequestIDs(ctx)
	if len(ids) != len(req.Calls) {
		ids = nil
	}
	results := make([]chan PlanResult, len(req.Calls))
	for i, c := range req.Calls {
		results[i] = make(chan PlanResult, 1)
		call, cctx := Call{Op: c.Op, Params: c.Params}, pctx
		if ids != nil {
			call.RequestID, cctx = ids[i], WithRequestID(pctx, ids[i])
		}
		go func() {
			r := pl.Plan(cctx, []Call{call})
			if len(r) != 1 {
				r = []PlanResult{{Err: fmt.Errorf("planner answered %d results for 1 call", len(r))}}
			}
			if r[0].Err != nil {
				logOutcome(cctx, "plan", call.Op, r[0].Err)
			}
			results[i] <- r[0]
		}()
	}
	resp := &pluginpb.PlanResponse{Outcomes: make([]*pluginpb.PlanOutcome, len(req.Calls))}
	for i, c := range req.Calls {
		var r PlanResult
		select {
		case r = <-results[i]:
		case <-pctx.Done():
			r.Err = fmt.Errorf("plan of %s did not come before the deadline", c.Op)
		}
		resp.Outcomes[i] = planOutcome(r)
	}
	return resp, nil
}

// logOutcome logs, at debug level on the plugin's side and with the
// call's request id, a call (what: "plan" or "execute") that did not
// succeed: the worker logs failures itself; this line shows what the
// plugin saw, when its log level is debug (EnvLogLevel).
func logOutcome(ctx context.Context, what, op string, err error) {
	l := hclog.Default()
	if !l.IsDebug() || errors.Is(err, ErrInteractive) {
		return
	}
	outcome := "failed"
	if _, refused := AsError(err); refused {
		outcome = "refused"
	}
	Logger(ctx).Debug(what+" "+outcome, "op", op, "err", err)
}

func planOutcome(r PlanResult) *pluginpb.PlanOutcome {
	switch {
	case r.Err == nil && r.Plan != nil:
		p, err := planToProto(r.Plan)
		if err == nil {
			return &pluginpb.PlanOutcome{Outcome: &pluginpb.PlanOutcome_Plan{Plan: p}}
		}
		r.Err = err
	case r.Err == nil:
		r.Err = errors.New("planner returned neither a plan nor an error")
	}
	if errors.Is(r.Err, ErrInteractive) {
		return &pluginpb.PlanOutcome{Outcome: &pluginpb.PlanOutcome_Interactive{Interactive: true}}
	}
	if pe, ok := AsError(r.Err); ok {
		return &pluginpb.PlanOutcome{Outcome: &pluginpb.PlanOutcome_Refusal{
			Refusal: &pluginpb.Refusal{Code: string(pe.Code), Message: strings.ToValidUTF8(pe.Message, "\uFFFD")}}}
	}
	return &pluginpb.PlanOutcome{Outcome: &pluginpb.PlanOutcome_Failure{Failure: strings.ToValidUTF8(r.Err.Error(), "\uFFFD")}}
}

func planToProto(p *Plan) (*pluginpb.PlanSpec, error) {
	out := &pluginpb.PlanSpec{Result: p.Result, ResultStep: int32(p.ResultStep), Steps: make([]*pluginpb.PlanStep, len(p.Steps))}
	for i, s := range p.Steps {
		st := &pluginpb.PlanStep{Sql: s.SQL, Bind: s.Bind, Expect: string(s.Expect), Args: make([]*pluginpb.PlanArg, len(s.Args))}
		if s.Else != nil {
			st.Else = &pluginpb.Refusal{Code: string(s.Else.Code), Message: strings.ToValidUTF8(s.Else.Message, "\uFFFD")}
		}
		for j, a := range s.Args {
			if a.Ref != "" {
				st.Args[j] = &pluginpb.PlanArg{Arg: &pluginpb.PlanArg_Ref{Ref: a.Ref}}
				continue
			}
			v, err := toValue(a.Value)
			if err != nil {
				return nil, fmt.Errorf("plan step %d argument %d: %w", i+1, j+1, err)
			}
			st.Args[j] = &pluginpb.PlanArg{Arg: &pluginpb.PlanArg_Value{Value: v}}
		}
		out.Steps[i] = st
	}
	return out, nil
}

func planFromProto(p *pluginpb.PlanSpec) (*Plan, error) {
	out := &Plan{Result: p.Result, ResultStep: int(p.ResultStep), Steps: make([]Step, len(p.Steps))}
	for i, s := range p.Steps {
		st := Step{SQL: s.Sql, Bind: s.Bind, Expect: Expect(s.Expect), Args: make([]Arg, len(s.Args))}
		if s.Else != nil {
			st.Else = &Error{Code: Code(s.Else.Code), Message: s.Else.Message}
		}
		for j, a := range s.Args {
			switch x := a.GetArg().(type) {
			case *pluginpb.PlanArg_Ref:
				st.Args[j] = Arg{Ref: x.Ref}
			case *pluginpb.PlanArg_Value:
				v, err := fromValue(x.Value)
				if err != nil {
					return nil, fmt.Errorf("plan step %d argument %d: %w", i+1, j+1, err)
				}
				st.Args[j] = Arg{Value: v}
			default:
				return nil, fmt.Errorf("plan step %d argument %d: empty", i+1, j+1)
			}
		}
		out.Steps[i] = st
	}
	return out, nil
}

// remoteDB is the DB a plugin's handler gets: each call goes back to the
// worker, which runs it in the transaction of call callID.
type remoteDB struct {
	client pluginpb.DBClient
	callID uint64
}

var _ DB = (*remoteDB)(nil)

func (d *remoteDB) Exec(ctx context.Context, query string, args ...any) (ExecResult, error) {
	vals, err := toValues(args)
	if err != nil {
		return ExecResult{}, err
	}
	resp, err := d.client.Exec(ctx, &pluginpb.ExecRequest{CallId: d.callID, Query: query, Args: vals})
	if err != nil {
		return ExecResult{}, remoteDBError(err)
	}
	return ExecResult{LastInsertID: resp.LastInsertId, RowsAffected: resp.RowsAffected}, nil
}

func (d *remoteDB) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	vals, err := toValues(args)
	if err != nil {
		return Rows{}, err
	}
	resp, err := d.client.Query(ctx, &pluginpb.QueryRequest{CallId: d.callID, Query: query, Args: vals})
	if err != nil {
		return Rows{}, remoteDBError(err)
	}
	out := Rows{Columns: resp.Columns}
	if len(resp.Rows) > 0 {
		out.Values = make([][]any, len(resp.Rows))
	}
	for i, row := range resp.Rows {
		vals, err := fromValues(row.Values)
		if err != nil {
			return Rows{}, fmt.Errorf("row %d: %w", i, err)
		}
		out.Values[i] = vals
	}
	return out, nil
}

// remoteDBError turns the DB service's status back into the error the
// database gave (the message is all that crosses).
func remoteDBError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.FailedPrecondition:
		return fmt.Errorf("%w: %s", ErrCallNotOpen, st.Message())
	case codes.Unknown:
		return errors.New(st.Message())
	}
	return err
}

// ---- SQL values ----

// toValue converts a Go value to the wire. The accepted types are the
// worker's (internal/wire.NewValue): the in-process and the plugin path
// record the same arguments for replication.
func toValue(v any) (*pluginpb.Value, error) {
	switch x := v.(type) {
	case nil:
		return &pluginpb.Value{V: &pluginpb.Value_Null{Null: true}}, nil
	case int64:
		return &pluginpb.Value{V: &pluginpb.Value_Int64{Int64: x}}, nil
	case int:
		return &pluginpb.Value{V: &pluginpb.Value_Int64{Int64: int64(x)}}, nil
	case int32:
		return &pluginpb.Value{V: &pluginpb.Value_Int64{Int64: int64(x)}}, nil
	case uint32:
		return &pluginpb.Value{V: &pluginpb.Value_Int64{Int64: int64(x)}}, nil
	case bool:
		var i int64
		if x {
			i = 1
		}
		return &pluginpb.Value{V: &pluginpb.Value_Int64{Int64: i}}, nil
	case float64:
		return &pluginpb.Value{V: &pluginpb.Value_Float64{Float64: x}}, nil
	case string:
		return &pluginpb.Value{V: &pluginpb.Value_Text{Text: []byte(x)}}, nil
	case []byte:
		return &pluginpb.Value{V: &pluginpb.Value_Blob{Blob: x}}, nil
	default:
		return nil, fmt.Errorf("unsupported SQL value of type %T", v)
	}
}

func toValues(args []any) ([]*pluginpb.Value, error) {
	if len(args) == 0 {
		return nil, nil
	}
	out := make([]*pluginpb.Value, len(args))
	for i, a := range args {
		v, err := toValue(a)
		if err != nil {
			return nil, fmt.Errorf("argument %d: %w", i+1, err)
		}
		out[i] = v
	}
	return out, nil
}

func fromValue(v *pluginpb.Value) (any, error) {
	switch x := v.GetV().(type) {
	case nil, *pluginpb.Value_Null:
		return nil, nil
	case *pluginpb.Value_Int64:
		return x.Int64, nil
	case *pluginpb.Value_Float64:
		return x.Float64, nil
	case *pluginpb.Value_Text:
		return string(x.Text), nil
	case *pluginpb.Value_Blob:
		if x.Blob == nil {
			return []byte{}, nil
		}
		return x.Blob, nil
	default:
		return nil, fmt.Errorf("unknown SQL value %T", x)
	}
}

func fromValues(vals []*pluginpb.Value) ([]any, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := make([]any, len(vals))
	for i, v := range vals {
		x, err := fromValue(v)
		if err != nil {
			return nil, fmt.Errorf("value %d: %w", i+1, err)
		}
		out[i] = x
	}
	return out, nil
}
