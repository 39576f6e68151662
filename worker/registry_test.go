package worker

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

// fakeHandler is a handler whose Info is fixed; Execute is unused here.
type fakeHandler struct{ info pluginapi.Info }

func (f fakeHandler) Info(context.Context) (pluginapi.Info, error) { return f.info, nil }
func (f fakeHandler) Execute(context.Context, string, json.RawMessage, pluginapi.DB) (json.RawMessage, error) {
	return json.RawMessage(`{}`), nil
}

func TestStaticRegistry(t *testing.T) {
	a := fakeHandler{pluginapi.Info{Name: "a", Ops: []pluginapi.Op{{Name: "x.get", Kind: pluginapi.Read}, {Name: "x.put", Kind: pluginapi.Write}}}}
	tests := []struct {
		name     string
		handlers []pluginapi.Handler
		wantErr  string
	}{
		{"one handler", []pluginapi.Handler{a}, ""},
		{"same op twice", []pluginapi.Handler{a, fakeHandler{pluginapi.Info{Name: "b", Ops: []pluginapi.Op{{Name: "x.get", Kind: pluginapi.Read}}}}}, "served by both a and b"},
		{"unknown kind", []pluginapi.Handler{fakeHandler{pluginapi.Info{Name: "c", Ops: []pluginapi.Op{{Name: "y", Kind: "delete"}}}}}, "unknown kind"},
		{"nameless handler", []pluginapi.Handler{fakeHandler{pluginapi.Info{Ops: []pluginapi.Op{{Name: "y", Kind: pluginapi.Read}}}}}, "without a name"},
		{"nameless op", []pluginapi.Handler{fakeHandler{pluginapi.Info{Name: "d", Ops: []pluginapi.Op{{Kind: pluginapi.Read}}}}}, "without a name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewStaticRegistry(context.Background(), tt.handlers...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			op, ok := r.Lookup("x.put")
			if !ok || op.Kind != pluginapi.Write || op.HandlerName != "a" {
				t.Fatalf("Lookup(x.put) = %+v %v", op, ok)
			}
			if _, ok := r.Lookup("nope"); ok {
				t.Fatal("unknown op found")
			}
		})
	}
}
