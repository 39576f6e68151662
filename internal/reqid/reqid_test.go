package reqid

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestMiddleware(t *testing.T) {
	long := strings.Repeat("a", MaxLen)
	tests := []struct {
		name   string
		header []string // nil: no header
		keep   bool     // the id is the header's first value
	}{
		{"no header", nil, false},
		{"valid header kept", []string{"t-abc.DEF_1:2"}, true},
		{"longest valid kept", []string{long}, true},
		{"too long replaced", []string{long + "a"}, false},
		{"empty replaced", []string{""}, false},
		{"space replaced", []string{"a b"}, false},
		{"newline replaced", []string{"a\nb"}, false},
		{"quote replaced", []string{`a"b`}, false},
		{"non-ASCII replaced", []string{"é"}, false},
		{"first of two kept", []string{"first", "second"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen, seenAtHandler string
			h := Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen = FromContext(r.Context())
				seenAtHandler = FromResponse(w)
				w.WriteHeader(http.StatusTeapot)
			}))
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, v := range tt.header {
				r.Header.Add(Header, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			got := w.Header().Get(Header)
			if got == "" || got != seen || got != seenAtHandler {
				t.Fatalf("response header %q, context %q, header at the handler %q: want one non-empty id", got, seen, seenAtHandler)
			}
			if !Valid(got) {
				t.Fatalf("id %q is not valid", got)
			}
			if tt.keep && got != tt.header[0] {
				t.Fatalf("id %q, want the client's %q", got, tt.header[0])
			}
			if !tt.keep && len(tt.header) > 0 && got == tt.header[0] {
				t.Fatalf("invalid id %q was kept", got)
			}
		})
	}
}

func TestNew(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := New()
		if len(id) != 32 || !Valid(id) {
			t.Fatalf("New() = %q", id)
		}
		if seen[id] {
			t.Fatalf("New() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestHandler_AddsRequestID(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewHandler(slog.NewJSONHandler(&buf, nil))).With("component", "x")
	ctx := WithID(context.Background(), "t-123")
	log.InfoContext(ctx, "with id", "k", 1)
	log.Info("without id")
	log.With("more", true).WarnContext(ctx, "derived logger")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	want := []string{"t-123", "", "t-123"}
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		got, _ := m[Attr].(string)
		if got != want[i] {
			t.Errorf("line %d: %s = %q, want %q (%s)", i, Attr, got, want[i], l)
		}
		if m["component"] != "x" {
			t.Errorf("line %d lost the logger's attributes: %s", i, l)
		}
	}
	if l := Logger(log); l.Handler() != log.Handler() {
		t.Error("Logger wrapped an already wrapped logger again")
	}
}

func TestSet(t *testing.T) {
	h := http.Header{}
	Set(context.Background(), h)
	if len(h) != 0 {
		t.Fatalf("set without an id: %v", h)
	}
	Set(WithID(context.Background(), "abc"), h)
	if h.Get(Header) != "abc" {
		t.Fatalf("header %v", h)
	}
}

func BenchmarkMiddleware(b *testing.B) {
	h := Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set(Header, "t-0123456789abcdef")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = New()
	}
}
