// Package stats is the second DBaaS handler plugin: read-only statistics
// over the public data the rideshare handler stores (rides and who created
// or joined them; never passwords). It is the worked example of shipping a
// new operation as a plugin swap (docs/plugins.md, "Ship a new operation:
// the stats example"): it needs only its binary and a manifest entry, no
// rebuild of the worker.
//
// Operations (both reads, so they run on slaves in a read-only snapshot):
//
//	stats.rides_per_area {"limit"?: n >= 1} -> {"areas": [{"area", "rides_from", "rides_to"}]}
//	stats.top_users      {"limit"?: 1..100} -> {"users": [{"username", "created", "joined"}]}
//
// The handler reads the tables of the rideshare handler (users, rides,
// ride_members), so it must be listed after rideshare in the manifest
// (scripts/build-plugins.sh lists plugins alphabetically). Its one
// migration adds an index on rides(destination), which with rideshare's
// rides_route index (source first) lets rides_per_area count both ends of
// every ride from covering indexes instead of scanning and sorting the
// table. The master applies it when the plugin is loaded (at a promotion or
// after a rolling reload) and replicates it like any write.
//
// The package is its own in-process twin: tests call New() directly against
// a real SQLite database; cmd/stats-plugin serves the same Handler as a
// go-plugin binary.
package stats

import (
	"context"
	"encoding/json"
	"math"

	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

// Handler name and version, as reported by Info.
const (
	HandlerName    = "stats"
	HandlerVersion = "1.0.0"
)

// Operation names.
const (
	OpRidesPerArea = "stats.rides_per_area"
	OpTopUsers     = "stats.top_users"
)

// Limits of stats.top_users.
const (
	DefaultTopUsers = 10
	MaxTopUsers     = 100
)

// migrations: never edit a released version; add one.
var migrations = []pluginapi.Migration{
	{
		Version: 1,
		Statements: []string{
			`CREATE INDEX IF NOT EXISTS stats_rides_destination ON rides (destination)`,
		},
	},
}

// Handler serves the stats operations (all reads). It holds no state, so
// one Handler may serve concurrent calls.
type Handler struct{ pluginapi.Table }

var _ pluginapi.Handler = (*Handler)(nil)

// New returns a Handler.
func New() *Handler {
	return &Handler{pluginapi.Table{
		Name:    HandlerName,
		Version: HandlerVersion,
		Ops: []pluginapi.TableOp{
			{Name: OpRidesPerArea, Kind: pluginapi.Read, Run: ridesPerArea},
			{Name: OpTopUsers, Kind: pluginapi.Read, Run: topUsers},
		},
		Migrations: migrations,
	}}
}

// ---- parameters ----

// limitParams is the parameter object of both operations.
type limitParams struct {
	Limit *int64 `json:"limit"`
}

// decodeLimit decodes {"limit"?: n} strictly: params must be absent, null
// or a JSON object whose only key is exactly "limit" (encoding/json alone
// would also take "LIMIT" and let a later duplicate win), given at most
// once, and the limit a JSON integer from 1 to max. Absent or null, the
// limit is def.
func decodeLimit(raw json.RawMessage, def, max int64) (int64, error) {
	var p limitParams
	if err := pluginapi.DecodeParams(raw, &p); err != nil {
		return 0, err
	}
	if p.Limit == nil {
		return def, nil
	}
	if *p.Limit < 1 && max == math.MaxInt64 {
		return 0, pluginapi.Errorf(pluginapi.CodeInvalid, "parameter \"limit\" must be a positive integer, not %d", *p.Limit)
	}
	if *p.Limit < 1 || *p.Limit > max {
		return 0, pluginapi.Errorf(pluginapi.CodeInvalid, "parameter \"limit\" must be an integer from 1 to %d, not %d", max, *p.Limit)
	}
	return *p.Limit, nil
}

// ---- results ----

// AreaStat is one area of stats.rides_per_area.
type AreaStat struct {
	Area      int64 `json:"area"`
	RidesFrom int64 `json:"rides_from"` // rides whose source is the area
	RidesTo   int64 `json:"rides_to"`   // rides whose destination is the area
}

// UserStat is one user of stats.top_users.
type UserStat struct {
	Username string `json:"username"`
	Created  int64  `json:"created"` // rides the user created
	Joined   int64  `json:"joined"`  // rides the user joined
}

// ---- operations ----

// ridesPerArea counts, for every area that is the source or the destination
// of at least one ride (past or upcoming), the rides leaving from it and
// going to it. Order: busiest first (rides_from + rides_to), then area
// number. Without "limit" every such area is listed.
func ridesPerArea(ctx context.Context, raw json.RawMessage, db pluginapi.DB) (any, error) {
	limit, err := decodeLimit(raw, -1, math.MaxInt64)
	if err != nil {
		return nil, err
	}
	// Each arm is a GROUP BY on an indexed column (rides_route for source,
	// stats_rides_destination for destination): covering-index scans.
	rows, err := db.Query(ctx, `SELECT area, SUM(n_from), SUM(n_to) FROM (
	SELECT source AS area, COUNT(*) AS n_from, 0 AS n_to FROM rides GROUP BY source
	UNION ALL
	SELECT destination, 0, COUNT(*) FROM rides GROUP BY destination
) GROUP BY area
ORDER BY SUM(n_from) + SUM(n_to) DESC, area ASC
LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	areas := make([]AreaStat, 0, len(rows.Values))
	for i := range rows.Values {
		var a AreaStat
		if err := rows.Scan(i, &a.Area, &a.RidesFrom, &a.RidesTo); err != nil {
			return nil, err
		}
		areas = append(areas, a)
	}
	return struct {
		Areas []AreaStat `json:"areas"`
	}{areas}, nil
}

// topUsers lists the most active users: rides created plus rides joined,
// most first, then most created, then username in byte order. Users with
// no ride at all are not listed.
func topUsers(ctx context.Context, raw json.RawMessage, db pluginapi.DB) (any, error) {
	limit, err := decodeLimit(raw, DefaultTopUsers, MaxTopUsers)
	if err != nil {
		return nil, err
	}
	// Both arms are GROUP BYs on indexed columns (rides_created_by,
	// ride_members_username). Only names present in users are counted, as
	// a guard; the rideshare handler's cascades keep them consistent.
	rows, err := db.Query(ctx, `SELECT a.name, SUM(a.created), SUM(a.joined) FROM (
	SELECT created_by AS name, COUNT(*) AS created, 0 AS joined FROM rides GROUP BY created_by
	UNION ALL
	SELECT username, 0, COUNT(*) FROM ride_members GROUP BY username
) AS a
WHERE a.name IN (SELECT name FROM users)
GROUP BY a.name
ORDER BY SUM(a.created) + SUM(a.joined) DESC, SUM(a.created) DESC, a.name COLLATE BINARY ASC
LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	users := make([]UserStat, 0, len(rows.Values))
	for i := range rows.Values {
		var u UserStat
		if err := rows.Scan(i, &u.Username, &u.Created, &u.Joined); err != nil {
			return nil, err
		}
		users = append(users, u)
	}
	return struct {
		Users []UserStat `json:"users"`
	}{users}, nil
}

// ---- helpers ----
