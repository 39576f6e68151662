// Command misbehave is a test plugin whose operations misbehave on
// purpose (panic, hang past the deadline, return garbage, use the DB after
// the call) so pluginhost's tests can check each fails only its own call.
// Build with -ldflags "-X main.version=2" for a second version.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

var version = "1"

type handler struct{}

var (
	lateMu   sync.Mutex
	lateDone bool
	lateErr  string
)

func (handler) Info(ctx context.Context) (pluginapi.Info, error) {
	return pluginapi.Info{
		Name:    "misbehave",
		Version: version,
		Ops: []pluginapi.Op{
			{Name: "misbehave.ok", Kind: pluginapi.Read},
			{Name: "misbehave.insert", Kind: pluginapi.Write},
			{Name: "misbehave.panic", Kind: pluginapi.Write},
			{Name: "misbehave.hang", Kind: pluginapi.Write},
			{Name: "misbehave.garbage", Kind: pluginapi.Read},
			{Name: "misbehave.deadline", Kind: pluginapi.Read},
			{Name: "misbehave.slow", Kind: pluginapi.Read},
			{Name: "misbehave.late", Kind: pluginapi.Write},
			{Name: "misbehave.late_result", Kind: pluginapi.Read},
			{Name: "misbehave.fail", Kind: pluginapi.Read},
			{Name: "misbehave.refuse", Kind: pluginapi.Read},
		},
		Migrations: []pluginapi.Migration{{Version: 1, Statements: []string{`CREATE TABLE misbehave (v TEXT NOT NULL)`}}},
	}, nil
}

func (handler) Execute(ctx context.Context, op string, params json.RawMessage, db pluginapi.DB) (json.RawMessage, error) {
	var p struct {
		V  string `json:"v"`
		MS int    `json:"ms"`
	}
	if err := pluginapi.DecodeParams(params, &p); err != nil {
		return nil, err
	}
	me := map[string]any{"version": version, "pid": os.Getpid()}
	switch op {
	case "misbehave.ok":
		hclog.Default().Info("misbehave answering", "op", op, "answer_pid", os.Getpid())
	case "misbehave.insert":
		if _, err := db.Exec(ctx, `INSERT INTO misbehave (v) VALUES (?)`, p.V); err != nil {
			return nil, err
		}
	case "misbehave.panic":
		if _, err := db.Exec(ctx, `INSERT INTO misbehave (v) VALUES (?)`, p.V); err != nil {
			return nil, err
		}
		panic("misbehave: deliberate panic")
	case "misbehave.hang":
		if _, err := db.Exec(ctx, `INSERT INTO misbehave (v) VALUES (?)`, p.V); err != nil {
			return nil, err
		}
		select {} // ignores ctx
	case "misbehave.garbage":
		return json.RawMessage(`{not json`), nil
	case "misbehave.deadline":
		dl, ok := ctx.Deadline()
		me["has_deadline"] = ok
		me["remaining_ms"] = time.Until(dl).Milliseconds()
	case "misbehave.slow":
		if _, err := db.Query(ctx, `SELECT 1`); err != nil { // tells the test the call started
			return nil, err
		}
		select {
		case <-time.After(time.Duration(p.MS) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case "misbehave.late":
		go func() {
			time.Sleep(100 * time.Millisecond)
			_, err := db.Exec(context.Background(), `INSERT INTO misbehave (v) VALUES (?)`, p.V)
			lateMu.Lock()
			defer lateMu.Unlock()
			lateDone = true
			if err != nil {
				lateErr = err.Error()
			}
		}()
	case "misbehave.late_result":
		lateMu.Lock()
		me["done"], me["err"] = lateDone, lateErr
		lateMu.Unlock()
	case "misbehave.fail":
		return nil, errors.New("misbehave: deliberate failure")
	case "misbehave.refuse":
		return nil, pluginapi.Errorf(pluginapi.CodeConflict, "misbehave refuses")
	default:
		return nil, pluginapi.Errorf(pluginapi.CodeInvalid, "unknown operation %q", op)
	}
	return json.Marshal(me)
}

func main() { pluginapi.Serve(handler{}) }
