package pluginapi

import (
	"context"
	"encoding/json"
	"fmt"
)

// OpFunc runs one operation; its result is encoded as JSON.
type OpFunc func(ctx context.Context, params json.RawMessage, db DB) (any, error)

// PlanFunc describes one operation as a Plan from its parameters alone (it
// gets no database: what depends on the data is a step's guard or bound
// value). A refusal it can decide from the parameters is a returned *Error.
type PlanFunc func(params json.RawMessage) (*Plan, error)

// TableOp is one operation of a Table: planned (Plan) or interactive
// (Run), exactly one of the two.
type TableOp struct {
	Name string
	Kind Kind
	Run  OpFunc
	Plan PlanFunc
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

var (
	_ Handler = (*Table)(nil)
	_ Planner = (*Table)(nil)
)

func (t *Table) op(name string) *TableOp {
	for i := range t.Ops {
		if t.Ops[i].Name == name {
			return &t.Ops[i]
		}
	}
	return nil
}

// Plan implements Planner: planned operations answer their plan,
// interactive ones ErrInteractive.
func (t *Table) Plan(ctx context.Context, calls []Call) []PlanResult {
	out := make([]PlanResult, len(calls))
	for i, c := range calls {
		o := t.op(c.Op)
		switch {
		case o == nil:
			out[i].Err = Errorf(CodeInvalid, "unknown operation %q", c.Op)
		case o.Plan == nil:
			out[i].Err = ErrInteractive
		default:
			out[i].Plan, out[i].Err = t.plan(o, c.Params)
		}
	}
	return out
}

func (t *Table) plan(o *TableOp, params json.RawMessage) (*Plan, error) {
	p, err := o.Plan(params)
	if err != nil {
		if _, refused := AsError(err); refused {
			return nil, err
		}
		return nil, fmt.Errorf("%s: %s: %w", t.Name, o.Name, err)
	}
	if err := p.Check(); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", t.Name, o.Name, err)
	}
	return p, nil
}

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
	o := t.op(op)
	if o == nil || (o.Run == nil && o.Plan == nil) {
		return nil, Errorf(CodeInvalid, "unknown operation %q", op)
	}
	if db == nil {
		return nil, fmt.Errorf("%s: %s: no database handle", t.Name, op)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", t.Name, op, err)
	}
	if o.Plan != nil {
		p, err := t.plan(o, params)
		if err != nil {
			return nil, err
		}
		res, err := RunPlan(ctx, db, p)
		if err != nil {
			if _, refused := AsError(err); refused {
				return nil, err
			}
			return nil, fmt.Errorf("%s: %s: %w", t.Name, op, err)
		}
		return res, nil
	}
	res, err := o.Run(ctx, params, db)
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
