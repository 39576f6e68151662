// Package users is the RideShare users service (routes U1–U6 of the
// contract). It keeps no data: every read and write goes to the DBaaS
// orchestrator.
package users

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/rideshare-dbaas/rideshare/internal/dbaasclient"
	"github.com/rideshare-dbaas/rideshare/internal/httpx"
)

// DB is what the service needs from the DBaaS.
type DB interface {
	Write(ctx context.Context, op string, params any) (dbaasclient.Result, error)
	Read(ctx context.Context, op string, params any, minSeq uint64) (dbaasclient.Result, error)
	Clear(ctx context.Context) (uint64, error)
}

var _ DB = (*dbaasclient.Client)(nil)

// Options configures the service.
type Options struct {
	httpx.Config
	// DB, when set, replaces the client for Config.DBaaSURL.
	DB DB
}

// RegisterFlags binds the service's flags to o.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	o.Config.RegisterFlags(fs, "127.0.0.1:8081")
}

// Service is the users service.
type Service struct {
	cfg httpx.Config
	db  DB
	log *slog.Logger
	api *httpx.API
}

// New builds the service.
func New(opts Options) (*Service, error) {
	cfg, err := opts.Config.WithDefaults()
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, db: opts.DB, log: cfg.Logger}
	if s.db == nil {
		s.db = dbaasclient.New(cfg.DBaaSURL, dbaasclient.WithAdminToken(cfg.AdminToken))
	}
	s.api = httpx.NewAPI("/api/v1/users", s.log, func(ctx context.Context) error {
		_, err := s.db.Clear(ctx)
		return err
	})
	s.api.Handle("/api/v1/users", httpx.Methods{
		http.MethodPut: s.add,
		http.MethodGet: s.list,
	})
	s.api.Handle("/api/v1/users/{username}", httpx.Methods{
		http.MethodDelete: s.remove,
	})
	return s, nil
}

// Handler is the service's HTTP handler.
func (s *Service) Handler() http.Handler { return s.api.Handler() }

// Count is the request counter's value.
func (s *Service) Count() int64 { return s.api.Count() }

// Routes lists the route patterns and their methods (the OpenAPI check).
func (s *Service) Routes() map[string][]string { return s.api.Routes() }

// Run serves on the configured address until ctx ends, then finishes the
// requests in flight.
func (s *Service) Run(ctx context.Context) error {
	return httpx.Run(ctx, s.cfg, s.Handler())
}

// newUser is the U1 body.
type newUser struct {
	Username *string `json:"username"`
	Password *string `json:"password"`
}

// user is a validated U1 body; Password is lower-case hex.
type user struct {
	Username string
	Password string
}

// decodeNewUser decodes and validates a U1 body.
func decodeNewUser(body []byte) (user, *httpx.Error) {
	var nu newUser
	if e := httpx.DecodeJSON(body, &nu); e != nil {
		return user{}, e
	}
	if nu.Username == nil {
		return user{}, httpx.BadRequest(`field "username" is missing (a string is required)`)
	}
	if nu.Password == nil {
		return user{}, httpx.BadRequest(`field "password" is missing (a string is required)`)
	}
	if e := httpx.ValidateUsername(*nu.Username); e != nil {
		return user{}, e
	}
	if !isSHA1Hex(*nu.Password) {
		return user{}, httpx.BadRequest(`field "password" must be a SHA-1 hex digest: exactly 40 characters 0-9, a-f`)
	}
	return user{Username: *nu.Username, Password: strings.ToLower(*nu.Password)}, nil
}

func isSHA1Hex(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// add is U1: PUT /api/v1/users.
func (s *Service) add(w http.ResponseWriter, r *http.Request) {
	body, e := httpx.ReadBody(r, s.cfg.MaxBody)
	if e != nil {
		httpx.Fail(w, e)
		return
	}
	u, e := decodeNewUser(body)
	if e != nil {
		httpx.Fail(w, e)
		return
	}
	_, err := s.db.Write(r.Context(), "users.add", map[string]string{"username": u.Username, "password": u.Password})
	switch {
	case errors.Is(err, dbaasclient.ErrConflict):
		httpx.WriteError(w, http.StatusBadRequest, "username taken")
	case err != nil:
		httpx.DBFailure(w, r, s.log, err)
	default:
		httpx.WriteJSON(w, http.StatusCreated, httpx.Empty)
	}
}

// remove is U2: DELETE /api/v1/users/{username}.
func (s *Service) remove(w http.ResponseWriter, r *http.Request) {
	name, e := PathUsername(r)
	if e != nil {
		httpx.Fail(w, e)
		return
	}
	_, err := s.db.Write(r.Context(), "users.delete", map[string]string{"username": name})
	switch {
	case errors.Is(err, dbaasclient.ErrNotFound):
		httpx.WriteError(w, http.StatusBadRequest, "no such user")
	case err != nil:
		httpx.DBFailure(w, r, s.log, err)
	default:
		httpx.WriteJSON(w, http.StatusOK, httpx.Empty)
	}
}

// PathUsername is the {username} path parameter, unescaped (a name may hold
// an encoded "/") and validated.
func PathUsername(r *http.Request) (string, *httpx.Error) {
	name := chi.URLParam(r, "username")
	if r.URL.RawPath != "" { // chi routed on the escaped path
		n, err := url.PathUnescape(name)
		if err != nil {
			return "", httpx.BadRequest("username in the path is badly escaped")
		}
		name = n
	}
	return name, httpx.ValidateUsername(name)
}

// list is U3: GET /api/v1/users.
func (s *Service) list(w http.ResponseWriter, r *http.Request) {
	res, err := s.db.Read(r.Context(), "users.list", struct{}{}, 0)
	if err != nil {
		httpx.DBFailure(w, r, s.log, err)
		return
	}
	var out struct {
		Users []string `json:"users"`
	}
	if err := res.Decode(&out); err != nil {
		httpx.DBFailure(w, r, s.log, err)
		return
	}
	if len(out.Users) == 0 {
		httpx.NoContent(w)
		return
	}
	slices.Sort(out.Users) // byte order, whatever the DBaaS did
	httpx.WriteJSON(w, http.StatusOK, out.Users)
}
