package jobs

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/nomadfake"
	"github.com/rideshare-dbaas/rideshare/internal/testenv"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// The real Traefik binary, started with the traefik job's own arguments,
// reads the users and rides services from Nomad's service API (the
// double's, serving the services with the tags of the committed jobspecs)
// and routes as the rule table says: what `make nomad` shows on a real
// agent, checked in CI without one.
func TestTraefikNomadProvider_RoutesTheJobspecServices(t *testing.T) {
	bin := testenv.Traefik(t)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("needs sh")
	}
	double, err := nomadfake.Start(nomadfake.Options{Command: sh, Args: []string{"-c", "exec sleep 600"}, Dir: t.TempDir(), Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer double.Close()

	backends := map[string]*backend{}
	for _, part := range []string{"users", "rides"} {
		b := mustBackend(t, part)
		backends[part] = b
		f := mustJobspec(t, part)
		job := block(t, f, f.body, "job")
		for _, g := range blocks(job.Body, "group") {
			for _, s := range blocks(g.Body, "service") {
				double.RegisterService(nomadfake.Service{
					Name: f.value(t, attr(t, f, s.Body, "name").Expr).AsString(), Address: "127.0.0.1", Port: b.port,
					Tags: f.strings(t, attr(t, f, s.Body, "tags").Expr),
				})
			}
		}
	}

	web, api := testenv.FreePort(t), testenv.FreePort(t)
	args := traefikJobArgs(t, web, api, double.URL())
	logf, err := os.Create(filepath.Join(t.TempDir(), "traefik.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("traefik log:\n%s", b)
		}
	}()

	entry := fmt.Sprintf("http://127.0.0.1:%d", web)
	get := func(path string) (int, string) {
		resp, err := http.Get(entry + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	routes := map[string]string{
		"/api/v1/users": "users", "/api/v1/users/ann": "users", "/api/v1/rides": "rides",
		"/api/v1/rides/7": "rides", "/api/v1/_count": "rides",
	}
	for path, want := range routes {
		testenv.Eventually(t, 60*time.Second, path+" routed to "+want, func() (bool, string) {
			st, body := get(path)
			return st == 200 && strings.HasPrefix(body, want+" "), fmt.Sprint(st, " ", body)
		})
	}

	// Traefik's API shows the routers from the nomad provider with the
	// table's rules and priorities, and nothing from another provider.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/http/routers", api))
	if err != nil {
		t.Fatal(err)
	}
	var routers []struct {
		Name, Rule, Provider string
		Priority             int
	}
	if err := json.NewDecoder(resp.Body).Decode(&routers); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := map[string]string{}
	for _, r := range routers {
		if r.Provider != "internal" {
			got[r.Name] = fmt.Sprintf("%s %s %d", r.Provider, r.Rule, r.Priority)
		}
	}
	want := map[string]string{"users@nomad": "nomad PathPrefix(`/api/v1/users`) 100", "rides@nomad": "nomad PathPrefix(`/`) 1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("routers = %v, want %v", got, want)
	}

	// Traefik's own health check (the tags'): a failing /healthz takes the
	// server out although Nomad still lists it.
	backends["users"].healthy.Store(false)
	testenv.Eventually(t, 30*time.Second, "unhealthy users server taken out", func() (bool, string) {
		st, body := get("/api/v1/users")
		return st == http.StatusServiceUnavailable, fmt.Sprint(st, " ", body)
	})
	backends["users"].healthy.Store(true)
	testenv.Eventually(t, 30*time.Second, "users server back", func() (bool, string) {
		st, body := get("/api/v1/users")
		return st == 200, fmt.Sprint(st, " ", body)
	})

	// A deregistered service loses its route (users then falls to rides'
	// catch-all).
	double.DeregisterServices("users")
	testenv.Eventually(t, 30*time.Second, "users route gone", func() (bool, string) {
		st, body := get("/api/v1/users")
		return st == 200 && strings.HasPrefix(body, "rides "), fmt.Sprint(st, " ", body)
	})
}

// traefikJobArgs evaluates the traefik job's arguments as Nomad would on a
// node at 127.0.0.1 with the given ports, the Nomad API being addr.
func traefikJobArgs(t *testing.T, web, api int, addr string) []string {
	t.Helper()
	f := mustJobspec(t, "traefik")
	_, port, err := net.SplitHostPort(strings.TrimPrefix(addr, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := f.evalCtx(t)
	vars := ctx.Variables["var"].AsValueMap()
	vars["nomad_port"] = cty.NumberIntVal(int64(mustAtoi(t, port)))
	ctx.Variables["var"] = cty.ObjectVal(vars)
	ctx.Variables["NOMAD_ADDR_web"] = cty.StringVal(fmt.Sprintf("127.0.0.1:%d", web))
	ctx.Variables["NOMAD_ADDR_api"] = cty.StringVal(fmt.Sprintf("127.0.0.1:%d", api))
	ctx.Variables["attr"] = cty.ObjectVal(map[string]cty.Value{"unique": cty.ObjectVal(map[string]cty.Value{
		"network": cty.ObjectVal(map[string]cty.Value{"ip-address": cty.StringVal("127.0.0.1")})})})
	ctx.Functions = map[string]function.Function{"concat": stdlib.ConcatFunc, "format": stdlib.FormatFunc}
	expr := attr(t, f, block(t, f, f.body, "locals").Body, "args").Expr
	v, diags := expr.Value(ctx)
	if diags.HasErrors() {
		t.Fatalf("traefik args: %s", diags.Error())
	}
	var out []string
	for _, a := range v.AsValueSlice() {
		out = append(out, a.AsString())
	}
	return out
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// backend stands in for a service: /healthz is 200 while healthy (503
// otherwise), any other path answers "<name> <path>".
type backend struct {
	name    string
	port    int
	healthy atomic.Bool
}

func mustBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	b.healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if !b.healthy.Load() {
				http.Error(w, "unhealthy", http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, "ok")
			return
		}
		_, _ = fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	b.port = srv.Listener.Addr().(*net.TCPAddr).Port
	return b
}
