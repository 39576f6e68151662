package docs

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/go-chi/chi/v5"

	"github.com/rideshare-dbaas/rideshare/internal/apirecord"
	"github.com/rideshare-dbaas/rideshare/internal/httpx"
	"github.com/rideshare-dbaas/rideshare/internal/metrics"
	"github.com/rideshare-dbaas/rideshare/orchestrator"
	"github.com/rideshare-dbaas/rideshare/services/rides"
	"github.com/rideshare-dbaas/rideshare/services/users"
)

// An operation: an API ("dbaas", "users", "rides"), a method and an
// OpenAPI path template.
type op struct{ api, method, path string }

func (o op) String() string { return o.api + " " + o.method + " " + o.path }

// The documents, and for services.yaml which services serve each path
// (the x-services extension: users and rides share _count, db/clear,
// healthz and metrics).
var documents = []struct {
	file string
	apis func(item *openapi3.PathItem) ([]string, error)
}{
	{"openapi/dbaas.yaml", func(*openapi3.PathItem) ([]string, error) { return []string{"dbaas"}, nil }},
	{"openapi/services.yaml", func(item *openapi3.PathItem) ([]string, error) {
		raw, ok := item.Extensions["x-services"].([]any)
		if !ok || len(raw) == 0 {
			return nil, fmt.Errorf("x-services missing (a list of users, rides)")
		}
		var out []string
		for _, v := range raw {
			s, _ := v.(string)
			if s != "users" && s != "rides" {
				return nil, fmt.Errorf("x-services: %v is neither users nor rides", v)
			}
			out = append(out, s)
		}
		return out, nil
	}},
}

// documented loads and validates every document and returns each
// operation with its documented statuses: true for those the tests must
// produce, false for those marked x-untested (a reason why no test can
// reach them: the check only accepts the few that are so marked).
func documented(t *testing.T) map[op]map[int]bool {
	t.Helper()
	out := map[op]map[int]bool{}
	for _, d := range documents {
		doc, err := openapi3.NewLoader().LoadFromFile(d.file)
		if err != nil {
			t.Fatalf("%s: %v", d.file, err)
		}
		if err := doc.Validate(context.Background()); err != nil {
			t.Fatalf("%s is not valid OpenAPI 3: %v", d.file, err)
		}
		for path, item := range doc.Paths.Map() {
			apis, err := d.apis(item)
			if err != nil {
				t.Fatalf("%s %s: %v", d.file, path, err)
			}
			for method, o := range item.Operations() {
				codes := map[int]bool{}
				for code, ref := range o.Responses.Map() {
					n, err := strconv.Atoi(code)
					if err != nil {
						t.Fatalf("%s %s %s: response %q: give every status explicitly", d.file, method, path, code)
					}
					_, untested := ref.Extensions["x-untested"]
					if ref.Value != nil {
						if _, ok := ref.Value.Extensions["x-untested"]; ok {
							untested = true
						}
					}
					codes[n] = !untested
				}
				for _, api := range apis {
					out[op{api, method, path}] = codes
				}
			}
		}
	}
	return out
}

// openAPIPath turns a chi pattern into an OpenAPI path template: the
// parameters are the same ({rideId}); a trailing wildcard is {file}.
func openAPIPath(pattern string) string {
	if strings.HasSuffix(pattern, "/*") {
		return strings.TrimSuffix(pattern, "*") + "{file}"
	}
	return pattern
}

// served walks the real routers.
func served(t *testing.T) map[op]bool {
	t.Helper()
	out := map[op]bool{}
	o, err := orchestrator.New(orchestrator.Options{Listen: "127.0.0.1:0", AMQPURL: "amqp://docs:x@127.0.0.1:1/",
		ZKServers: []string{"127.0.0.1:1"}, Runtime: &orchestrator.Process{}, Dev: true, Metrics: metrics.New("docs")})
	if err != nil {
		t.Fatal(err)
	}
	routes, ok := o.Handler().(chi.Routes)
	if !ok {
		t.Fatalf("the orchestrator's handler is a %T, not a chi router", o.Handler())
	}
	err = chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		out[op{"dbaas", method, openAPIPath(route)}] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := httpx.Config{DBaaSURL: "http://127.0.0.1:1"}
	us, err := users.New(users.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rides.New(rides.Options{Config: cfg, UsersURL: "http://127.0.0.1:1", PublicURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	for api, r := range map[string]map[string][]string{"users": us.Routes(), "rides": rs.Routes()} {
		for pattern, methods := range r {
			for _, m := range methods {
				out[op{api, m, openAPIPath(pattern)}] = true
			}
		}
	}
	return out
}

func sortedOps[V any](m map[op]V) []op {
	ops := make([]op, 0, len(m))
	for o := range m {
		ops = append(ops, o)
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].String() < ops[j].String() })
	return ops
}

// Every route the routers serve is documented, and every documented route
// is served.
func TestOpenAPI_RoutesMatchRouters(t *testing.T) {
	docs := documented(t)
	real := served(t)
	for _, o := range sortedOps(real) {
		if _, ok := docs[o]; !ok {
			t.Errorf("served but not documented: %s", o)
		}
	}
	for _, o := range sortedOps(docs) {
		if !real[o] {
			t.Errorf("documented but not served: %s", o)
		}
	}
}

// TestOpenAPI_StatusesReached runs after the whole suite (make apicheck):
// every status a document names was produced by some test, and every
// status a test produced on a route is documented there. The statuses come
// from package apirecord (RIDESHARE_API_RECORD).
func TestOpenAPI_StatusesReached(t *testing.T) {
	if os.Getenv("RIDESHARE_API_CHECK") == "" {
		t.Skip("runs after the whole suite: make apicheck (RIDESHARE_API_CHECK=1)")
	}
	dir := os.Getenv(apirecord.EnvDir)
	recs, err := apirecord.ReadDir(dir)
	if err != nil || len(recs) == 0 {
		t.Fatalf("no status records in %q (%v): run the suite with %s set first (make unit)", dir, err, apirecord.EnvDir)
	}
	seen := map[op]map[int]bool{}
	docs := documented(t)
	paths := map[string]bool{} // api + path
	apis := map[string]bool{}
	for o := range docs {
		paths[o.api+" "+o.path] = true
		apis[o.api] = true
	}
	for k := range recs {
		if k.Route == metrics.Unmatched {
			continue // 404s and chi's 405s: no route to document them under
		}
		if !apis[k.API] {
			continue // a test's own API (internal/httpx's tests serve "things")
		}
		o := op{k.API, k.Method, openAPIPath(k.Route)}
		if _, ok := docs[o]; !ok && k.Status == 405 && paths[o.api+" "+o.path] {
			continue // a documented path called with another method: the 405 every path has
		}
		if seen[o] == nil {
			seen[o] = map[int]bool{}
		}
		seen[o][k.Status] = true
	}
	for _, o := range sortedOps(docs) {
		var missing []int
		for code, mustSee := range docs[o] {
			if mustSee && !seen[o][code] {
				missing = append(missing, code)
			}
		}
		slices.Sort(missing)
		if len(missing) > 0 {
			t.Errorf("%s: documented statuses no test produced: %v", o, missing)
		}
	}
	for _, o := range sortedOps(seen) {
		d, ok := docs[o]
		if !ok {
			t.Errorf("%s: the tests called an undocumented route", o)
			continue
		}
		var extra []int
		for code := range seen[o] {
			if _, ok := d[code]; !ok {
				extra = append(extra, code)
			}
		}
		slices.Sort(extra)
		if len(extra) > 0 {
			t.Errorf("%s: the tests got statuses the document does not name: %v", o, extra)
		}
	}
}
