// Package reqid carries a request id from the first hop to the last:
// Traefik (or the client) sends X-Request-ID, or the first service makes
// one; every service answers it in the X-Request-ID response header and in
// its error bodies, passes it on to the services it calls, and logs it as
// request_id on every line about the request.
//
// The id is checked before it is used: a client's id is taken only when it
// is 1..128 characters of [A-Za-z0-9._:-], otherwise a new one replaces it,
// so that nothing unvalidated reaches a log line or a reply.
//
// Code logs with the request's context (log.WarnContext(r.Context(), ...))
// and a logger whose handler is wrapped by NewHandler: the wrapper adds
// request_id to every record logged with a context that carries one.
package reqid

import (
	"context"
	"encoding/hex"
	"log/slog"
	"math/rand/v2"
	"net/http"
)

// Header is the HTTP header that carries the id, on requests and replies.
const Header = "X-Request-ID"

// headerKey is Header in Go's canonical form, to index http.Header without
// canonicalising on every request.
const headerKey = "X-Request-Id"

// Attr is the log attribute (and the JSON error body field) that holds the
// id.
const Attr = "request_id"

// MaxLen is the longest id taken from a client.
const MaxLen = 128

// Valid reports whether s may be used as a request id as it is: 1..MaxLen
// characters of [A-Za-z0-9._:-].
func Valid(s string) bool {
	if len(s) == 0 || len(s) > MaxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// New returns a fresh id: 16 random bytes in hex (32 characters). It is an
// id, not a secret: the runtime's per-thread ChaCha8 generator
// (math/rand/v2) makes it without a lock or a system call.
func New() string {
	var b [16]byte
	a, c := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		b[i] = byte(a >> (8 * i))
		b[8+i] = byte(c >> (8 * i))
	}
	return hex.EncodeToString(b[:])
}

// Take returns s when it is Valid, else a new id.
func Take(s string) string {
	if Valid(s) {
		return s
	}
	return New()
}

type ctxKey struct{}

// WithID returns ctx carrying id.
func WithID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the id ctx carries, or "".
func FromContext(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// FromResponse returns the id Middleware set on w's header, or "": what an
// error reply puts beside "error".
func FromResponse(w http.ResponseWriter) string {
	if v := w.Header()[headerKey]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set sets the id on an outgoing request when ctx carries one, so that the
// service called logs the same id.
func Set(ctx context.Context, h http.Header) {
	if id := FromContext(ctx); id != "" {
		h[headerKey] = []string{id}
	}
}

// Middleware takes the request's X-Request-ID when it is valid, or makes a
// new id, sets it on the response header before next runs (so every reply,
// error or not, carries it) and puts it in the request's context.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in string
		if v := r.Header[headerKey]; len(v) > 0 {
			in = v[0]
		}
		id := Take(in)
		w.Header()[headerKey] = []string{id}
		next.ServeHTTP(w, r.WithContext(WithID(r.Context(), id)))
	})
}

// Handler is a slog.Handler that adds request_id to every record logged
// with a context carrying an id.
type Handler struct {
	next slog.Handler
}

var _ slog.Handler = (*Handler)(nil)

// NewHandler wraps h (once: a Handler is returned as it is).
func NewHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(*Handler); ok {
		return h
	}
	return &Handler{next: h}
}

// Logger returns l with its handler wrapped by NewHandler.
func Logger(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(*Handler); ok {
		return l
	}
	return slog.New(NewHandler(l.Handler()))
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if id := FromContext(ctx); id != "" {
			r.AddAttrs(slog.String(Attr, id))
		}
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{next: h.next.WithAttrs(as)}
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name)}
}
