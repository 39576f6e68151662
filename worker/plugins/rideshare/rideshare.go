// Package rideshare is the RideShare operation handler of the DBaaS: it
// declares the schema (users, rides, ride members and id counters) and serves
// the operations listed in docs/dbaas-api.md ("Operations (handler
// rideshare)") through a pluginapi.DB lent by the worker.
//
// Replication: the master's executed statements are replayed verbatim on the
// slaves, so every write operation here is deterministic given the database
// state. Writes never use random(), the clock or PRAGMA foreign_keys:
// cascades are explicit DELETE statements, existence checks are SELECTs made
// in the same call, ride ids come from a counter row that db.clear keeps (so
// ids are never reused), and join order is an explicit position column. Every
// value is passed as a bound argument (int64 or string). All refusals are
// decided before the first write statement, so a refused operation executes
// nothing.
package rideshare

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

// Handler names and version, as reported by Info.
const (
	HandlerName    = "rideshare"
	HandlerVersion = "1.0.0"
)

// Operation names.
const (
	OpUsersAdd      = "users.add"
	OpUsersDelete   = "users.delete"
	OpUsersList     = "users.list"
	OpUsersExists   = "users.exists"
	OpRidesCreate   = "rides.create"
	OpRidesUpcoming = "rides.upcoming"
	OpRidesGet      = "rides.get"
	OpRidesJoin     = "rides.join"
	OpRidesDelete   = "rides.delete"
	OpRidesCount    = "rides.count"
	OpDBClear       = "db.clear"
)

// rideIDCounter is the counters row that numbers rides. db.clear keeps it.
const rideIDCounter = "ride_id"

// migrations is the schema, version by version. Never edit a released
// version: add a new one.
var migrations = []pluginapi.Migration{
	{
		Version: 1,
		Statements: []string{
			`CREATE TABLE users (
	name     TEXT NOT NULL COLLATE BINARY PRIMARY KEY,
	password TEXT NOT NULL
)`,
			`CREATE TABLE rides (
	id          INTEGER PRIMARY KEY,
	created_by  TEXT    NOT NULL COLLATE BINARY,
	timestamp   INTEGER NOT NULL,
	source      INTEGER NOT NULL,
	destination INTEGER NOT NULL
)`,
			`CREATE INDEX rides_route ON rides (source, destination, timestamp, id)`,
			`CREATE INDEX rides_created_by ON rides (created_by)`,
			`CREATE TABLE ride_members (
	ride_id  INTEGER NOT NULL,
	username TEXT    NOT NULL COLLATE BINARY,
	pos      INTEGER NOT NULL,
	PRIMARY KEY (ride_id, username)
)`,
			`CREATE INDEX ride_members_username ON ride_members (username)`,
			`CREATE TABLE counters (
	name  TEXT    NOT NULL PRIMARY KEY,
	value INTEGER NOT NULL
)`,
			`INSERT INTO counters (name, value) VALUES ('ride_id', 0)`,
		},
	},
}

// Handler serves the rideshare operations. It holds no state, so one
// Handler may serve concurrent calls.
type Handler struct{ pluginapi.Table }

var _ pluginapi.Handler = (*Handler)(nil)

// New returns a Handler.
func New() *Handler {
	return &Handler{pluginapi.Table{
		Name:    HandlerName,
		Version: HandlerVersion,
		Ops: []pluginapi.TableOp{
			{Name: OpUsersAdd, Kind: pluginapi.Write, Run: usersAdd},
			{Name: OpUsersDelete, Kind: pluginapi.Write, Run: usersDelete},
			{Name: OpUsersList, Kind: pluginapi.Read, Run: usersList},
			{Name: OpUsersExists, Kind: pluginapi.Read, Run: usersExists},
			{Name: OpRidesCreate, Kind: pluginapi.Write, Run: ridesCreate},
			{Name: OpRidesUpcoming, Kind: pluginapi.Read, Run: ridesUpcoming},
			{Name: OpRidesGet, Kind: pluginapi.Read, Run: ridesGet},
			{Name: OpRidesJoin, Kind: pluginapi.Write, Run: ridesJoin},
			{Name: OpRidesDelete, Kind: pluginapi.Write, Run: ridesDelete},
			{Name: OpRidesCount, Kind: pluginapi.Read, Run: ridesCount},
			{Name: OpDBClear, Kind: pluginapi.Write, Run: dbClear},
		},
		Migrations: migrations,
	}}
}

// ---- parameters ----

func missing(field string) error {
	return pluginapi.Errorf(pluginapi.CodeInvalid, "parameter %q is required", field)
}

type usernameParams struct {
	Username *string `json:"username"`
}

type usersAddParams struct {
	Username *string `json:"username"`
	Password *string `json:"password"`
}

type ridesCreateParams struct {
	CreatedBy   *string `json:"created_by"`
	Timestamp   *int64  `json:"timestamp"`
	Source      *int64  `json:"source"`
	Destination *int64  `json:"destination"`
}

type ridesUpcomingParams struct {
	Source      *int64 `json:"source"`
	Destination *int64 `json:"destination"`
	After       *int64 `json:"after"`
}

type rideIDParams struct {
	RideID *int64 `json:"rideId"`
}

type ridesJoinParams struct {
	RideID   *int64  `json:"rideId"`
	Username *string `json:"username"`
}

type noParams struct{}

// ---- results ----

type empty struct{}

type upcomingRide struct {
	RideID    int64  `json:"rideId"`
	Username  string `json:"username"`
	Timestamp int64  `json:"timestamp"`
}

type rideDetail struct {
	RideID      int64    `json:"rideId"`
	CreatedBy   string   `json:"created_by"`
	Users       []string `json:"users"`
	Timestamp   int64    `json:"timestamp"`
	Source      int64    `json:"source"`
	Destination int64    `json:"destination"`
}

// ---- operations ----

func usersAdd(ctx context.Context, raw json.RawMessage, db pluginapi.DB) (any, error) {
	var p usersAddParams
	if err := pluginapi.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	switch {
	case p.Username == nil:
		return nil, missing("username")
	case p.Password == nil:
		return nil, missing("password")
	case *p.Username == "":
		return nil, pluginapi.Errorf(pluginapi.CodeInvalid, "username is empty")
	case *p.Password == "":
		return nil, pluginapi.Errorf(pluginapi.CodeInvalid, "password is empty")
	}
	exists, err := userExists(ctx, db, *p.Username)
	if err != nil {
		return nil, err
	}
	if exists {
		return nil, pluginapi.Errorf(pluginapi.CodeConflict, "username %q is taken", *p.Username)
	}
	if _, err := db.Exec(ctx, `INSERT INTO users (name, password) VALUES (?, ?)`, *p.Username, *p.Password); err != nil {
		return nil, err
	}
	return empty{}, nil
}

func usersDelete(ctx context.Context, raw json.RawMessage, db pluginapi.DB) (any, error) {
	var p usernameParams
	if err := pluginapi.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.Username == nil {
		return nil, missing("username")
	}
	name := *p.Username
	exists, err := userExists(ctx, db, name)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, pluginapi.Errorf(pluginapi.CodeNotFound, "no user %q", name)
	}
	// The cascade, explicitly: members of the user's rides, the user's
	// memberships, the user's rides, the user.
	stmts := []string{
		`DELETE FROM ride_members WHERE ride_id IN (SELECT id FROM rides WHERE created_by = ?)`,
		`DELETE FROM ride_members WHERE username = ?`,
		`DELETE FROM rides WHERE created_by = ?`,
		`DELETE FROM users WHERE name = ?`,
	}
	for _, q := range stmts {
		if _, err := db.Exec(ctx, q, name); err != nil {
			return nil, err
		}
	}
	return empty{}, nil
}

func usersList(ctx context.Context, raw json.RawMessage, db pluginapi.DB) (any, error) {
	if err := pluginapi.DecodeParams(raw, &noParams{}); err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, `SELECT name FROM users ORDER BY name COLLATE BINARY`)
	if err != nil {
		return nil, err
	}
	users := make([]string, 0, len(rows.Values))
	for i := range rows.Values {
		var name string
		if err := rows.Scan(i, &name); err != nil {
			return nil, err
		}
		users = append(users, name)
	}
	return struct {
		Users []string `json:"users"`
	}{users}, nil
}

func usersExists(ctx context.Context, raw json.RawMessage, db pluginapi.DB) (any, error) {
	var p usernameParams
	if err := pluginapi.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.Username == nil {
		return nil, missing("username")
	}
	exists, err := userExists(ctx, db, *p.Username)
	if err != nil {
		return nil, err
	}
	return struct {
		Exists bool `json:"exists"`
	}{exists}, nil
}

func ridesCreate(ctx context.Context, raw json.RawMessage, db pluginapi.DB) (any, error) {
	var p ridesCreateParams
	if err := pluginapi.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	switch {
	case p.CreatedBy == nil:
		return nil, missing("created_by")
	case p.Timestamp == nil:
		return nil, missing("timestamp")
	case p.Source == nil:
		return nil, missing("source")
	case p.Destination == nil:
		return nil, missing("destination")
	case *p.Source < 1:
		return nil, pluginapi.Errorf(pluginapi.CodeInvalid, "source %d is not an area (areas start at 1)", *p.Source)
	case *p.Destination < 1:
		return nil, pluginapi.Errorf(pluginapi.CodeInvalid, "destination %d is not an area (areas start at 1)", *p.Destination)
	case *p.Source == *p.Destination:
		return nil, pluginapi.Errorf(pluginapi.CodeInvalid, "source and destination are the same area (%d)", *p.Source)
	}
	exists, err := userExists(ctx, db, *p.CreatedBy)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, pluginapi.Errorf(pluginapi.CodeNotFound, "no user %q", *p.CreatedBy)
	}
	// Next id from the counter row (an upsert, in case the row is gone).
	// The replayed INSERT below carries the id as a bound value.
	if _, err := db.Exec(ctx, `INSERT INTO counters (name, value) VALUES (?, 1)
ON CONFLICT (name) DO UPDATE SET value = value + 1`, rideIDCounter); err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, `SELECT value FROM counters WHERE name = ?`, rideIDCounter)
	if err != nil {
		return nil, err
	}
	if len(rows.Values) != 1 {
		return nil, fmt.Errorf("ride id counter: %d rows, want 1", len(rows.Values))
	}
	var id int64
	if err := rows.Scan(0, &id); err != nil {
		return nil, err
	}
	if _, err := db.Exec(ctx, `INSERT INTO rides (id, created_by, timestamp, source, destination) VALUES (?, ?, ?, ?, ?)`,
		id, *p.CreatedBy, *p.Timestamp, *p.Source, *p.Destination); err != nil {
		return nil, err
	}
	return struct {
		RideID int64 `json:"rideId"`
	}{id}, nil
}

func ridesUpcoming(ctx context.Context, raw json.RawMessage, db pluginapi.DB) (any, error) {
	var p ridesUpcomingParams
	if err := pluginapi.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	switch {
	case p.Source == nil:
		return nil, missing("source")
	case p.Destination == nil:
		return nil, missing("destination")
	case p.After == nil:
		return nil, missing("after")
	}
	rows, err := db.Query(ctx, `SELECT id, created_by, timestamp FROM rides
WHERE source = ? AND destination = ? AND timestamp > ?
ORDER BY timestamp, id`, *p.Source, *p.Destination, *p.After)
	if err != nil {
		return nil, err
	}
	rides := make([]upcomingRide, 0, len(rows.Values))
	for i := range rows.Values {
		var r upcomingRide
		if err := rows.Scan(i, &r.RideID, &r.Username, &r.Timestamp); err != nil {
			return nil, err
		}
		rides = append(rides, r)
	}
	return struct {
		Rides []upcomingRide `json:"rides"`
	}{rides}, nil
}

func ridesGet(ctx context.Context, raw json.RawMessage, db pluginapi.DB) (any, error) {
	var p rideIDParams
	if err := pluginapi.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.RideID == nil {
		return nil, missing("rideId")
	}
	rows, err := db.Query(ctx, `SELECT id, created_by, timestamp, source, destination FROM rides WHERE id = ?`, *p.RideID)
	if err != nil {
		return nil, err
	}
	if len(rows.Values) == 0 {
		return nil, pluginapi.Errorf(pluginapi.CodeNotFound, "ride %d does not exist", *p.RideID)
	}
	var r rideDetail
	if err := rows.Scan(0, &r.RideID, &r.CreatedBy, &r.Timestamp, &r.Source, &r.Destination); err != nil {
		return nil, err
	}
	members, err := db.Query(ctx, `SELECT username FROM ride_members WHERE ride_id = ? ORDER BY pos, username COLLATE BINARY`, r.RideID)
	if err != nil {
		return nil, err
	}
	r.Users = make([]string, 0, len(members.Values))
	for i := range members.Values {
		var name string
		if err := members.Scan(i, &name); err != nil {
			return nil, err
		}
		r.Users = append(r.Users, name)
	}
	return struct {
		Ride rideDetail `json:"ride"`
	}{r}, nil
}

func ridesJoin(ctx context.Context, raw json.RawMessage, db pluginapi.DB) (any, error) {
	var p ridesJoinParams
	if err := pluginapi.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	switch {
	case p.RideID == nil:
		return nil, missing("rideId")
	case p.Username == nil:
		return nil, missing("username")
	}
	id, name := *p.RideID, *p.Username
	rows, err := db.Query(ctx, `SELECT created_by FROM rides WHERE id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(rows.Values) == 0 {
		return nil, pluginapi.Errorf(pluginapi.CodeNotFound, "ride %d does not exist", id)
	}
	var creator string
	if err := rows.Scan(0, &creator); err != nil {
		return nil, err
	}
	exists, err := userExists(ctx, db, name)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, pluginapi.Errorf(pluginapi.CodeInvalid, "no user %q", name)
	}
	if name == creator {
		return nil, pluginapi.Errorf(pluginapi.CodeConflict, "user %q created ride %d and cannot join it", name, id)
	}
	joined, err := db.Query(ctx, `SELECT 1 FROM ride_members WHERE ride_id = ? AND username = ?`, id, name)
	if err != nil {
		return nil, err
	}
	if len(joined.Values) > 0 {
		return nil, pluginapi.Errorf(pluginapi.CodeConflict, "user %q already joined ride %d", name, id)
	}
	// The position is computed by the statement itself from the ride's
	// members, so the replayed statement yields the same value.
	if _, err := db.Exec(ctx, `INSERT INTO ride_members (ride_id, username, pos)
SELECT ?, ?, COALESCE(MAX(pos), 0) + 1 FROM ride_members WHERE ride_id = ?`, id, name, id); err != nil {
		return nil, err
	}
	return empty{}, nil
}

func ridesDelete(ctx context.Context, raw json.RawMessage, db pluginapi.DB) (any, error) {
	var p rideIDParams
	if err := pluginapi.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.RideID == nil {
		return nil, missing("rideId")
	}
	id := *p.RideID
	rows, err := db.Query(ctx, `SELECT 1 FROM rides WHERE id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(rows.Values) == 0 {
		return nil, pluginapi.Errorf(pluginapi.CodeNotFound, "ride %d does not exist", id)
	}
	if _, err := db.Exec(ctx, `DELETE FROM ride_members WHERE ride_id = ?`, id); err != nil {
		return nil, err
	}
	if _, err := db.Exec(ctx, `DELETE FROM rides WHERE id = ?`, id); err != nil {
		return nil, err
	}
	return empty{}, nil
}

func ridesCount(ctx context.Context, raw json.RawMessage, db pluginapi.DB) (any, error) {
	if err := pluginapi.DecodeParams(raw, &noParams{}); err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, `SELECT COUNT(*) FROM rides`)
	if err != nil {
		return nil, err
	}
	if len(rows.Values) != 1 {
		return nil, fmt.Errorf("count: %d rows, want 1", len(rows.Values))
	}
	var n int64
	if err := rows.Scan(0, &n); err != nil {
		return nil, err
	}
	return struct {
		Count int64 `json:"count"`
	}{n}, nil
}

func dbClear(ctx context.Context, raw json.RawMessage, db pluginapi.DB) (any, error) {
	if err := pluginapi.DecodeParams(raw, &noParams{}); err != nil {
		return nil, err
	}
	// counters is kept: ride ids are never reused.
	for _, q := range []string{
		`DELETE FROM ride_members`,
		`DELETE FROM rides`,
		`DELETE FROM users`,
	} {
		if _, err := db.Exec(ctx, q); err != nil {
			return nil, err
		}
	}
	return empty{}, nil
}

// ---- helpers ----

func userExists(ctx context.Context, db pluginapi.DB, name string) (bool, error) {
	rows, err := db.Query(ctx, `SELECT 1 FROM users WHERE name = ?`, name)
	if err != nil {
		return false, err
	}
	return len(rows.Values) > 0, nil
}
