package httpx

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/adminauth"
	"github.com/rideshare-dbaas/rideshare/internal/reqid"
)

// DefaultMaxBody is the default request body cap (1 MiB).
const DefaultMaxBody = 1 << 20

// Config is what both services are configured with.
type Config struct {
	Listen   string         // address to listen on, host:port
	DBaaSURL string         // the DBaaS orchestrator's base URL
	MaxBody  int64          // request body cap in bytes; larger bodies get 413
	Location *time.Location // time zone of ride timestamps (nil: UTC)
	Logger   *slog.Logger   // nil: discard
	// AdminToken is sent to the DBaaS with db/clear, an admin endpoint
	// outside dev mode. Empty: WithDefaults loads it from AdminTokenFile or
	// the environment (package adminauth); still empty, none is sent.
	AdminToken     string
	AdminTokenFile string

	// ShutdownTimeout bounds how long Run waits for in-flight requests
	// after its context ends (0: 30 s).
	ShutdownTimeout time.Duration
}

// RegisterFlags binds --listen, --dbaas-url, --max-body and --timezone to c,
// with the given default listen address.
func (c *Config) RegisterFlags(fs *flag.FlagSet, defaultListen string) {
	fs.StringVar(&c.Listen, "listen", defaultListen, "address to listen on (host:port)")
	fs.StringVar(&c.DBaaSURL, "dbaas-url", "http://127.0.0.1:8000", "base URL of the DBaaS orchestrator")
	fs.Int64Var(&c.MaxBody, "max-body", DefaultMaxBody, "request body cap in bytes; larger bodies get 413")
	fs.StringVar(&c.AdminTokenFile, "dbaas-token-file", "", "file (mode 0600) holding the DBaaS admin token, sent with db/clear (default: $"+adminauth.EnvTokenFile+", else $"+adminauth.EnvToken+")")
	c.Location = time.UTC
	fs.Func("timezone", "IANA time zone of ride timestamps (default UTC)", func(s string) error {
		loc, err := time.LoadLocation(s)
		if err != nil {
			return err
		}
		c.Location = loc
		return nil
	})
}

// WithDefaults fills the zero fields of c and checks the rest.
func (c Config) WithDefaults() (Config, error) {
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.MaxBody < 0 {
		return c, fmt.Errorf("max body %d is negative", c.MaxBody)
	}
	if c.Location == nil {
		c.Location = time.UTC
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c.Logger = reqid.Logger(c.Logger) // request_id on lines about a request
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.AdminToken == "" {
		tok, err := adminauth.Load(c.AdminTokenFile)
		if err != nil {
			return c, err
		}
		c.AdminToken = tok
	}
	if c.DBaaSURL == "" {
		return c, errors.New("no DBaaS URL")
	}
	if !strings.HasPrefix(c.DBaaSURL, "http://") && !strings.HasPrefix(c.DBaaSURL, "https://") {
		return c, fmt.Errorf("DBaaS URL %q is not http(s)", c.DBaaSURL)
	}
	return c, nil
}

// NewHTTPClient returns an HTTP client for calls to another service: no
// overall timeout (deadlines come from contexts) and enough idle
// connections per host for concurrent requests.
func NewHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: t}
}

// NewLogger returns the JSON logger on w the binaries use, named service.
// A line logged with a request's context carries its request_id (package
// reqid).
func NewLogger(w io.Writer, service string) *slog.Logger {
	return slog.New(reqid.NewHandler(slog.NewJSONHandler(w, nil))).With("service", service)
}

// Run listens on c.Listen and serves h until ctx ends, then stops accepting
// and waits (at most c.ShutdownTimeout) for in-flight requests to finish.
func Run(ctx context.Context, c Config, h http.Handler) error {
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return Serve(ctx, c, ln, h)
}

// Serve is Run on an existing listener, which it closes.
func Serve(ctx context.Context, c Config, ln net.Listener, h http.Handler) error {
	c, err := c.WithDefaults()
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(c.Logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	c.Logger.Info("listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	c.Logger.Info("shutting down; finishing in-flight requests", "timeout", c.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	c.Logger.Info("stopped")
	return nil
}
