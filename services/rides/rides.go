// Package rides is the RideShare rides service (routes R1–R8 of the
// contract, plus GET /api/v1/rides/stats, served by the DBaaS's stats
// plugin). It keeps no data: every read and write goes to the DBaaS
// orchestrator, and it checks users with the users service's
// GET /api/v1/users through the load balancer.
package rides

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

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
	// UsersURL is the load balancer's base URL; users are checked with
	// GET {UsersURL}/api/v1/users.
	UsersURL string
	// PublicURL is this service's public address, sent as Origin.
	PublicURL string

	DB         DB               // nil: a client for Config.DBaaSURL
	Users      UserChecker      // nil: ask UsersURL over HTTP
	HTTPClient *http.Client     // for the users check (nil: a default client)
	Now        func() time.Time // nil: time.Now
}

// RegisterFlags binds the service's flags to o.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	o.Config.RegisterFlags(fs, "127.0.0.1:8082")
	fs.StringVar(&o.UsersURL, "users-url", "http://127.0.0.1:8080",
		"base URL of the load balancer, through which users are checked")
	fs.StringVar(&o.PublicURL, "public-url", "http://127.0.0.1:8082",
		"this service's public address, sent as Origin to the users service")
}

// Service is the rides service.
type Service struct {
	cfg   httpx.Config
	db    DB
	users UserChecker
	areas Areas
	now   func() time.Time
	log   *slog.Logger
	api   *httpx.API
}

// New builds the service; it parses the area list.
func New(opts Options) (*Service, error) {
	cfg, err := opts.Config.WithDefaults()
	if err != nil {
		return nil, err
	}
	areas, err := ParseAreas(strings.NewReader(areaCSV))
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, db: opts.DB, users: opts.Users, areas: areas, now: opts.Now, log: cfg.Logger}
	if s.db == nil {
		s.db = dbaasclient.New(cfg.DBaaSURL, dbaasclient.WithAdminToken(cfg.AdminToken))
	}
	if s.users == nil {
		if opts.UsersURL == "" || opts.PublicURL == "" {
			return nil, errors.New("rides: users URL and public URL are required")
		}
		hc := opts.HTTPClient
		if hc == nil {
			hc = httpx.NewHTTPClient()
		}
		s.users = &balancerUsers{client: hc, url: strings.TrimRight(opts.UsersURL, "/") + "/api/v1/users",
			origin: opts.PublicURL}
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.api = httpx.NewAPI("/api/v1/rides", s.log, func(ctx context.Context) error {
		_, err := s.db.Clear(ctx)
		return err
	})
	s.api.Handle("/api/v1/rides", httpx.Methods{
		http.MethodPost: s.create,
		http.MethodGet:  s.upcoming,
	})
	// Registered before {rideId}; chi prefers the static segment anyway.
	s.api.Handle("/api/v1/rides/count", httpx.Methods{http.MethodGet: s.count})
	// Not in the contract: statistics served by the DBaaS's stats plugin
	// (stats.go). Static, so it wins over {rideId} too.
	s.api.Handle("/api/v1/rides/stats", httpx.Methods{http.MethodGet: s.stats})
	s.api.Handle("/api/v1/rides/{rideId}", httpx.Methods{
		http.MethodGet:    s.details,
		http.MethodPost:   s.join,
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

// newRide is the R1 body. Areas stay raw: they may be integers or strings.
type newRide struct {
	CreatedBy   *string         `json:"created_by"`
	Timestamp   *string         `json:"timestamp"`
	Source      json.RawMessage `json:"source"`
	Destination json.RawMessage `json:"destination"`
}

// ride is a validated R1 body, in the DBaaS's terms.
type ride struct {
	CreatedBy   string `json:"created_by"`
	Timestamp   int64  `json:"timestamp"`
	Source      int    `json:"source"`
	Destination int    `json:"destination"`
}

// decodeNewRide decodes and validates an R1 body.
func (s *Service) decodeNewRide(body []byte) (ride, *httpx.Error) {
	var nr newRide
	if e := httpx.DecodeJSON(body, &nr); e != nil {
		return ride{}, e
	}
	if nr.CreatedBy == nil {
		return ride{}, httpx.BadRequest(`field "created_by" is missing (a string is required)`)
	}
	if e := httpx.ValidateUsername(*nr.CreatedBy); e != nil {
		return ride{}, httpx.BadRequest("created_by: %s", e.Msg)
	}
	if nr.Timestamp == nil {
		return ride{}, httpx.BadRequest(`field "timestamp" is missing (DD-MM-YYYY:SS-MM-HH)`)
	}
	t, err := ParseTimestamp(*nr.Timestamp, s.cfg.Location)
	if err != nil {
		return ride{}, httpx.BadRequest("%v", err)
	}
	src, e := s.areas.FromJSON("source", nr.Source)
	if e != nil {
		return ride{}, e
	}
	dst, e := s.areas.FromJSON("destination", nr.Destination)
	if e != nil {
		return ride{}, e
	}
	if src == dst {
		return ride{}, httpx.BadRequest("source and destination are the same area")
	}
	return ride{CreatedBy: *nr.CreatedBy, Timestamp: t.Unix(), Source: src, Destination: dst}, nil
}

// checkUser answers 400 for an unknown user and 503 when the users service
// cannot say; it reports whether the handler may go on.
func (s *Service) checkUser(w http.ResponseWriter, r *http.Request, name string) bool {
	ok, err := s.users.Exists(r.Context(), name)
	if err != nil {
		s.log.WarnContext(r.Context(), "users check failed", "err", err)
		httpx.WriteError(w, http.StatusServiceUnavailable, "could not check the user with the users service, try again")
		return false
	}
	if !ok {
		httpx.WriteError(w, http.StatusBadRequest, "unknown user")
		return false
	}
	return true
}

// create is R1: POST /api/v1/rides.
func (s *Service) create(w http.ResponseWriter, r *http.Request) {
	body, e := httpx.ReadBody(r, s.cfg.MaxBody)
	if e != nil {
		httpx.Fail(w, e)
		return
	}
	rd, e := s.decodeNewRide(body)
	if e != nil {
		httpx.Fail(w, e)
		return
	}
	if !s.checkUser(w, r, rd.CreatedBy) {
		return
	}
	res, err := s.db.Write(r.Context(), "rides.create", rd)
	if errors.Is(err, dbaasclient.ErrNotFound) { // the user went away meanwhile
		httpx.WriteError(w, http.StatusBadRequest, "unknown user")
		return
	}
	if err != nil {
		httpx.DBFailure(w, r, s.log, err)
		return
	}
	var out struct {
		RideID int64 `json:"rideId"`
	}
	if err := res.Decode(&out); err != nil {
		httpx.DBFailure(w, r, s.log, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, out)
}

// upcomingQuery validates R2's query string.
func (s *Service) upcomingQuery(rawQuery string) (src, dst int, e *httpx.Error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return 0, 0, httpx.BadRequest("malformed query string")
	}
	for _, f := range []string{"source", "destination"} {
		if _, ok := q[f]; !ok {
			return 0, 0, httpx.BadRequest("query parameter %q is missing", f)
		}
	}
	if src, e = s.areas.FromString("source", q.Get("source")); e != nil {
		return 0, 0, e
	}
	if dst, e = s.areas.FromString("destination", q.Get("destination")); e != nil {
		return 0, 0, e
	}
	return src, dst, nil
}

// upcoming is R2: GET /api/v1/rides?source=S&destination=D.
//
// Every call reaches the DBaaS as exactly one read, valid or not, because
// the autoscaler counts reads and load is generated through R2: an invalid
// query still makes one cheap rides.count read before its 400.
func (s *Service) upcoming(w http.ResponseWriter, r *http.Request) {
	src, dst, e := s.upcomingQuery(r.URL.RawQuery)
	if e != nil {
		if _, err := s.db.Read(r.Context(), "rides.count", struct{}{}, 0); err != nil {
			s.log.DebugContext(r.Context(), "the read for an invalid R2 failed", "err", err)
		}
		httpx.Fail(w, e)
		return
	}
	res, err := s.db.Read(r.Context(), "rides.upcoming",
		map[string]int64{"source": int64(src), "destination": int64(dst), "after": s.now().Unix()}, 0)
	if err != nil {
		httpx.DBFailure(w, r, s.log, err)
		return
	}
	var out struct {
		Rides []upcomingRow `json:"rides"`
	}
	if err := res.Decode(&out); err != nil {
		httpx.DBFailure(w, r, s.log, err)
		return
	}
	if len(out.Rides) == 0 {
		httpx.NoContent(w)
		return
	}
	slices.SortStableFunc(out.Rides, func(a, b upcomingRow) int {
		return cmp.Or(cmp.Compare(a.Timestamp, b.Timestamp), cmp.Compare(a.RideID, b.RideID))
	})
	type item struct {
		RideID    int64  `json:"rideId"`
		Username  string `json:"username"`
		Timestamp string `json:"timestamp"`
	}
	list := make([]item, len(out.Rides))
	for i, rd := range out.Rides {
		list[i] = item{rd.RideID, rd.Username, FormatTimestamp(rd.Timestamp, s.cfg.Location)}
	}
	httpx.WriteJSON(w, http.StatusOK, list)
}

// upcomingRow is one ride in the rides.upcoming result.
type upcomingRow struct {
	RideID    int64  `json:"rideId"`
	Username  string `json:"username"`
	Timestamp int64  `json:"timestamp"`
}

// ParseRideID parses a rideId path segment: a positive decimal integer that
// fits in 63 bits.
func ParseRideID(s string) (int64, *httpx.Error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, httpx.BadRequest("rideId must be a positive integer")
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, httpx.BadRequest("rideId must be a positive integer below 2^63")
	}
	if id < 1 {
		return 0, httpx.BadRequest("rideId must be a positive integer")
	}
	return id, nil
}

func rideIDParam(r *http.Request) (int64, *httpx.Error) {
	return ParseRideID(chi.URLParam(r, "rideId"))
}

// details is R3: GET /api/v1/rides/{rideId}.
func (s *Service) details(w http.ResponseWriter, r *http.Request) {
	id, e := rideIDParam(r)
	if e != nil {
		httpx.Fail(w, e)
		return
	}
	res, err := s.db.Read(r.Context(), "rides.get", map[string]int64{"rideId": id}, 0)
	if errors.Is(err, dbaasclient.ErrNotFound) {
		httpx.NoContent(w)
		return
	}
	if err != nil {
		httpx.DBFailure(w, r, s.log, err)
		return
	}
	var out struct {
		Ride struct {
			RideID      int64    `json:"rideId"`
			CreatedBy   string   `json:"created_by"`
			Users       []string `json:"users"`
			Timestamp   int64    `json:"timestamp"`
			Source      int      `json:"source"`
			Destination int      `json:"destination"`
		} `json:"ride"`
	}
	if err := res.Decode(&out); err != nil {
		httpx.DBFailure(w, r, s.log, err)
		return
	}
	rd := out.Ride
	if rd.Users == nil {
		rd.Users = []string{}
	}
	httpx.WriteJSON(w, http.StatusOK, struct {
		RideID      int64    `json:"rideId"`
		CreatedBy   string   `json:"created_by"`
		Users       []string `json:"users"`
		Timestamp   string   `json:"timestamp"`
		Source      int      `json:"source"`
		Destination int      `json:"destination"`
	}{rd.RideID, rd.CreatedBy, rd.Users, FormatTimestamp(rd.Timestamp, s.cfg.Location), rd.Source, rd.Destination})
}

// joinRequest is the R4 body.
type joinRequest struct {
	Username *string `json:"username"`
}

// decodeJoin decodes and validates an R4 body.
func decodeJoin(body []byte) (string, *httpx.Error) {
	var jr joinRequest
	if e := httpx.DecodeJSON(body, &jr); e != nil {
		return "", e
	}
	if jr.Username == nil {
		return "", httpx.BadRequest(`field "username" is missing (a string is required)`)
	}
	if e := httpx.ValidateUsername(*jr.Username); e != nil {
		return "", e
	}
	return *jr.Username, nil
}

// join is R4: POST /api/v1/rides/{rideId}.
func (s *Service) join(w http.ResponseWriter, r *http.Request) {
	id, e := rideIDParam(r)
	if e != nil {
		httpx.Fail(w, e)
		return
	}
	body, e := httpx.ReadBody(r, s.cfg.MaxBody)
	if e != nil {
		httpx.Fail(w, e)
		return
	}
	name, e := decodeJoin(body)
	if e != nil {
		httpx.Fail(w, e)
		return
	}
	if !s.checkUser(w, r, name) {
		return
	}
	_, err := s.db.Write(r.Context(), "rides.join", map[string]any{"rideId": id, "username": name})
	var re *dbaasclient.RefusalError
	switch {
	case errors.Is(err, dbaasclient.ErrNotFound):
		httpx.NoContent(w)
	case errors.Is(err, dbaasclient.ErrInvalid): // the user went away meanwhile
		httpx.WriteError(w, http.StatusBadRequest, "unknown user")
	case errors.As(err, &re) && re.Code == dbaasclient.CodeConflict:
		httpx.WriteError(w, http.StatusBadRequest, fmt.Sprintf("cannot join: %s", re.Message))
	case err != nil:
		httpx.DBFailure(w, r, s.log, err)
	default:
		httpx.WriteJSON(w, http.StatusOK, httpx.Empty)
	}
}

// remove is R5: DELETE /api/v1/rides/{rideId}.
func (s *Service) remove(w http.ResponseWriter, r *http.Request) {
	id, e := rideIDParam(r)
	if e != nil {
		httpx.Fail(w, e)
		return
	}
	_, err := s.db.Write(r.Context(), "rides.delete", map[string]int64{"rideId": id})
	switch {
	case errors.Is(err, dbaasclient.ErrNotFound):
		httpx.WriteError(w, http.StatusBadRequest, "no such ride")
	case err != nil:
		httpx.DBFailure(w, r, s.log, err)
	default:
		httpx.WriteJSON(w, http.StatusOK, httpx.Empty)
	}
}

// count is R6: GET /api/v1/rides/count.
func (s *Service) count(w http.ResponseWriter, r *http.Request) {
	res, err := s.db.Read(r.Context(), "rides.count", struct{}{}, 0)
	if err != nil {
		httpx.DBFailure(w, r, s.log, err)
		return
	}
	var out struct {
		Count int64 `json:"count"`
	}
	if err := res.Decode(&out); err != nil {
		httpx.DBFailure(w, r, s.log, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, []int64{out.Count})
}
