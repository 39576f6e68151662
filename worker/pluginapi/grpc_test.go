package pluginapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

// funcHandler is a Handler made of a function (the plugin side of these
// tests; the host side is the real GRPCClient over a real gRPC connection).
type funcHandler struct {
	info pluginapi.Info
	exec func(ctx context.Context, op string, params json.RawMessage, db pluginapi.DB) (json.RawMessage, error)
}

func (f *funcHandler) Info(context.Context) (pluginapi.Info, error) { return f.info, nil }
func (f *funcHandler) Execute(ctx context.Context, op string, params json.RawMessage, db pluginapi.DB) (json.RawMessage, error) {
	return f.exec(ctx, op, params, db)
}

// recDB is the host's DB in these tests: it records what it is asked and
// answers Query with rows.
type recDB struct {
	mu    sync.Mutex
	execs []recStmt
	rows  pluginapi.Rows
	err   error
}

type recStmt struct {
	Query string
	Args  []any
}

func (d *recDB) Exec(ctx context.Context, q string, args ...any) (pluginapi.ExecResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return pluginapi.ExecResult{}, d.err
	}
	d.execs = append(d.execs, recStmt{q, args})
	return pluginapi.ExecResult{LastInsertID: 41, RowsAffected: int64(len(d.execs))}, nil
}

func (d *recDB) Query(ctx context.Context, q string, args ...any) (pluginapi.Rows, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.execs = append(d.execs, recStmt{"QUERY " + q, args})
	return d.rows, d.err
}

func (d *recDB) stmts() []recStmt {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]recStmt(nil), d.execs...)
}

// mustConn serves h through go-plugin's in-memory test connection (a real
// gRPC server and client, with the GRPCBroker) and returns the host side.
func mustConn(t *testing.T, h pluginapi.Handler) *pluginapi.GRPCClient {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{
		pluginapi.PluginName: &pluginapi.HandlerPlugin{Impl: h},
	})
	// Close asks the server to stop (go-plugin's controller); stopping it
	// here as well would race inside go-plugin.
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(pluginapi.PluginName)
	if err != nil {
		t.Fatalf("dispense: %v", err)
	}
	c, ok := raw.(*pluginapi.GRPCClient)
	if !ok {
		t.Fatalf("dispensed %T", raw)
	}
	return c
}

func TestGRPCAdapter_Info(t *testing.T) {
	want := pluginapi.Info{
		Name: "t", Version: "1.2.3",
		Ops:        []pluginapi.Op{{Name: "a.read", Kind: pluginapi.Read}, {Name: "a.write", Kind: pluginapi.Write}},
		Migrations: []pluginapi.Migration{{Version: 1, Statements: []string{"CREATE TABLE a (x)", "CREATE INDEX a_x ON a (x)"}}},
	}
	c := mustConn(t, &funcHandler{info: want})
	got, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("info = %+v, want %+v", got, want)
	}
}

// SQL values of every storage class cross both ways unchanged, with Go
// ints and bools normalised to int64 as the worker's own DB does.
func TestGRPCAdapter_ValuesRoundTrip(t *testing.T) {
	rows := pluginapi.Rows{
		Columns: []string{"n", "i", "f", "s", "b", "e"},
		Values: [][]any{
			{nil, int64(-7), 1.5, "héllo \xff", []byte{0, 1, 2}, []byte{}},
			{nil, int64(1 << 62), -0.25, "", []byte("x"), nil},
		},
	}
	var seen pluginapi.Rows
	var res pluginapi.ExecResult
	h := &funcHandler{exec: func(ctx context.Context, op string, params json.RawMessage, db pluginapi.DB) (json.RawMessage, error) {
		var err error
		res, err = db.Exec(ctx, "INSERT x", nil, int64(7), 2.5, "s\x00t", []byte{9}, 3, int32(4), uint32(5), true, false)
		if err != nil {
			return nil, err
		}
		seen, err = db.Query(ctx, "SELECT y", "k")
		if err != nil {
			return nil, err
		}
		return params, nil
	}}
	db := &recDB{rows: rows}
	c := mustConn(t, h)
	out, err := c.Execute(context.Background(), "op", json.RawMessage(`{"a":1}`), db)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"a":1}` {
		t.Errorf("result = %s", out)
	}
	if res != (pluginapi.ExecResult{LastInsertID: 41, RowsAffected: 1}) {
		t.Errorf("exec result = %+v", res)
	}
	wantStmts := []recStmt{
		{"INSERT x", []any{nil, int64(7), 2.5, "s\x00t", []byte{9}, int64(3), int64(4), int64(5), int64(1), int64(0)}},
		{"QUERY SELECT y", []any{"k"}},
	}
	if got := db.stmts(); !reflect.DeepEqual(got, wantStmts) {
		t.Errorf("host saw %#v\nwant %#v", got, wantStmts)
	}
	if !reflect.DeepEqual(seen, rows) {
		t.Errorf("plugin saw rows %#v\nwant %#v", seen, rows)
	}
}

func TestGRPCAdapter_Outcomes(t *testing.T) {
	h := &funcHandler{exec: func(ctx context.Context, op string, params json.RawMessage, db pluginapi.DB) (json.RawMessage, error) {
		switch op {
		case "refuse":
			return nil, fmt.Errorf("wrapped: %w", pluginapi.Errorf(pluginapi.CodeConflict, "taken"))
		case "fail":
			return nil, errors.New("disk on fire")
		case "garbage":
			return json.RawMessage(`{"a":`), nil
		case "nil":
			return nil, nil
		case "badcode":
			return nil, &pluginapi.Error{Code: "weird", Message: "?"}
		case "dberr":
			_, err := db.Exec(ctx, "BAD SQL")
			return nil, err
		}
		return json.RawMessage(`true`), nil
	}}
	c := mustConn(t, h)
	db := &recDB{err: errors.New("near \"BAD\": syntax error")}
	tests := []struct {
		name  string
		check func(res json.RawMessage, err error) bool
	}{
		{"refuse", func(_ json.RawMessage, err error) bool {
			pe, ok := pluginapi.AsError(err)
			return ok && errors.Is(err, pluginapi.ErrConflict) && pe.Message == "taken"
		}},
		{"fail", func(_ json.RawMessage, err error) bool {
			var re *pluginapi.RemoteError
			_, refused := pluginapi.AsError(err)
			return errors.As(err, &re) && re.Message == "disk on fire" && !refused
		}},
		{"garbage", func(_ json.RawMessage, err error) bool { return errors.Is(err, pluginapi.ErrInvalidResult) }},
		{"badcode", func(_ json.RawMessage, err error) bool { return errors.Is(err, pluginapi.ErrInvalidResult) }},
		{"nil", func(res json.RawMessage, err error) bool { return err == nil && string(res) == "null" }},
		{"dberr", func(_ json.RawMessage, err error) bool {
			var re *pluginapi.RemoteError
			return errors.As(err, &re) && re.Message == `near "BAD": syntax error`
		}},
		{"ok", func(res json.RawMessage, err error) bool { return err == nil && string(res) == "true" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := c.Execute(context.Background(), tt.name, nil, db)
			if !tt.check(res, err) {
				t.Fatalf("Execute(%s) = %s, %v (%T)", tt.name, res, err, err)
			}
		})
	}
}

// The caller's deadline is the plugin's deadline.
func TestGRPCAdapter_DeadlineCrosses(t *testing.T) {
	h := &funcHandler{exec: func(ctx context.Context, op string, params json.RawMessage, db pluginapi.DB) (json.RawMessage, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			return nil, errors.New("no deadline")
		}
		return json.Marshal(time.Until(dl).Milliseconds())
	}}
	c := mustConn(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	res, err := c.Execute(ctx, "x", nil, &recDB{})
	if err != nil {
		t.Fatal(err)
	}
	var ms int64
	if err := json.Unmarshal(res, &ms); err != nil || ms <= 0 || ms > 3000 {
		t.Fatalf("plugin saw %s ms left (%v)", res, err)
	}
}

// A DB used after its call returned is refused, and the host's DB never
// sees the statement.
func TestGRPCAdapter_DBClosedAfterCall(t *testing.T) {
	late := make(chan error, 1)
	h := &funcHandler{exec: func(ctx context.Context, op string, params json.RawMessage, db pluginapi.DB) (json.RawMessage, error) {
		go func() {
			time.Sleep(50 * time.Millisecond)
			_, err := db.Exec(context.Background(), "LATE")
			late <- err
		}()
		return json.RawMessage(`{}`), nil
	}}
	c := mustConn(t, h)
	db := &recDB{}
	if _, err := c.Execute(context.Background(), "x", nil, db); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-late:
		if !errors.Is(err, pluginapi.ErrCallNotOpen) {
			t.Fatalf("late exec: %v, want ErrCallNotOpen", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("late exec never returned")
	}
	if got := db.stmts(); len(got) != 0 {
		t.Fatalf("host DB saw %v", got)
	}
}

// Concurrent calls share one brokered DB connection; each call's
// statements reach its own DB only.
func TestGRPCAdapter_ConcurrentCallsRouteToOwnDB(t *testing.T) {
	h := &funcHandler{exec: func(ctx context.Context, op string, params json.RawMessage, db pluginapi.DB) (json.RawMessage, error) {
		for i := 0; i < 5; i++ {
			if _, err := db.Exec(ctx, op, int64(i)); err != nil {
				return nil, err
			}
		}
		return json.RawMessage(`{}`), nil
	}}
	c := mustConn(t, h)
	const n = 16
	dbs := make([]*recDB, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range dbs {
		dbs[i] = &recDB{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Execute(context.Background(), fmt.Sprintf("op%d", i), nil, dbs[i]); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, db := range dbs {
		got := db.stmts()
		if len(got) != 5 {
			t.Fatalf("db %d saw %d statements", i, len(got))
		}
		for j, s := range got {
			if s.Query != fmt.Sprintf("op%d", i) || !reflect.DeepEqual(s.Args, []any{int64(j)}) {
				t.Fatalf("db %d statement %d = %+v", i, j, s)
			}
		}
	}
}
