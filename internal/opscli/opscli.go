// Package opscli is the rideshare command: the operators' CLI over the
// orchestrator's HTTP API (docs/dbaas-api.md), built on cobra.
//
// Human tables by default, --json for scripts; the token for admin
// commands (crash, scale) from --token-file, RIDESHARE_ADMIN_TOKEN_FILE or
// RIDESHARE_ADMIN_TOKEN. Exit codes (also in `rideshare --help`):
//
//	0  done (status: the cluster is ready)
//	1  failed otherwise (an unexpected answer)
//	2  usage: unknown command, bad argument or flag
//	3  the orchestrator cannot be reached
//	4  unauthorized: the admin token is missing or wrong (401)
//	5  refused: the orchestrator said no (400, 404, 409: e.g. no slave to crash)
//	6  not ready: no master is ready, or the DBaaS is unavailable (503)
package opscli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rideshare-dbaas/rideshare/internal/adminauth"
)

// Exit codes.
const (
	ExitOK           = 0
	ExitFailed       = 1
	ExitUsage        = 2
	ExitUnreachable  = 3
	ExitUnauthorized = 4
	ExitRefused      = 5
	ExitNotReady     = 6
)

const exitHelp = `Exit codes:
  0  done (status: the cluster is ready)
  1  failed otherwise (an unexpected answer)
  2  usage: unknown command, bad argument or flag
  3  the orchestrator cannot be reached
  4  unauthorized: the admin token is missing or wrong
  5  refused: the orchestrator said no (e.g. no slave to crash, a bad count)
  6  not ready: no master is ready, or the DBaaS is unavailable (503)`

// ExitError carries an exit code.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

func exitf(code int, format string, args ...any) error {
	return &ExitError{Code: code, Err: fmt.Errorf(format, args...)}
}

// cli holds the global flags and the HTTP client.
type cli struct {
	url       string
	tokenFile string
	asJSON    bool
	timeout   time.Duration
	out, err  io.Writer
	http      *http.Client
	token     string
	tokenRead bool
}

// Main runs the command line args and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			fmt.Fprintln(stderr, "rideshare:", ee.Err)
		}
		return ee.Code
	}
	// cobra's own errors: unknown command or flag, wrong argument count.
	fmt.Fprintln(stderr, "rideshare:", err)
	return ExitUsage
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	c := &cli{out: stdout, err: stderr}
	root := &cobra.Command{
		Use:   "rideshare",
		Short: "Operate a RideShare DBaaS: see and drive its workers through the orchestrator's API",
		Long: `rideshare talks to the DBaaS orchestrator's HTTP API (docs/dbaas-api.md).

The orchestrator is --url, $RIDESHARE_URL or http://127.0.0.1:8000. Admin
commands (crash, scale N|auto) send the admin token from --token-file,
$RIDESHARE_ADMIN_TOKEN_FILE or $RIDESHARE_ADMIN_TOKEN; a dev-mode
orchestrator without a token needs none.

` + exitHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			c.http = &http.Client{Timeout: c.timeout}
			c.url = strings.TrimRight(c.url, "/")
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	def := os.Getenv("RIDESHARE_URL")
	if def == "" {
		def = "http://127.0.0.1:8000"
	}
	pf := root.PersistentFlags()
	pf.StringVar(&c.url, "url", def, "the orchestrator's base URL")
	pf.StringVar(&c.tokenFile, "token-file", "", "file (mode 0600) holding the admin token")
	pf.BoolVar(&c.asJSON, "json", false, "print JSON (for scripts) instead of tables")
	pf.DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline of each request")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return exitf(ExitUsage, "%v", err) })
	root.AddCommand(c.statusCmd(), c.workersCmd(), c.crashCmd(), c.scaleCmd(), c.pluginsCmd(),
		c.eventsCmd(), c.watchCmd(), pluginToolCmd(stdout))
	return root
}

// adminToken loads the token once.
func (c *cli) adminToken() (string, error) {
	if !c.tokenRead {
		tok, err := adminauth.Load(c.tokenFile)
		if err != nil {
			return "", exitf(ExitUsage, "%v", err)
		}
		c.token, c.tokenRead = tok, true
	}
	return c.token, nil
}

// apiError is the orchestrator's JSON error.
type apiError struct {
	Error string `json:"error"`
}

// do calls the API and decodes a 2xx answer into out (when not nil). It
// maps failures to exit codes.
func (c *cli) do(ctx context.Context, method, path string, body any, admin bool, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, rd)
	if err != nil {
		return exitf(ExitUsage, "bad --url %q: %v", c.url, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if admin {
		tok, err := c.adminToken()
		if err != nil {
			return err
		}
		adminauth.SetHeader(req, tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return exitf(ExitUnreachable, "cannot reach the orchestrator at %s: %v", c.url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return exitf(ExitUnreachable, "reading the answer of %s %s: %v", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e apiError
		_ = json.Unmarshal(raw, &e)
		msg := e.Error
		if msg == "" {
			msg = strings.TrimSpace(string(raw))
		}
		what := fmt.Sprintf("%s %s: %d %s", method, path, resp.StatusCode, msg)
		switch {
		case resp.StatusCode == http.StatusUnauthorized:
			return exitf(ExitUnauthorized, "%s (give the admin token: --token-file or $%s)", what, adminauth.EnvTokenFile)
		case resp.StatusCode == http.StatusServiceUnavailable:
			return exitf(ExitNotReady, "%s", what)
		case resp.StatusCode/100 == 4:
			return exitf(ExitRefused, "%s", what)
		}
		return exitf(ExitFailed, "%s", what)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return exitf(ExitFailed, "%s %s: unreadable answer: %v", method, path, err)
		}
	}
	return nil
}

// printJSON writes v indented.
func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
