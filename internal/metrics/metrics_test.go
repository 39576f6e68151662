package metrics

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestServe(t *testing.T) {
	for _, tt := range []struct {
		name, listen, wantHost string
	}{
		{"loopback", "127.0.0.1:0", "127.0.0.1:"},
		{"unspecified host published as loopback", "0.0.0.0:0", "127.0.0.1:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			reg := New("worker")
			// A component's own metric gets the component label too.
			c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "test_total", Help: "a test counter"})
			reg.Registerer().MustRegister(c)
			c.Inc()
			addr, err := reg.Serve(ctx, tt.listen, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(addr, tt.wantHost) {
				t.Fatalf("published %q, want %s<port>", addr, tt.wantHost)
			}
			resp, err := http.Get("http://" + addr + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `go_goroutines{component="worker"}`) ||
				!strings.Contains(string(body), `rideshare_test_total{component="worker"} 1`) {
				t.Fatalf("/metrics: %d %.300s", resp.StatusCode, body)
			}
			resp, err = http.Get("http://" + addr + "/other")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("/other: %d, want 404 (only /metrics is served)", resp.StatusCode)
			}
		})
	}
	if _, err := New("worker").Serve(context.Background(), "not-an-address", slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a bad address was accepted")
	}
}
