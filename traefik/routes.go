// Package traefik holds RideShare's load-balancer rule table (routes.tsv) and
// is the one implementation of everything that carries routing, so every
// consumer routes the same way: Render writes the file provider's config for
// runs without Nomad (command traefik-render, behind traefik/render.sh), and
// NomadTags gives the Traefik tags the Nomad jobspecs carry (a test in
// jobs/ checks the committed files against it); container labels are the
// same strings.
//
// The Traefik binary itself is obtained by scripts/traefik.sh (see README.md);
// the tests in this package run it for real when it is there.
package traefik

import (
	"bufio"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Settings shared by every route's service, in the file provider's config
// and the Nomad tags alike.
const (
	// EntryPoint is the static config's public entrypoint the routers attach to.
	EntryPoint = "web"
	// HealthCheckPath is polled by Traefik on every server of a service.
	HealthCheckPath = "/healthz"
	// HealthCheckInterval is the time between two health checks of a server.
	HealthCheckInterval = "2s"
	// HealthCheckTimeout bounds one health check.
	HealthCheckTimeout = "1s"
)

// Route is one row of routes.tsv: a router and the service of the same name.
type Route struct {
	Name     string // router and service name, e.g. "users"
	Rule     string // Traefik v3 rule, e.g. "PathPrefix(`/api/v1/users`)"
	Priority int    // higher wins when several rules match
}

//go:embed routes.tsv
var routesTSV string

// Routes returns the rule table compiled into this package from routes.tsv.
func Routes() ([]Route, error) {
	return ParseRoutes(strings.NewReader(routesTSV))
}

var validName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// ErrNoRoutes is returned by ParseRoutes for a table without rows.
var ErrNoRoutes = errors.New("rule table has no routes")

// ParseRoutes reads a rule table: one route per line as TAB-separated name,
// rule and priority; blank lines and lines starting with '#' are skipped.
// Names must be unique lower-case identifiers, rules non-empty, priorities
// positive.
func ParseRoutes(r io.Reader) ([]Route, error) {
	var routes []Route
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for lineno := 1; sc.Scan(); lineno++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want 3 TAB-separated fields (name, rule, priority), got %d", lineno, len(f))
		}
		rt := Route{Name: f[0], Rule: strings.TrimSpace(f[1])}
		if !validName.MatchString(rt.Name) {
			return nil, fmt.Errorf("line %d: bad name %q (want %s)", lineno, rt.Name, validName)
		}
		if seen[rt.Name] {
			return nil, fmt.Errorf("line %d: duplicate name %q", lineno, rt.Name)
		}
		seen[rt.Name] = true
		if rt.Rule == "" {
			return nil, fmt.Errorf("line %d: route %q has an empty rule", lineno, rt.Name)
		}
		p, err := strconv.Atoi(f[2])
		if err != nil || p < 1 {
			return nil, fmt.Errorf("line %d: route %q: priority %q is not a positive integer", lineno, rt.Name, f[2])
		}
		rt.Priority = p
		routes = append(routes, rt)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read rule table: %w", err)
	}
	if len(routes) == 0 {
		return nil, ErrNoRoutes
	}
	return routes, nil
}

// URLVar is the name of the variable traefik-render reads this route's
// server URL(s) from: "users" -> "USERS_URL".
func (r Route) URLVar() string {
	return strings.ToUpper(strings.ReplaceAll(r.Name, "-", "_")) + "_URL"
}

// NomadTags returns the Traefik tags for the Nomad service that backs this
// route, equivalent to what Render writes for the file provider. The Nomad
// provider does not check Nomad's health itself, hence Traefik's own check.
func (r Route) NomadTags() []string {
	router := "traefik.http.routers." + r.Name + "."
	lb := "traefik.http.services." + r.Name + ".loadbalancer."
	return []string{
		"traefik.enable=true",
		router + "rule=" + r.Rule,
		router + "priority=" + strconv.Itoa(r.Priority),
		router + "entrypoints=" + EntryPoint,
		router + "service=" + r.Name,
		lb + "passhostheader=true",
		lb + "healthcheck.path=" + HealthCheckPath,
		lb + "healthcheck.interval=" + HealthCheckInterval,
		lb + "healthcheck.timeout=" + HealthCheckTimeout,
	}
}
