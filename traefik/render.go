package traefik

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"
)

// The file provider's configuration, for runs without Nomad (make run, the
// acceptance stack, the tests): the same routes, priorities and health
// checks as the Nomad tags, from the same rows.

//go:embed traefik.yml.tmpl
var staticTmpl string

//go:embed dynamic.yml.tmpl
var dynamicTmpl string

// HealthCheck is Traefik's own active check on every server of a service
// (Traefik does not read Nomad's health).
type HealthCheck struct{ Path, Interval, Timeout string }

// DefaultHealthCheck is the check every route's service gets.
var DefaultHealthCheck = HealthCheck{Path: HealthCheckPath, Interval: HealthCheckInterval, Timeout: HealthCheckTimeout}

// ErrBadInput is wrapped by every rendering error caused by the caller's
// input (ports, URLs, a route without servers).
var ErrBadInput = errors.New("bad input")

var validURL = regexp.MustCompile(`^https?://[^\s"']+$`)

// yamlQuote writes s as a YAML single-quoted scalar.
func yamlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

var dynamic = template.Must(template.New("dynamic").Funcs(template.FuncMap{"yamlQuote": yamlQuote}).Parse(dynamicTmpl))

// DynamicConfig is the file provider's dynamic configuration (routers and
// services) for routes, each service's servers taken from servers[name].
func DynamicConfig(routes []Route, servers map[string][]string) ([]byte, error) {
	if len(routes) == 0 {
		return nil, ErrNoRoutes
	}
	for _, r := range routes {
		urls := servers[r.Name]
		if len(urls) == 0 {
			return nil, fmt.Errorf("%w: no server URL for route %q: set %s", ErrBadInput, r.Name, r.URLVar())
		}
		for _, u := range urls {
			if !validURL.MatchString(u) {
				return nil, fmt.Errorf("%w: %s: bad URL %q", ErrBadInput, r.URLVar(), u)
			}
		}
	}
	var b bytes.Buffer
	err := dynamic.Execute(&b, struct {
		Routes      []Route
		Servers     map[string][]string
		EntryPoint  string
		HealthCheck HealthCheck
	}{routes, servers, EntryPoint, DefaultHealthCheck})
	if err != nil {
		return nil, fmt.Errorf("render dynamic config: %w", err)
	}
	return b.Bytes(), nil
}

// StaticConfig is Traefik's static configuration: the web entrypoint on
// 127.0.0.1:lbPort, the API and /ping on 127.0.0.1:apiPort, logs in
// stateDir and the file provider watching stateDir/dynamic.
func StaticConfig(lbPort, apiPort int, stateDir string) ([]byte, error) {
	for _, p := range []int{lbPort, apiPort} {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("%w: bad port %d", ErrBadInput, p)
		}
	}
	if lbPort == apiPort {
		return nil, fmt.Errorf("%w: LB_PORT and API_PORT must differ", ErrBadInput)
	}
	if !filepath.IsAbs(stateDir) || strings.ContainsAny(stateDir, "\"\n") {
		return nil, fmt.Errorf("%w: state directory %q must be an absolute path without quotes", ErrBadInput, stateDir)
	}
	r := strings.NewReplacer("@LB_PORT@", strconv.Itoa(lbPort), "@API_PORT@", strconv.Itoa(apiPort), "@STATE_DIR@", stateDir)
	return []byte(r.Replace(staticTmpl)), nil
}

// Render writes stateDir/traefik.yml (static) and stateDir/dynamic/routes.yml
// (dynamic, from the rule table) and returns the static file's path. Each
// file is replaced atomically, so a running Traefik (the file provider
// watches the directory) reloads the routes without a restart.
func Render(stateDir string, lbPort, apiPort int, servers map[string][]string) (string, error) {
	routes, err := Routes()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(stateDir, "dynamic"), 0o755); err != nil {
		return "", err
	}
	stateDir, err = filepath.Abs(stateDir)
	if err != nil {
		return "", err
	}
	static, err := StaticConfig(lbPort, apiPort, stateDir)
	if err != nil {
		return "", err
	}
	dyn, err := DynamicConfig(routes, servers)
	if err != nil {
		return "", err
	}
	staticPath := filepath.Join(stateDir, "traefik.yml")
	if err := writeAtomic(staticPath, static); err != nil {
		return "", err
	}
	// The temporary name does not end in .yml: the watcher ignores it.
	if err := writeAtomic(filepath.Join(stateDir, "dynamic", "routes.yml"), dyn); err != nil {
		return "", err
	}
	return staticPath, nil
}

func writeAtomic(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// NomadTagsHCL is the HCL list of a route's Nomad service tags, as the
// jobspecs in jobs/ carry them (traefik-render -nomad-tags NAME prints it).
func (r Route) NomadTagsHCL(indent string) string {
	var b strings.Builder
	b.WriteString("[\n")
	for _, t := range r.NomadTags() {
		b.WriteString(indent + "  " + strconv.Quote(t) + ",\n")
	}
	b.WriteString(indent + "]")
	return b.String()
}
