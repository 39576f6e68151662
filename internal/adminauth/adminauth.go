// Package adminauth guards the operators' endpoints (crash, clear, scale)
// with a bearer token, and loads that token the same way in every binary:
// from a file (mode 0600, never in the repo) or the environment.
//
// Dev mode is explicit: with Dev set and no token, the guard lets every
// request through (make run and the test stacks say so when they start).
// Outside dev mode a token is required, compared in constant time; a
// request without it gets 401 with a JSON error.
package adminauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/rideshare-dbaas/rideshare/internal/reqid"
)

// Environment variables every binary reads (flags win over them).
const (
	EnvToken     = "RIDESHARE_ADMIN_TOKEN"      // the token itself
	EnvTokenFile = "RIDESHARE_ADMIN_TOKEN_FILE" // a file holding it
)

// MinLength is the shortest token accepted: a token is a secret, not a
// password someone types (scripts/stack.sh makes 32 random bytes).
const MinLength = 16

// Errors.
var (
	// ErrNoToken: not in dev mode and no token configured.
	ErrNoToken = errors.New("no admin token: give one (--admin-token-file or " + EnvTokenFile + " or " + EnvToken + ") or run in dev mode (--dev)")
	// ErrExposedWithoutToken: listening beyond loopback without a token.
	ErrExposedWithoutToken = errors.New("refusing to listen beyond loopback without an admin token")
)

// Load returns the token from file (a flag; empty: none), else from the
// file named by RIDESHARE_ADMIN_TOKEN_FILE, else from RIDESHARE_ADMIN_TOKEN.
// It returns "" when none is set. A file that group or others can read or
// write is refused, as is a token shorter than MinLength.
func Load(file string) (string, error) {
	if file == "" {
		file = os.Getenv(EnvTokenFile)
	}
	if file != "" {
		return ReadFile(file)
	}
	tok := strings.TrimSpace(os.Getenv(EnvToken))
	if tok == "" {
		return "", nil
	}
	if err := check(tok); err != nil {
		return "", fmt.Errorf("%s: %w", EnvToken, err)
	}
	return tok, nil
}

// ReadFile reads a token file: private to its owner, one token, surrounding
// white space ignored.
func ReadFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("admin token file %s has mode %04o: group and others must have no access (chmod 600 it)", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if err := check(tok); err != nil {
		return "", fmt.Errorf("admin token file %s: %w", path, err)
	}
	return tok, nil
}

func check(tok string) error {
	switch {
	case len(tok) < MinLength:
		return fmt.Errorf("token is %d bytes; at least %d are required", len(tok), MinLength)
	case strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return errors.New("token contains white space or control characters")
	}
	return nil
}

// Guard protects admin routes.
type Guard struct {
	sum [sha256.Size]byte // of the token; zero when there is none
	has bool
	dev bool
}

// NewGuard returns a guard for token. Without a token it needs dev mode
// (ErrNoToken otherwise).
func NewGuard(token string, dev bool) (*Guard, error) {
	g := &Guard{dev: dev}
	if token != "" {
		if err := check(token); err != nil {
			return nil, fmt.Errorf("admin token: %w", err)
		}
		g.sum, g.has = sha256.Sum256([]byte(token)), true
	}
	if !g.has && !dev {
		return nil, ErrNoToken
	}
	return g, nil
}

// Open reports whether admin routes answer without a token (dev mode and
// no token configured).
func (g *Guard) Open() bool { return !g.has }

// Dev reports whether dev mode is on.
func (g *Guard) Dev() bool { return g.dev }

// Allowed reports whether r carries the token (always true when Open).
// Both sides are hashed first, so the comparison takes the same time
// whatever the length or content of what was sent.
func (g *Guard) Allowed(r *http.Request) bool {
	if !g.has {
		return true
	}
	got, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], g.sum[:]) == 1
}

func bearer(h string) (string, bool) {
	const p = "bearer "
	if len(h) < len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	return strings.TrimSpace(h[len(p):]), true
}

// Wrap answers 401 {"error": ...} to requests without the token and passes
// the others to next.
func (g *Guard) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.Allowed(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rideshare-admin"`)
			msg := "this is an admin endpoint: send the admin token as Authorization: Bearer <token>"
			if r.Header.Get("Authorization") != "" {
				msg = "the admin token is wrong"
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			// The JSON error shape of internal/httpx (not imported: httpx
			// depends on the DBaaS client, which depends on this package).
			body := map[string]string{"error": msg}
			if id := reqid.FromResponse(w); id != "" {
				body[reqid.Attr] = id
			}
			_ = json.NewEncoder(w).Encode(body)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// CheckListen refuses an address beyond loopback when there is no token:
// dev mode is for one machine only.
func CheckListen(addr, token string) error {
	if token != "" || IsLoopback(addr) {
		return nil
	}
	return fmt.Errorf("%w: %s (give an admin token, or listen on 127.0.0.1)", ErrExposedWithoutToken, addr)
}

// IsLoopback reports whether a listen address (host:port) binds loopback
// only. An empty host or an unspecified address (0.0.0.0, ::) binds every
// interface; a name other than localhost may resolve anywhere.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// Client helpers -------------------------------------------------------

// SetHeader adds the bearer token to req when token is set.
func SetHeader(req *http.Request, token string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}
