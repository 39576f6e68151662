package pluginapi

import (
	"context"
	"encoding/json"
	"fmt"
)

// OpFunc runs one operation; its result is encoded as JSON.
type OpFunc func(ctx context.Context, params json.RawMessage, db DB) (any, error)

// TableOp is one operation of a Table.
type TableOp struct {
	Name string
	Kind Kind
	Run  OpFunc
}

// Table is a Handler made of a list of operations: what most plugins need,
// so that each only writes its operations. Execute refuses an unknown
// operation (CodeInvalid), passes refusals on, wraps other errors with the
// handler's and the operation's names, and encodes the result.
type Table struct {
	Name       string
	Version    string
	Ops        []TableOp // in the order Info lists them
	Migrations []Migration
}

var _ Handler = (*Table)(nil)

// Info implements Handler.
func (t *Table) Info(context.Context) (Info, error) {
	info := Info{Name: t.Name, Version: t.Version, Ops: make([]Op, 0, len(t.Ops))}
	for _, op := range t.Ops {
		info.Ops = append(info.Ops, Op{Name: op.Name, Kind: op.Kind})
	}
	for _, m := range t.Migrations {
		info.Migrations = append(info.Migrations, Migration{
			Version:    m.Version,
			Statements: append([]string(nil), m.Statements...),
		})
	}
	return info, nil
}

// Execute implements Handler.
func (t *Table) Execute(ctx context.Context, op string, params json.RawMessage, db DB) (json.RawMessage, error) {
	var run OpFunc
	for _, o := range t.Ops {
		if o.Name == op {
			run = o.Run
			break
		}
	}
	if run == nil {
		return nil, Errorf(CodeInvalid, "unknown operation %q", op)
	}
	if db == nil {
		return nil, fmt.Errorf("%s: %s: no database handle", t.Name, op)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", t.Name, op, err)
	}
	res, err := run(ctx, params, db)
	if err != nil {
		if _, refused := AsError(err); refused {
			return nil, err
		}
		return nil, fmt.Errorf("%s: %s: %w", t.Name, op, err)
	}
	out, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: encoding result: %w", t.Name, op, err)
	}
	return out, nil
}
