package httpx

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rideshare-dbaas/rideshare/internal/apirecord"
	"github.com/rideshare-dbaas/rideshare/internal/metrics"
	"github.com/rideshare-dbaas/rideshare/internal/reqid"
)

// Methods maps an HTTP method to its handler for one route.
type Methods map[string]http.HandlerFunc

// ClearFunc empties the database (the services' POST /api/v1/db/clear).
type ClearFunc func(ctx context.Context) error

// API is the skeleton both services build on: a chi router whose unknown
// routes answer 404 and whose known routes answer 405 with an Allow header
// for other methods, plus the routes every service has:
//
//	GET, DELETE /api/v1/_count  read or reset the request counter
//	POST        /api/v1/db/clear empty the database
//	GET         /healthz         liveness
//	GET         /metrics         Prometheus metrics (package metrics)
//
// Requests under Prefix (e.g. /api/v1/users) are counted, whatever their
// outcome; nothing else is.
type API struct {
	prefix string
	log    *slog.Logger
	mux    *chi.Mux
	allow  map[string]string // route pattern -> Allow header value
	count  atomic.Int64
	met    *metrics.Registry
}

// NewAPI returns the skeleton for a service whose own routes live under
// prefix. clear backs /api/v1/db/clear.
//
// The service's name for metrics and records is the prefix's last element
// ("users" for /api/v1/users).
func NewAPI(prefix string, log *slog.Logger, clear ClearFunc) *API {
	name := prefix[strings.LastIndex(prefix, "/")+1:]
	a := &API{prefix: prefix, log: log, mux: chi.NewRouter(), allow: map[string]string{}, met: metrics.New(name)}
	a.mux.Use(a.met.Middleware(apirecord.FromEnv(name)))
	a.mux.NotFound(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, "no route for "+r.Method+" "+clip(r.URL.Path))
	})
	// Handle registers every route for all the methods chi knows, so chi
	// calls this only for a method it does not know at all (e.g. "BREW"):
	// answer 405 on a known path and 404 elsewhere.
	a.mux.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		pattern := a.mux.Find(chi.NewRouteContext(), http.MethodGet, routePath(r))
		if allow, ok := a.allow[pattern]; ok {
			methodNotAllowed(w, r, allow)
			return
		}
		a.mux.NotFoundHandler()(w, r)
	})
	a.Handle("/api/v1/_count", Methods{
		http.MethodGet:    func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, http.StatusOK, []int64{a.count.Load()}) },
		http.MethodDelete: func(w http.ResponseWriter, r *http.Request) { a.count.Store(0); WriteJSON(w, http.StatusOK, Empty) },
	})
	a.Handle("/api/v1/db/clear", Methods{http.MethodPost: func(w http.ResponseWriter, r *http.Request) {
		if err := clear(r.Context()); err != nil {
			DBFailure(w, r, log, err)
			return
		}
		WriteJSON(w, http.StatusOK, Empty)
	}})
	a.Handle("/healthz", Methods{http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, Empty)
	}})
	a.Handle("/metrics", Methods{http.MethodGet: a.met.Handler().ServeHTTP})
	return a
}

// Metrics is the service's registry, for metrics of its own.
func (a *API) Metrics() *metrics.Registry { return a.met }

// Routes lists every route pattern with the methods it serves (the
// OpenAPI check compares them with docs/openapi/services.yaml). Every
// pattern is registered for all methods and answers 405 for the others,
// so walking the chi router would not tell.
func (a *API) Routes() map[string][]string {
	out := make(map[string][]string, len(a.allow))
	for p, allow := range a.allow {
		out[p] = strings.Split(allow, ", ")
	}
	return out
}

// Handle registers the methods of one route. Any other method on the same
// path answers 405 with Allow listing these methods.
//
// chi's own 405 is not used for known methods: it would let a request such
// as DELETE /api/v1/rides/count fall through to /api/v1/rides/{rideId}, and
// it builds Allow from a map in random order.
func (a *API) Handle(pattern string, m Methods) {
	methods := make([]string, 0, len(m))
	for k := range m {
		methods = append(methods, k)
	}
	slices.Sort(methods)
	allow := strings.Join(methods, ", ")
	a.allow[pattern] = allow
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if h, ok := m[r.Method]; ok {
			h(w, r)
			return
		}
		methodNotAllowed(w, r, allow)
	})
}

// Count is the counter's current value.
func (a *API) Count() int64 { return a.count.Load() }

// Handler is the service's whole HTTP handler: the request id (package
// reqid: taken from X-Request-ID or made, answered in the same header and
// in error bodies, logged as request_id), logging and panic recovery, the
// counter, then routing.
func (a *API) Handler() http.Handler {
	return reqid.Middleware(a.logRequests(a.recoverPanics(a.countRequests(a.mux))))
}

// Counted reports whether a request to path counts: the service's own API
// routes, i.e. Prefix itself and everything under it.
func (a *API) Counted(path string) bool {
	return path == a.prefix || strings.HasPrefix(path, a.prefix+"/")
}

func (a *API) countRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.Counted(r.URL.Path) {
			a.count.Add(1)
		}
		next.ServeHTTP(w, r)
	})
}

func (a *API) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				a.log.ErrorContext(r.Context(), "handler panicked", "method", r.Method, "path", clip(r.URL.Path), "panic", v)
				WriteError(w, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// logRequests logs 5xx answers at warn level and the rest at debug.
func (a *API) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := metrics.NewStatusWriter(w)
		next.ServeHTTP(sw, r)
		level := slog.LevelDebug
		if sw.Status() >= 500 {
			level = slog.LevelWarn
		}
		a.log.Log(r.Context(), level, "request", "method", r.Method, "path", clip(r.URL.Path),
			"status", sw.Status(), "duration", time.Since(start))
	})
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	WriteError(w, http.StatusMethodNotAllowed, "method "+clip(r.Method)+" not allowed; allowed: "+allow)
}

// routePath is the path chi routes on.
func routePath(r *http.Request) string {
	if r.URL.RawPath != "" {
		return r.URL.RawPath
	}
	return r.URL.Path
}

// clip shortens s for logs and error messages (paths can hold 100k-char
// usernames).
func clip(s string) string {
	const n = 120
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
