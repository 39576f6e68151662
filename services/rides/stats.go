package rides

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/rideshare-dbaas/rideshare/internal/dbaasclient"
	"github.com/rideshare-dbaas/rideshare/internal/httpx"
)

// The stats plugin's read operations (worker/plugins/stats).
const (
	opRidesPerArea = "stats.rides_per_area"
	opTopUsers     = "stats.top_users"
)

// Top-users limits of GET /api/v1/rides/stats (the plugin's own bounds).
const (
	defaultTopUsers = 10
	maxTopUsers     = 100
)

// AreaStats is one area of the stats reply.
type AreaStats struct {
	Area      int    `json:"area"`
	Name      string `json:"name"` // from AreaNameEnum.csv; "" for an area not in it
	RidesFrom int64  `json:"rides_from"`
	RidesTo   int64  `json:"rides_to"`
}

// UserStats is one user of the stats reply.
type UserStats struct {
	Username string `json:"username"`
	Created  int64  `json:"created"`
	Joined   int64  `json:"joined"`
}

// Stats is the reply of GET /api/v1/rides/stats.
type Stats struct {
	Areas    []AreaStats `json:"areas"`
	TopUsers []UserStats `json:"top_users"`
}

// errStatsNotInstalled is what the rides service says when the DBaaS does
// not know the stats operations.
const errStatsNotInstalled = "ride statistics are not available: the stats plugin is not installed in the DBaaS " +
	"(read operation %s is unknown); see docs/plugins.md, \"Ship a new operation: the stats example\""

// statsLimit reads ?limit= (top users, 1..100, default 10). Other query
// parameters are ignored; a repeated one counts once, the first.
func statsLimit(rawQuery string) (int, *httpx.Error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return 0, httpx.BadRequest("malformed query string")
	}
	if _, ok := q["limit"]; !ok {
		return defaultTopUsers, nil
	}
	s := q.Get("limit")
	bad := httpx.BadRequest("limit must be an integer from 1 to %d", maxTopUsers)
	if s == "" || len(s) > 3 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, bad
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > maxTopUsers {
		return 0, bad
	}
	return n, nil
}

// stats is GET /api/v1/rides/stats: rides per area (every area with a
// ride, busiest first) and the most active users, from two DBaaS reads of
// the stats plugin, made concurrently.
func (s *Service) stats(w http.ResponseWriter, r *http.Request) {
	limit, e := statsLimit(r.URL.RawQuery)
	if e != nil {
		httpx.Fail(w, e)
		return
	}
	var (
		wg               sync.WaitGroup
		areas            []AreaStats
		users            []UserStats
		areaErr, userErr error
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		areas, areaErr = s.readAreas(r.Context())
	}()
	go func() {
		defer wg.Done()
		users, userErr = s.readTopUsers(r.Context(), limit)
	}()
	wg.Wait()
	for _, f := range []struct {
		op  string
		err error
	}{{opRidesPerArea, areaErr}, {opTopUsers, userErr}} {
		if errors.Is(f.err, dbaasclient.ErrUnknownOp) {
			s.log.WarnContext(r.Context(), "stats plugin not installed in the DBaaS", "op", f.op, "err", f.err)
			httpx.WriteError(w, http.StatusNotImplemented, fmt.Sprintf(errStatsNotInstalled, f.op))
			return
		}
	}
	for _, err := range []error{areaErr, userErr} {
		if err != nil {
			httpx.DBFailure(w, r, s.log, err)
			return
		}
	}
	httpx.WriteJSON(w, http.StatusOK, Stats{Areas: areas, TopUsers: users})
}

func (s *Service) readAreas(ctx context.Context) ([]AreaStats, error) {
	res, err := s.db.Read(ctx, opRidesPerArea, struct{}{}, 0)
	if err != nil {
		return nil, err
	}
	var out struct {
		Areas []AreaStats `json:"areas"`
	}
	if err := res.Decode(&out); err != nil {
		return nil, err
	}
	list := make([]AreaStats, 0, len(out.Areas))
	for _, a := range out.Areas {
		a.Name = s.areas[a.Area]
		list = append(list, a)
	}
	return list, nil
}

func (s *Service) readTopUsers(ctx context.Context, limit int) ([]UserStats, error) {
	res, err := s.db.Read(ctx, opTopUsers, map[string]int{"limit": limit}, 0)
	if err != nil {
		return nil, err
	}
	var out struct {
		Users []UserStats `json:"users"`
	}
	if err := res.Decode(&out); err != nil {
		return nil, err
	}
	if out.Users == nil {
		out.Users = []UserStats{}
	}
	return out.Users, nil
}
