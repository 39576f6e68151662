package profiling

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := Serve(ctx, "127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "profiling.test") {
		t.Fatalf("cmdline: %d %q", resp.StatusCode, body)
	}
}

func TestServeRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "10.0.0.1:0", "example.com:0", "nonsense"} {
		t.Run(addr, func(t *testing.T) {
			if _, err := Serve(context.Background(), addr, slog.New(slog.DiscardHandler)); err == nil {
				t.Fatalf("Serve(%q) accepted a non-loopback address", addr)
			}
		})
	}
}
