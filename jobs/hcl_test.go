package jobs

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/rideshare-dbaas/rideshare/orchestrator"
	"github.com/rideshare-dbaas/rideshare/traefik"
	"github.com/zclconf/go-cty/cty"
)

// The parts of the stack, one jobspec each.
var parts = []string{"rabbitmq", "zookeeper", "orchestrator", "worker", "users", "rides", "traefik"}

// file is one parsed HCL file.
type file struct {
	path string
	src  []byte
	body *hclsyntax.Body
}

func mustParse(t *testing.T, path string) *file {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, diags := hclparse.NewParser().ParseHCL(src, path)
	if diags.HasErrors() {
		t.Fatalf("%s: %s", path, diags.Error())
	}
	return &file{path: path, src: src, body: f.Body.(*hclsyntax.Body)}
}

func mustJobspec(t *testing.T, part string) *file {
	t.Helper()
	return mustParse(t, part+".nomad.hcl")
}

// text is an expression's source.
func (f *file) text(e hclsyntax.Expression) string {
	r := e.Range()
	return string(r.SliceBytes(f.src))
}

func blocks(b *hclsyntax.Body, typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, bl := range b.Blocks {
		if bl.Type == typ {
			out = append(out, bl)
		}
	}
	return out
}

// block returns the one block of that type (and labels), failing otherwise.
func block(t *testing.T, f *file, b *hclsyntax.Body, typ string, labels ...string) *hclsyntax.Block {
	t.Helper()
	var found []*hclsyntax.Block
	for _, bl := range blocks(b, typ) {
		if len(labels) == 0 || slices.Equal(bl.Labels, labels) {
			found = append(found, bl)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: want one %s block %q, found %d", f.path, typ, labels, len(found))
	}
	return found[0]
}

func attr(t *testing.T, f *file, b *hclsyntax.Body, name string) *hclsyntax.Attribute {
	t.Helper()
	a, ok := b.Attributes[name]
	if !ok {
		t.Fatalf("%s:%d: block lacks %q", f.path, b.SrcRange.Start.Line, name)
	}
	return a
}

// evalCtx evaluates expressions against the file's variable defaults and
// locals (what `nomad job run` with no -var does); Nomad's runtime
// interpolations (${NOMAD_...}, ${attr...}) are not evaluated here.
func (f *file) evalCtx(t *testing.T) *hcl.EvalContext {
	t.Helper()
	vars := map[string]cty.Value{}
	for _, v := range blocks(f.body, "variable") {
		if d, ok := v.Body.Attributes["default"]; ok {
			val, diags := d.Expr.Value(nil)
			if diags.HasErrors() {
				t.Fatalf("%s: variable %s default: %s", f.path, v.Labels[0], diags.Error())
			}
			vars[v.Labels[0]] = val
		}
	}
	return &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(vars)}}
}

func (f *file) value(t *testing.T, e hclsyntax.Expression) cty.Value {
	t.Helper()
	v, diags := e.Value(f.evalCtx(t))
	if diags.HasErrors() {
		t.Fatalf("%s: %s: %s", f.path, f.text(e), diags.Error())
	}
	return v
}

func (f *file) strings(t *testing.T, e hclsyntax.Expression) []string {
	t.Helper()
	var out []string
	for _, v := range f.value(t, e).AsValueSlice() {
		out = append(out, v.AsString())
	}
	return out
}

// configs returns the task's config bodies: direct ones and the contents
// of dynamic "config" blocks, keyed by the driver their for_each selects.
func configs(t *testing.T, f *file, task *hclsyntax.Block) map[string]*hclsyntax.Body {
	t.Helper()
	out := map[string]*hclsyntax.Body{}
	for _, d := range blocks(task.Body, "dynamic") {
		if len(d.Labels) != 1 || d.Labels[0] != "config" {
			continue
		}
		forEach := f.text(attr(t, f, d.Body, "for_each").Expr)
		for _, driver := range []string{"docker", "raw_exec"} {
			if strings.Contains(forEach, `var.driver == "`+driver+`"`) {
				out[driver] = block(t, f, d.Body, "content").Body
			}
		}
	}
	return out
}

// Every .hcl and .tf file parses and is formatted as hclwrite.Format
// leaves it.
func TestHCL_ParsedAndFormatted(t *testing.T) {
	files, _ := filepath.Glob("*.hcl")
	tf, _ := filepath.Glob(filepath.Join("..", "terraform-nomad", "*.tf"))
	files = append(files, tf...)
	if len(files) < len(parts)+3 {
		t.Fatalf("found only %v", files)
	}
	for _, p := range files {
		f := mustParse(t, p)
		if got := hclwrite.Format(f.src); string(got) != string(f.src) {
			t.Errorf("%s is not formatted as hclwrite.Format leaves it (run terraform fmt / nomad fmt)", p)
		}
	}
}

// Every part's jobspec has the structure the deployment relies on.
func TestJobs_Structure(t *testing.T) {
	for _, part := range parts {
		t.Run(part, func(t *testing.T) {
			f := mustJobspec(t, part)
			job := block(t, f, f.body, "job")
			if want := "rideshare-" + part; job.Labels[0] != want {
				t.Errorf("job %q, want %q", job.Labels[0], want)
			}
			if got := f.text(attr(t, f, job.Body, "datacenters").Expr); got != "var.datacenters" {
				t.Errorf("datacenters = %s, want var.datacenters", got)
			}
			ctx := f.evalCtx(t)
			vars := ctx.Variables["var"]
			for name, want := range map[string]string{"driver": "docker", "provider": "nomad"} {
				if !vars.Type().HasAttribute(name) || vars.GetAttr(name).AsString() != want {
					t.Errorf("variable %q must default to %q", name, want)
				}
			}
			groups := blocks(job.Body, "group")
			if len(groups) == 0 {
				t.Fatal("no group")
			}
			for _, g := range groups {
				for _, typ := range []string{"restart", "reschedule", "update"} {
					block(t, f, g.Body, typ)
				}
				for _, svc := range blocks(g.Body, "service") {
					if got := f.text(attr(t, f, svc.Body, "provider").Expr); got != "var.provider" {
						t.Errorf("service provider = %s, want var.provider (the documented switch)", got)
					}
					if len(blocks(svc.Body, "check")) == 0 {
						t.Errorf("service %s has no check", f.text(attr(t, f, svc.Body, "name").Expr))
					}
				}
				for _, task := range blocks(g.Body, "task") {
					if got := f.text(attr(t, f, task.Body, "driver").Expr); got != "var.driver" {
						t.Errorf("task %s driver = %s, want var.driver", task.Labels[0], got)
					}
					cfg := configs(t, f, task)
					if cfg["docker"] == nil || cfg["raw_exec"] == nil {
						t.Errorf("task %s lacks a config for docker or raw_exec: %v", task.Labels[0], cfg)
					}
					if d := cfg["docker"]; d != nil {
						attr(t, f, d, "image")
					}
					if r := cfg["raw_exec"]; r != nil {
						attr(t, f, r, "command")
					}
					res := block(t, f, task.Body, "resources")
					attr(t, f, res.Body, "cpu")
					attr(t, f, res.Body, "memory")
				}
			}
		})
	}
}

// The worker job is what the nomad runtime drives: its job, group and task
// names, the scaling block, the worker id derived from the allocation,
// data in the allocation, host pids under docker.
func TestJobs_Worker(t *testing.T) {
	f := mustJobspec(t, "worker")
	job := block(t, f, f.body, "job", orchestrator.DefaultNomadJob)
	g := block(t, f, job.Body, "group", orchestrator.DefaultNomadGroup)
	task := block(t, f, g.Body, "task", orchestrator.DefaultNomadTask)
	sc := block(t, f, g.Body, "scaling")
	minV, maxV := f.value(t, attr(t, f, sc.Body, "min").Expr), f.value(t, attr(t, f, sc.Body, "max").Expr)
	lo, _ := minV.AsBigFloat().Int64()
	hi, _ := maxV.AsBigFloat().Int64()
	if lo < 2 || hi <= lo {
		t.Errorf("scaling min %d, max %d: want min >= 2 (a master and a slave) and max > min", lo, hi)
	}
	if !f.value(t, attr(t, f, sc.Body, "enabled").Expr).True() {
		t.Error("scaling block not enabled")
	}
	count, _ := f.value(t, attr(t, f, g.Body, "count").Expr).AsBigFloat().Int64()
	if count < lo || count > hi {
		t.Errorf("count %d outside the scaling block [%d, %d]", count, lo, hi)
	}
	locals := block(t, f, f.body, "locals")
	args := f.text(attr(t, f, locals.Body, "args").Expr)
	for _, want := range []string{`"--id", "` + orchestrator.NomadWorkerIDArg + `"`, `"--data-dir", "${NOMAD_ALLOC_DIR}/data"`,
		`"--metrics-listen", "${NOMAD_ADDR_metrics}"`} {
		if !strings.Contains(args, want) {
			t.Errorf("worker args lack %s:\n%s", want, args)
		}
	}
	if d := configs(t, f, task)["docker"]; d == nil || f.text(attr(t, f, d, "pid_mode").Expr) != `"host"` {
		t.Error(`docker config must set pid_mode = "host" (worker/list shows host pids)`)
	}
	// The port --metrics-listen names is the group's.
	block(t, f, block(t, f, g.Body, "network").Body, "port", "metrics")
	if len(blocks(g.Body, "service")) != 0 {
		t.Error("workers serve no port; a service would have nothing to check")
	}
}

// users and rides carry exactly the tags package traefik gives their
// routes: the same rules, priorities and health checks as the file provider.
func TestJobs_TraefikTagsEqualTheRuleTable(t *testing.T) {
	routes, err := traefik.Routes()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		t.Run(r.Name, func(t *testing.T) {
			f := mustJobspec(t, r.Name)
			job := block(t, f, f.body, "job")
			var svc *hclsyntax.Block
			for _, g := range blocks(job.Body, "group") {
				for _, s := range blocks(g.Body, "service") {
					if f.value(t, attr(t, f, s.Body, "name").Expr).AsString() == r.Name {
						svc = s
					}
				}
			}
			if svc == nil {
				t.Fatalf("no service %q (the Nomad service name is the route's)", r.Name)
			}
			got := f.strings(t, attr(t, f, svc.Body, "tags").Expr)
			if want := r.NomadTags(); !slices.Equal(got, want) {
				t.Errorf("tags differ from traefik.Route.NomadTags (bin/traefik-render -nomad-tags %s):\n got %q\nwant %q", r.Name, got, want)
			}
		})
	}
}

// Traefik reads routes only from services that ask for it.
func TestJobs_TraefikProviders(t *testing.T) {
	f := mustJobspec(t, "traefik")
	args := f.text(attr(t, f, block(t, f, f.body, "locals").Body, "args").Expr)
	for _, want := range []string{
		`"--providers.nomad.exposedByDefault=false"`, `"--providers.consulcatalog.exposedByDefault=false"`,
		`"--providers.nomad=${var.provider == "nomad"}"`, `"--providers.consulcatalog=${var.provider == "consul"}"`,
		`"--entrypoints.web.address=${NOMAD_ADDR_web}"`, `"--ping=true"`,
	} {
		if !strings.Contains(args, want) {
			t.Errorf("traefik args lack %s", want)
		}
	}
	o := mustJobspec(t, "orchestrator")
	args = o.text(attr(t, o, block(t, o, o.body, "locals").Body, "args").Expr)
	if !strings.Contains(args, `"--runtime", "nomad"`) {
		t.Errorf("the orchestrator does not use the nomad runtime: %s", args)
	}
}

var (
	ipv4      = regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b`)
	localhost = regexp.MustCompile(`(?i)localhost`)
	// The one allowed: an Erlang node name's host part (RabbitMQ), which
	// nothing connects to by that name.
	erlangNode = regexp.MustCompile(`RABBITMQ_NODENAME=[a-z-]+\{\{[^}]*\}\}@localhost`)
)

// No jobspec names an address: parts find each other through templates
// over the catalog (nomadService, or service with Consul), and bind to the
// addresses Nomad gives them.
func TestJobs_NoHardCodedAddress(t *testing.T) {
	for _, part := range parts {
		f := mustJobspec(t, part)
		hclsyntax.VisitAll(f.body, func(n hclsyntax.Node) hcl.Diagnostics {
			lit, ok := n.(*hclsyntax.TemplateExpr)
			if !ok {
				return nil
			}
			s := erlangNode.ReplaceAllString(f.text(lit), "")
			if m := ipv4.FindString(s); m != "" {
				t.Errorf("%s:%d: hard-coded address %s", f.path, lit.SrcRange.Start.Line, m)
			}
			if localhost.MatchString(s) {
				t.Errorf("%s:%d: hard-coded localhost", f.path, lit.SrcRange.Start.Line)
			}
			return nil
		})
	}
	// The parts that call others look them up in the catalog.
	lookups := map[string][]string{
		"worker":       {"rideshare-rabbitmq", "rideshare-zookeeper"},
		"orchestrator": {"rideshare-rabbitmq", "rideshare-zookeeper"},
		"users":        {"rideshare-orchestrator"},
		"rides":        {"rideshare-orchestrator", "traefik"},
	}
	for part, services := range lookups {
		src := string(mustJobspec(t, part).src)
		for _, s := range services {
			for _, call := range []string{`nomadService "` + s + `"`, `service "` + s + `"`} {
				if !strings.Contains(src, call) {
					t.Errorf("%s.nomad.hcl does not look up %s", part, call)
				}
			}
		}
	}
}

// Terraform submits every jobspec with variables each file declares.
func TestTerraform_SubmitsEveryJobspec(t *testing.T) {
	dir := filepath.Join("..", "terraform-nomad")
	paths, _ := filepath.Glob(filepath.Join(dir, "*.tf"))
	var tf []*file
	for _, p := range paths {
		tf = append(tf, mustParse(t, p))
	}
	find := func(typ string, labels ...string) (*file, *hclsyntax.Block) {
		for _, f := range tf {
			for _, b := range blocks(f.body, typ) {
				if slices.Equal(b.Labels, labels) {
					return f, b
				}
			}
		}
		t.Fatalf("terraform-nomad has no %s %q", typ, labels)
		return nil, nil
	}
	f, prov := find("provider", "nomad")
	if got := f.text(attr(t, f, prov.Body, "address").Expr); got != "var.nomad_addr" {
		t.Errorf("provider address = %s", got)
	}
	for _, v := range []string{"nomad_addr", "image_tag", "driver", "bin_dir", "worker_count", "worker_max", "users_count", "rides_count"} {
		find("variable", v)
	}
	find("output", "entry_url")
	for _, part := range parts {
		f, res := find("resource", "nomad_job", part)
		if js := f.text(attr(t, f, res.Body, "jobspec").Expr); !strings.Contains(js, "/"+part+".nomad.hcl") {
			t.Errorf("nomad_job.%s reads %s", part, js)
		}
		obj, ok := attr(t, f, block(t, f, res.Body, "hcl2").Body, "vars").Expr.(*hclsyntax.ObjectConsExpr)
		if !ok {
			t.Fatalf("nomad_job.%s: hcl2 vars must be an object literal (its keys are checked)", part)
		}
		declared := map[string]bool{}
		for _, v := range blocks(mustJobspec(t, part).body, "variable") {
			declared[v.Labels[0]] = true
		}
		var keys []string
		for _, item := range obj.Items {
			k := strings.Trim(f.text(item.KeyExpr), `"`)
			keys = append(keys, k)
			if !declared[k] {
				t.Errorf("nomad_job.%s passes %q, which %s.nomad.hcl does not declare (Nomad refuses it)", part, k, part)
			}
		}
		sort.Strings(keys)
		if !slices.Contains(keys, "driver") || !slices.Contains(keys, "provider") {
			t.Errorf("nomad_job.%s does not pass driver and provider: %v", part, keys)
		}
	}
}
