package traefik

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// pathPrefixOf extracts the prefix of a rule of the form PathPrefix(`/x`).
func pathPrefixOf(t *testing.T, rule string) string {
	t.Helper()
	p, ok := strings.CutPrefix(rule, "PathPrefix(`")
	if ok {
		p, ok = strings.CutSuffix(p, "`)")
	}
	if !ok || strings.ContainsAny(p, "`()|&") {
		t.Fatalf("rule %q is not a single PathPrefix(`...`); extend this test's matcher", rule)
	}
	return p
}

// route picks the route Traefik would: among the matching PathPrefix rules,
// the highest priority.
func route(t *testing.T, routes []Route, path string) string {
	t.Helper()
	best, bestPrio := "", 0
	for _, r := range routes {
		if strings.HasPrefix(path, pathPrefixOf(t, r.Rule)) && r.Priority > bestPrio {
			best, bestPrio = r.Name, r.Priority
		}
	}
	return best
}

func mustRoutes(t *testing.T) []Route {
	t.Helper()
	routes, err := Routes()
	if err != nil {
		t.Fatalf("routes.tsv: %v", err)
	}
	return routes
}

func byName(t *testing.T, routes []Route, name string) Route {
	t.Helper()
	i := slices.IndexFunc(routes, func(r Route) bool { return r.Name == name })
	if i < 0 {
		t.Fatalf("routes.tsv has no %q row", name)
	}
	return routes[i]
}

func TestRoutes_Table(t *testing.T) {
	routes := mustRoutes(t)
	var names []string
	for _, r := range routes {
		names = append(names, r.Name)
		if strings.TrimSpace(r.Rule) == "" {
			t.Errorf("route %q has no rule", r.Name)
		}
		if r.Priority < 1 {
			t.Errorf("route %q has priority %d", r.Name, r.Priority)
		}
	}
	if want := []string{"users", "rides"}; !slices.Equal(names, want) {
		t.Errorf("routes = %v, want %v", names, want)
	}
}

func TestRoutes_UsersMoreSpecificThanRides(t *testing.T) {
	routes := mustRoutes(t)
	users, rides := byName(t, routes, "users"), byName(t, routes, "rides")
	up, rp := pathPrefixOf(t, users.Rule), pathPrefixOf(t, rides.Rule)
	if !strings.HasPrefix(up, rp) || up == rp {
		t.Errorf("users prefix %q should be strictly inside rides prefix %q", up, rp)
	}
	if users.Priority <= rides.Priority {
		t.Errorf("users priority %d must beat rides priority %d", users.Priority, rides.Priority)
	}
}

func TestRoutes_PathsGoWhereExpected(t *testing.T) {
	routes := mustRoutes(t)
	tests := []struct{ path, want string }{
		{"/api/v1/users", "users"},
		{"/api/v1/users/x", "users"},
		{"/api/v1/rides", "rides"},
		{"/api/v1/rides/3", "rides"},
		{"/api/v1/_count", "rides"},
		{"/anything", "rides"},
		{"/", "rides"},
	}
	for _, tt := range tests {
		if got := route(t, routes, tt.path); got != tt.want {
			t.Errorf("%s -> %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestParseRoutes_Errors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", "# only a comment\n\n", "no routes"},
		{"two fields", "users\tPathPrefix(`/u`)\n", "3 TAB-separated"},
		{"spaces not tabs", "users PathPrefix(`/u`) 1\n", "3 TAB-separated"},
		{"empty rule", "users\t \t1\n", "empty rule"},
		{"bad name", "Users\tPathPrefix(`/u`)\t1\n", "bad name"},
		{"zero priority", "users\tPathPrefix(`/u`)\t0\n", "priority"},
		{"text priority", "users\tPathPrefix(`/u`)\thigh\n", "priority"},
		{"duplicate", "a\tPathPrefix(`/a`)\t1\na\tPathPrefix(`/b`)\t2\n", "duplicate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRoutes(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestRoute_NomadTags(t *testing.T) {
	users := byName(t, mustRoutes(t), "users")
	tags := users.NomadTags()
	for _, want := range []string{
		"traefik.enable=true",
		"traefik.http.routers.users.rule=PathPrefix(`/api/v1/users`)",
		"traefik.http.routers.users.priority=100",
		"traefik.http.routers.users.entrypoints=web",
		"traefik.http.services.users.loadbalancer.healthcheck.path=/healthz",
	} {
		if !slices.Contains(tags, want) {
			t.Errorf("NomadTags() lacks %q; got %q", want, tags)
		}
	}
	if got := users.URLVar(); got != "USERS_URL" {
		t.Errorf("URLVar() = %q", got)
	}
}

var placeholder = regexp.MustCompile(`@[A-Z_]+@`)

// mustRender renders the config into dir (package traefik's Render, what
// render.sh and traefik-render run) and returns the static config's path.
func mustRender(t *testing.T, dir string, lbPort, apiPort int, usersURL, ridesURL string) string {
	t.Helper()
	path, err := Render(dir, lbPort, apiPort, map[string][]string{
		"users": strings.Split(usersURL, ","), "rides": strings.Split(ridesURL, ","),
	})
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return path
}

func TestRender_WritesConfigFromTable(t *testing.T) {
	dir := t.TempDir()
	static := mustRender(t, dir, 18080, 18081, "http://127.0.0.1:9001", "http://127.0.0.1:9002,http://127.0.0.1:9003")
	if static != filepath.Join(dir, "traefik.yml") {
		t.Errorf("render.sh printed %q", static)
	}
	s, err := os.ReadFile(static)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`address: "127.0.0.1:18080"`, `address: "127.0.0.1:18081"`,
		"checkNewVersion: false", "sendAnonymousUsage: false", "insecure: true",
		`filePath: "` + dir + `/access.log"`, `filePath: "` + dir + `/traefik.log"`,
		`directory: "` + dir + `/dynamic"`, "watch: true",
	} {
		if !strings.Contains(string(s), want) {
			t.Errorf("traefik.yml lacks %q", want)
		}
	}
	if placeholder.Match(s) {
		t.Errorf("traefik.yml has an unfilled placeholder:\n%s", s)
	}
	d, err := os.ReadFile(filepath.Join(dir, "dynamic", "routes.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range mustRoutes(t) {
		for _, want := range []string{
			"    " + r.Name + ":\n      rule: '" + r.Rule + "'\n      priority: " + strconv.Itoa(r.Priority) + "\n",
			"    " + r.Name + ":\n      loadBalancer:\n",
		} {
			if !strings.Contains(string(d), want) {
				t.Errorf("routes.yml lacks %q", want)
			}
		}
	}
	for _, u := range []string{"9001", "9002", "9003"} {
		if !strings.Contains(string(d), `- url: 'http://127.0.0.1:`+u+`'`) {
			t.Errorf("routes.yml lacks server on port %s", u)
		}
	}
	if placeholder.Match(d) {
		t.Errorf("routes.yml has an unfilled placeholder:\n%s", d)
	}
}

func TestRender_RejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	ok := map[string][]string{"users": {"http://a"}, "rides": {"http://b"}}
	tests := []struct {
		name    string
		lb, api int
		servers map[string][]string
		want    string
	}{
		{"port zero", 0, 2, ok, "bad port"},
		{"port too high", 1, 70000, ok, "bad port"},
		{"same ports", 1, 1, ok, "must differ"},
		{"not http", 1, 2, map[string][]string{"users": {"ftp://a"}, "rides": {"http://b"}}, "bad URL"},
		{"quote in URL", 1, 2, map[string][]string{"users": {"http://a'b"}, "rides": {"http://b"}}, "bad URL"},
		{"route without servers", 1, 2, map[string][]string{"users": {"http://a"}}, "RIDES_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Render(dir, tt.lb, tt.api, tt.servers)
			if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrBadInput mentioning %q", err, tt.want)
			}
		})
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*", "*.yml")); len(files) > 0 {
		t.Errorf("bad input wrote %v", files)
	}
}

// render.sh is a thin wrapper over the traefik-render command: same
// arguments, same output, the same refusals.
func TestRenderScript_RunsTheGoCommand(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not found")
	}
	if _, err := os.Stat(filepath.Join("..", "bin", "traefik-render")); err != nil && os.Getenv("RIDESHARE_BIN") == "" {
		if os.Getenv("RIDESHARE_REQUIRE_SERVERS") != "" {
			t.Fatal("bin/traefik-render is missing: run make build")
		}
		t.Skip("bin/traefik-render not built (make build); render.sh would build it")
	}
	dir := t.TempDir()
	out, err := exec.Command("bash", "render.sh", "18080", "18081", "http://127.0.0.1:9001", "http://127.0.0.1:9002", dir).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != filepath.Join(dir, "traefik.yml") {
		t.Fatalf("render.sh: %v: %s", err, out)
	}
	want, err := DynamicConfig(mustRoutes(t), map[string][]string{"users": {"http://127.0.0.1:9001"}, "rides": {"http://127.0.0.1:9002"}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "dynamic", "routes.yml"))
	if string(got) != string(want) {
		t.Errorf("render.sh wrote\n%s\nwant\n%s", got, want)
	}
	for _, args := range [][]string{
		{"x", "2", "http://a", "http://b", dir},
		{"1", "1", "http://a", "http://b", dir},
		{"1", "2", "ftp://a", "http://b", dir},
		{"1", "2", "http://a", dir},
	} {
		if out, err := exec.Command("bash", append([]string{"render.sh"}, args...)...).CombinedOutput(); err == nil {
			t.Errorf("render.sh %q succeeded:\n%s", args, out)
		}
	}
}

// The file provider's services and the Nomad tags carry the same checks.
func TestDynamicConfig_HealthCheckMatchesNomadTags(t *testing.T) {
	routes := mustRoutes(t)
	d, err := DynamicConfig(routes, map[string][]string{"users": {"http://a"}, "rides": {"http://b"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"path: " + HealthCheckPath, "interval: " + HealthCheckInterval,
		"timeout: " + HealthCheckTimeout, "passHostHeader: true", "entryPoints: [" + EntryPoint + "]"} {
		if !strings.Contains(string(d), want) {
			t.Errorf("dynamic config lacks %q", want)
		}
	}
	for _, r := range routes {
		tags := r.NomadTags()
		for _, want := range []string{
			"traefik.http.services." + r.Name + ".loadbalancer.healthcheck.path=" + HealthCheckPath,
			"traefik.http.services." + r.Name + ".loadbalancer.healthcheck.interval=" + HealthCheckInterval,
			"traefik.http.services." + r.Name + ".loadbalancer.healthcheck.timeout=" + HealthCheckTimeout,
			"traefik.http.routers." + r.Name + ".entrypoints=" + EntryPoint,
		} {
			if !slices.Contains(tags, want) {
				t.Errorf("%s tags lack %q", r.Name, want)
			}
		}
	}
}
