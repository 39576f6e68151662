package compose

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rideshare-dbaas/rideshare/traefik"
)

var update = flag.Bool("update", false, "rewrite ../../docker-compose.yml from Render")

const committed = "../../docker-compose.yml"

// The committed docker-compose.yml is exactly what Render writes from the
// rule table, so its routing labels are the ones package traefik makes.
func TestComposeFileIsGenerated(t *testing.T) {
	want, err := Render()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(committed, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(committed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docker-compose.yml is not what internal/compose renders from traefik/routes.tsv; run: go test ./internal/compose -update")
	}
	routes, err := traefik.Routes()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		for _, l := range Labels(r, ServicePorts[r.Name]) {
			if !bytes.Contains(got, []byte(`- "`+strings.ReplaceAll(l, `"`, `\"`)+`"`)) {
				t.Errorf("label %q of route %s is not in docker-compose.yml", l, r.Name)
			}
		}
	}
}

// docker-compose (Debian's 1.29 here; v2 reads the same file) accepts the
// file: `docker-compose config` parses, interpolates and validates it
// without pulling anything.
func TestComposeConfig(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		msg := "docker-compose is not installed (make compose installs it)"
		if os.Getenv("RIDESHARE_REQUIRE_COMPOSE") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	abs, _ := filepath.Abs(committed)
	cmd := exec.Command(bin, "-f", abs, "-p", "rideshare-compose-test", "config")
	cmd.Env = append(os.Environ(), "DOCKER_GID=999")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	// The interpolated result keeps every service and a routing rule.
	for _, s := range []string{"rabbitmq:", "zookeeper:", "traefik:", "orchestrator:", "users:", "rides:", "PathPrefix(`/api/v1/users`)", "group_add:"} {
		if !bytes.Contains(out, []byte(s)) {
			t.Errorf("docker-compose config output lacks %q:\n%s", s, out)
		}
	}
}
