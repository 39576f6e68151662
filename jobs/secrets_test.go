package jobs

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// The stack's secrets (the RabbitMQ user's password, the admin token) come
// from Nomad variables through templates rendered under secrets/, never
// from a literal or a command line; the broker job makes the stack's user
// instead of guest.
func TestJobs_SecretsFromVariables(t *testing.T) {
	for _, part := range parts {
		f := mustJobspec(t, part)
		src := string(f.src)
		if strings.Contains(src, "--amqp-url") {
			t.Errorf("%s: the broker URL (with its password) is on the command line", f.path)
		}
		hclsyntax.VisitAll(f.body, func(n hclsyntax.Node) hcl.Diagnostics {
			b, ok := n.(*hclsyntax.Block)
			if !ok || b.Type != "template" {
				return nil
			}
			text := string(b.Range().SliceBytes(f.src))
			dest := attr(t, f, b.Body, "destination")
			if strings.Contains(text, "nomadVar") || strings.Contains(text, "local.servers") {
				if d := f.text(dest.Expr); !strings.HasPrefix(d, `"secrets/`) {
					t.Errorf("%s:%d: a template with secrets renders to %s, not under secrets/", f.path, b.TypeRange.Start.Line, d)
				}
			}
			return nil
		})
	}
	for part, want := range map[string][]string{
		"worker":       {`RIDESHARE_AMQP_URL={{ with nomadVar "nomad/jobs/rideshare-worker" }}`},
		"orchestrator": {`RIDESHARE_AMQP_URL={{ with nomadVar "nomad/jobs/rideshare-orchestrator" }}`, `.admin_token`},
		"users":        {`nomadVar \"nomad/jobs/rideshare-users\"`, `.admin_token`},
		"rides":        {`nomadVar \"nomad/jobs/rideshare-rides\"`, `.admin_token`},
		"rabbitmq":     {`default_user = {{ .amqp_user }}`, `default_pass = {{ .amqp_password }}`, `default_vhost = {{ .amqp_vhost }}`, `RABBITMQ_CONFIG_FILE=`},
	} {
		src := string(mustJobspec(t, part).src)
		for _, w := range want {
			if !strings.Contains(src, w) {
				t.Errorf("%s.nomad.hcl lacks %s", part, w)
			}
		}
	}
}
