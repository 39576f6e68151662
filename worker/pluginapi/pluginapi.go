// Package pluginapi is the one contract between the worker and the code that
// implements database operations (the "handlers").
//
// The worker owns the database, the transaction, write ids, sequence numbers
// and replication. A handler only declares its schema migrations and its
// operations, and runs an operation through the DB the worker hands it. Every
// type here can cross a process boundary: parameters and results are JSON,
// SQL values are the five SQLite storage classes, and every call takes a
// context so deadlines travel with the request. That is what lets the same
// interface be served in-process (unit tests) or by a go-plugin binary.
package pluginapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// Kind says whether an operation reads or writes.
type Kind string

const (
	// Read operations run on slaves, in a read-only transaction.
	Read Kind = "read"
	// Write operations run on the master inside the write transaction; what
	// they execute is replicated.
	Write Kind = "write"
)

// Op declares one operation a handler serves.
type Op struct {
	Name string `json:"name"` // e.g. "users.add"; unique across handlers
	Kind Kind   `json:"kind"`
}

// Migration is one schema step. Versions are per handler and start at 1;
// the worker applies each version once, in order, as a replicated write.
type Migration struct {
	Version    int      `json:"version"`
	Statements []string `json:"statements"`
}

// Info describes a handler.
type Info struct {
	Name       string      `json:"name"`
	Version    string      `json:"version"`
	Ops        []Op        `json:"ops"`
	Migrations []Migration `json:"migrations"`
}

// Handler is what a plugin implements.
type Handler interface {
	// Info lists the handler's operations and migrations.
	Info(ctx context.Context) (Info, error)
	// Execute runs op with params against db and returns the JSON result.
	// A returned *Error is the operation's answer to the client (for
	// example "username taken"); any other error is a handler failure.
	Execute(ctx context.Context, op string, params json.RawMessage, db DB) (json.RawMessage, error)
}

// DB is the database handle the worker lends a handler for one call. It is
// valid only during that call. For a write it is the master's open write
// transaction; for a read a read-only snapshot.
type DB interface {
	Exec(ctx context.Context, query string, args ...any) (ExecResult, error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
}

// ExecResult is what an Exec reports.
type ExecResult struct {
	LastInsertID int64 `json:"last_insert_id"`
	RowsAffected int64 `json:"rows_affected"`
}

// Rows is a fully read query result. Values are nil, int64, float64, string
// or []byte: SQLite's storage classes, which also cross the plugin boundary.
type Rows struct {
	Columns []string `json:"columns"`
	Values  [][]any  `json:"values"`
}

// Code classifies an operation's refusal.
type Code string

const (
	CodeInvalid  Code = "invalid"   // parameters are wrong
	CodeNotFound Code = "not_found" // the thing named does not exist
	CodeConflict Code = "conflict"  // the request contradicts stored data
)

// Error is an operation's refusal: an answer, not a failure. The worker
// commits nothing of the operation that returned it.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Is lets errors.Is(err, ErrNotFound) match any *Error of the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	ErrInvalid  = &Error{Code: CodeInvalid}
	ErrNotFound = &Error{Code: CodeNotFound}
	ErrConflict = &Error{Code: CodeConflict}
)

// Errorf builds an *Error.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// DecodeParams decodes params strictly into v, a pointer to a struct:
// unknown fields, wrong types, trailing data, and — stricter than
// encoding/json, which matches names case-insensitively and lets a later
// duplicate win — a key that is not exactly one of v's json names or that
// appears twice are all CodeInvalid errors naming the problem.
func DecodeParams(params json.RawMessage, v any) error {
	if len(params) == 0 || string(params) == "null" {
		params = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(params))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return Errorf(CodeInvalid, "parameter %q must be %s, not %s", te.Field, te.Type.String(), te.Value)
		}
		return Errorf(CodeInvalid, "bad parameters: %v", err)
	}
	if dec.More() {
		return Errorf(CodeInvalid, "bad parameters: trailing data")
	}
	return exactKeys(params, v)
}

// exactKeys checks every top-level key of params is exactly one of the json
// names of v's struct fields, given once.
func exactKeys(params json.RawMessage, v any) error {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	allowed := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" {
			name = t.Field(i).Name
		}
		allowed[name] = true
	}
	dec := json.NewDecoder(bytes.NewReader(params))
	first, err := dec.Token()
	if err != nil {
		return Errorf(CodeInvalid, "bad parameters: %v", err)
	}
	if first == nil { // null, with spaces around it
		return nil
	}
	if first != json.Delim('{') {
		return Errorf(CodeInvalid, "bad parameters: not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Errorf(CodeInvalid, "bad parameters: %v", err)
		}
		key, _ := tok.(string)
		if !allowed[key] {
			return Errorf(CodeInvalid, "bad parameters: unknown field %q", key)
		}
		if seen[key] {
			return Errorf(CodeInvalid, "bad parameters: field %q given twice", key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return Errorf(CodeInvalid, "bad parameters: %v", err)
		}
	}
	return nil
}
