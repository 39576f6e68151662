package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/rideshare-dbaas/rideshare/internal/reqid"
)

// Error is a request failure with the status to answer and a message for
// the client.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Msg) }

// BadRequest returns a 400 Error.
func BadRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf(format, args...)}
}

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"internal error: reply not encodable"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// errorBody is every error reply: the message, and the request's id
// (package reqid) when the reply carries one in its X-Request-ID header.
type errorBody struct {
	Error     string `json:"error"`
	RequestID string `json:"request_id,omitempty"`
}

// WriteError answers status with {"error": msg, "request_id": id}, the id
// being the one reqid.Middleware set on w (none without it).
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, errorBody{Error: msg, RequestID: reqid.FromResponse(w)})
}

// Fail answers e.
func Fail(w http.ResponseWriter, e *Error) { WriteError(w, e.Status, e.Msg) }

// NoContent answers 204 with an empty body.
func NoContent(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) }

// Empty is the `{}` body of the contract.
var Empty = struct{}{}

// maxDrain bounds how much of an oversized body is read and thrown away
// before answering 413, so that a client still sending gets the answer
// instead of a reset connection.
const maxDrain = 32 << 20

// ReadBody reads the request body, at most max bytes: a larger body gets a
// 413 Error.
func ReadBody(r *http.Request, max int64) ([]byte, *Error) {
	tooLarge := &Error{Status: http.StatusRequestEntityTooLarge,
		Msg: fmt.Sprintf("request body is larger than the %d-byte limit", max)}
	if r.ContentLength > max {
		_, _ = io.CopyN(io.Discard, r.Body, maxDrain)
		return nil, tooLarge
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, BadRequest("could not read the request body: %v", err)
	}
	if int64(len(b)) > max {
		_, _ = io.CopyN(io.Discard, r.Body, maxDrain)
		return nil, tooLarge
	}
	return b, nil
}

// DecodeJSON decodes body, which must hold exactly one JSON object, into
// the struct dst. It refuses invalid UTF-8, malformed JSON, fields dst does
// not have, values of the wrong type and anything after the object, each
// with a 400 that says which.
func DecodeJSON(body []byte, dst any) *Error {
	if len(bytes.TrimSpace(body)) == 0 {
		return BadRequest("request body is empty: a JSON object is required")
	}
	if !utf8.Valid(body) {
		return BadRequest("request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return BadRequest("%s", describeJSONError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return BadRequest("unexpected data after the JSON object")
	}
	return nil
}

func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Sprintf("request body must be a JSON object, not %s", article(typ.Value))
		}
		return fmt.Sprintf("field %q must be %s, not %s", typ.Field, typeName(typ.Type), article(typ.Value))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of input"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// typeName names a Go type the way a JSON user thinks of it.
func typeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}

func article(jsonKind string) string {
	switch {
	case strings.HasPrefix(jsonKind, "number"):
		return "a number"
	case jsonKind == "array" || jsonKind == "object":
		return "an " + jsonKind
	case jsonKind == "":
		return "that value"
	}
	return "a " + jsonKind
}
