package pluginapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// A Plan is an operation written down instead of run: the ordered
// statements it executes, with their bound values, the guards that refuse
// it ("this must return a row, else not_found"), the values later
// statements take from earlier results, and where its result comes from.
// A handler that can describe an operation this way (Planner) is asked
// once per call, outside the worker's transaction and without the
// database; the worker then runs the plan itself, in process, inside the
// operation's savepoint (RunPlan), through the same guard and recording as
// any statement. That is one local round trip per call — or per batch of
// calls — instead of one per statement, and a hung plugin holds no
// transaction. Operations that need logic between statements (read, then
// decide in Go) stay interactive: Plan answers ErrInteractive for them and
// the worker calls Execute.
type Plan struct {
	Steps []Step `json:"steps"`
	// Result is the operation's result when ResultStep is 0: constant JSON
	// (default {}).
	Result json.RawMessage `json:"result,omitempty"`
	// ResultStep, when set, is the 1-based step whose first row's first
	// column is the result, as JSON text (SQLite's json_object and
	// json_group_array build it).
	ResultStep int `json:"result_step,omitempty"`
}

// Step is one statement of a Plan.
type Step struct {
	SQL  string `json:"sql"`
	Args []Arg  `json:"args,omitempty"`
	// Bind names the first row's columns, in order, for later steps' Ref
	// arguments.
	Bind []string `json:"bind,omitempty"`
	// Expect is what the statement must return: "" anything, ExpectRow at
	// least one row, ExpectNone no row.
	Expect Expect `json:"expect,omitempty"`
	// Else is the refusal when Expect is not met (the operation's answer,
	// and nothing of it is kept); without it an unmet expectation is a
	// handler failure.
	Else *Error `json:"else,omitempty"`
}

// Expect is a Step's expectation.
type Expect string

const (
	ExpectAny  Expect = ""
	ExpectRow  Expect = "row"
	ExpectNone Expect = "none"
)

// Arg is a step's argument: a value (nil, int64, float64, string or
// []byte, as Exec takes them) or a Ref to a value an earlier step bound.
type Arg struct {
	Value any    `json:"value,omitempty"`
	Ref   string `json:"ref,omitempty"`
}

// V is a value argument.
func V(v any) Arg { return Arg{Value: v} }

// Ref is an argument bound by an earlier step.
func Ref(name string) Arg { return Arg{Ref: name} }

// Call is one operation call to plan.
type Call struct {
	Op     string
	Params json.RawMessage
	// RequestID is the id of the client request the call serves ("" when
	// unknown): one Plan request plans the calls of many requests.
	RequestID string
}

// PlanResult is the plan of one Call, or why there is none: a refusal
// (*Error), ErrInteractive, or a handler failure.
type PlanResult struct {
	Plan *Plan
	Err  error
}

// Planner is implemented by handlers that can describe operations as
// plans. Plan answers every call, in order.
type Planner interface {
	Plan(ctx context.Context, calls []Call) []PlanResult
}

// ErrInteractive is a Planner's answer for an operation that has no plan:
// the worker runs it through Execute.
var ErrInteractive = errors.New("operation has no plan: run it interactively")

// Check returns an error when p is not a plan the worker can run: every
// Ref names a value bound by an earlier step, ResultStep names a step,
// expectations are known.
func (p *Plan) Check() error {
	if p == nil {
		return errors.New("plan: nil")
	}
	bound := map[string]bool{}
	for i, s := range p.Steps {
		if s.SQL == "" {
			return fmt.Errorf("plan step %d: no SQL", i+1)
		}
		switch s.Expect {
		case ExpectAny, ExpectRow, ExpectNone:
		default:
			return fmt.Errorf("plan step %d: unknown expectation %q", i+1, s.Expect)
		}
		if s.Else != nil {
			switch s.Else.Code {
			case CodeInvalid, CodeNotFound, CodeConflict:
			default:
				return fmt.Errorf("plan step %d: unknown refusal code %q", i+1, s.Else.Code)
			}
		}
		for j, a := range s.Args {
			if a.Ref != "" && !bound[a.Ref] {
				return fmt.Errorf("plan step %d argument %d: %q is not bound by an earlier step", i+1, j+1, a.Ref)
			}
		}
		for _, b := range s.Bind {
			if b == "" {
				return fmt.Errorf("plan step %d: empty bind name", i+1)
			}
			bound[b] = true
		}
	}
	if p.ResultStep < 0 || p.ResultStep > len(p.Steps) {
		return fmt.Errorf("plan: result step %d of %d", p.ResultStep, len(p.Steps))
	}
	if p.ResultStep == 0 && len(p.Result) > 0 && !json.Valid(p.Result) {
		return fmt.Errorf("plan: result is not JSON")
	}
	return nil
}

// RunPlan runs p against db: the one implementation of a plan's meaning,
// used by the worker (db is its guarded, recording transaction) and by
// Table.Execute (so a planned operation also runs through Execute).
func RunPlan(ctx context.Context, db DB, p *Plan) (json.RawMessage, error) {
	if err := p.Check(); err != nil {
		return nil, err
	}
	vals := map[string]any{}
	var result json.RawMessage
	for i, s := range p.Steps {
		args := make([]any, len(s.Args))
		for j, a := range s.Args {
			if a.Ref != "" {
				args[j] = vals[a.Ref]
			} else {
				args[j] = a.Value
			}
		}
		isResult := p.ResultStep == i+1
		if s.Expect == ExpectAny && len(s.Bind) == 0 && !isResult {
			if _, err := db.Exec(ctx, s.SQL, args...); err != nil {
				return nil, fmt.Errorf("plan step %d: %w", i+1, err)
			}
			continue
		}
		rows, err := db.Query(ctx, s.SQL, args...)
		if err != nil {
			return nil, fmt.Errorf("plan step %d: %w", i+1, err)
		}
		n := len(rows.Values)
		if (s.Expect == ExpectRow && n == 0) || (s.Expect == ExpectNone && n > 0) {
			if s.Else != nil {
				return nil, &Error{Code: s.Else.Code, Message: s.Else.Message}
			}
			return nil, fmt.Errorf("plan step %d: expected %s, got %d rows", i+1, s.Expect, n)
		}
		if len(s.Bind) > 0 || isResult {
			if n == 0 {
				return nil, fmt.Errorf("plan step %d: no row to bind or take the result from", i+1)
			}
			row := rows.Values[0]
			if len(s.Bind) > len(row) {
				return nil, fmt.Errorf("plan step %d: binds %d values from %d columns", i+1, len(s.Bind), len(row))
			}
			for k, name := range s.Bind {
				vals[name] = row[k]
			}
			if isResult {
				if len(row) == 0 {
					return nil, fmt.Errorf("plan step %d: no column to take the result from", i+1)
				}
				switch v := row[0].(type) {
				case string:
					result = json.RawMessage(v)
				case []byte:
					result = json.RawMessage(v)
				default:
					return nil, fmt.Errorf("plan step %d: the result column is %T, not JSON text", i+1, row[0])
				}
				if !json.Valid(result) {
					return nil, fmt.Errorf("plan step %d: the result is not JSON", i+1)
				}
			}
		}
	}
	if result == nil {
		result = p.Result
	}
	if len(result) == 0 {
		result = json.RawMessage("{}")
	}
	return result, nil
}
