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
	"encoding/json"

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
//
// Every operation is a plan (pluginapi.Plan): the plugin checks the
// parameters and writes down the statements, and the worker runs them in
// its transaction. What depends on the data is a step's guard (a user that
// must exist, a username that must not) or a value bound from an earlier
// step (the next ride id), and reads build their JSON result in SQL.
type Handler struct{ pluginapi.Table }

var _ pluginapi.Handler = (*Handler)(nil)

// New returns a Handler.
func New() *Handler {
	return &Handler{pluginapi.Table{
		Name:    HandlerName,
		Version: HandlerVersion,
		Ops: []pluginapi.TableOp{
			{Name: OpUsersAdd, Kind: pluginapi.Write, Plan: usersAdd},
			{Name: OpUsersDelete, Kind: pluginapi.Write, Plan: usersDelete},
			{Name: OpUsersList, Kind: pluginapi.Read, Plan: usersList},
			{Name: OpUsersExists, Kind: pluginapi.Read, Plan: usersExists},
			{Name: OpRidesCreate, Kind: pluginapi.Write, Plan: ridesCreate},
			{Name: OpRidesUpcoming, Kind: pluginapi.Read, Plan: ridesUpcoming},
			{Name: OpRidesGet, Kind: pluginapi.Read, Plan: ridesGet},
			{Name: OpRidesJoin, Kind: pluginapi.Write, Plan: ridesJoin},
			{Name: OpRidesDelete, Kind: pluginapi.Write, Plan: ridesDelete},
			{Name: OpRidesCount, Kind: pluginapi.Read, Plan: ridesCount},
			{Name: OpDBClear, Kind: pluginapi.Write, Plan: dbClear},
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

// ---- plan pieces ----

type planStep = pluginapi.Step

var v = pluginapi.V

// userMustExist and userMustNotExist guard an operation on the users table.
func userMustExist(name string, code pluginapi.Code) planStep {
	return planStep{SQL: `SELECT 1 FROM users WHERE name = ?`, Args: []pluginapi.Arg{v(name)},
		Expect: pluginapi.ExpectRow, Else: pluginapi.Errorf(code, "no user %q", name)}
}

func rideMustExist(id int64) planStep {
	return planStep{SQL: `SELECT 1 FROM rides WHERE id = ?`, Args: []pluginapi.Arg{v(id)},
		Expect: pluginapi.ExpectRow, Else: pluginapi.Errorf(pluginapi.CodeNotFound, "ride %d does not exist", id)}
}

func exec(sql string, args ...any) planStep {
	s := planStep{SQL: sql}
	for _, a := range args {
		s.Args = append(s.Args, v(a))
	}
	return s
}

// result is a read's plan: one query whose single cell is the JSON result.
func result(sql string, args ...any) *pluginapi.Plan {
	s := exec(sql, args...)
	return &pluginapi.Plan{Steps: []planStep{s}, ResultStep: 1}
}

// ---- operations ----

func usersAdd(raw json.RawMessage) (*pluginapi.Plan, error) {
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
	name := *p.Username
	return &pluginapi.Plan{Steps: []planStep{
		{SQL: `SELECT 1 FROM users WHERE name = ?`, Args: []pluginapi.Arg{v(name)},
			Expect: pluginapi.ExpectNone, Else: pluginapi.Errorf(pluginapi.CodeConflict, "username %q is taken", name)},
		exec(`INSERT INTO users (name, password) VALUES (?, ?)`, name, *p.Password),
	}}, nil
}

func usersDelete(raw json.RawMessage) (*pluginapi.Plan, error) {
	var p usernameParams
	if err := pluginapi.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.Username == nil {
		return nil, missing("username")
	}
	name := *p.Username
	// The cascade, explicitly: members of the user's rides, the user's
	// memberships, the user's rides, the user.
	return &pluginapi.Plan{Steps: []planStep{
		userMustExist(name, pluginapi.CodeNotFound),
		exec(`DELETE FROM ride_members WHERE ride_id IN (SELECT id FROM rides WHERE created_by = ?)`, name),
		exec(`DELETE FROM ride_members WHERE username = ?`, name),
		exec(`DELETE FROM rides WHERE created_by = ?`, name),
		exec(`DELETE FROM users WHERE name = ?`, name),
	}}, nil
}

func usersList(raw json.RawMessage) (*pluginapi.Plan, error) {
	if err := pluginapi.DecodeParams(raw, &noParams{}); err != nil {
		return nil, err
	}
	return result(`SELECT json_object('users', json((SELECT json_group_array(name ORDER BY name COLLATE BINARY) FROM users)))`), nil
}

func usersExists(raw json.RawMessage) (*pluginapi.Plan, error) {
	var p usernameParams
	if err := pluginapi.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.Username == nil {
		return nil, missing("username")
	}
	return result(`SELECT json_object('exists', json(CASE WHEN EXISTS (SELECT 1 FROM users WHERE name = ?) THEN 'true' ELSE 'false' END))`, *p.Username), nil
}

func ridesCreate(raw json.RawMessage) (*pluginapi.Plan, error) {
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
	// The next id from the counter row (an upsert, in case the row is
	// gone), bound and passed on: the replayed INSERT carries the id as a
	// value.
	return &pluginapi.Plan{Steps: []planStep{
		userMustExist(*p.CreatedBy, pluginapi.CodeNotFound),
		exec(`INSERT INTO counters (name, value) VALUES (?, 1)
ON CONFLICT (name) DO UPDATE SET value = value + 1`, rideIDCounter),
		{SQL: `SELECT value FROM counters WHERE name = ?`, Args: []pluginapi.Arg{v(rideIDCounter)},
			Bind: []string{"id"}, Expect: pluginapi.ExpectRow},
		{SQL: `INSERT INTO rides (id, created_by, timestamp, source, destination) VALUES (?, ?, ?, ?, ?)`,
			Args: []pluginapi.Arg{pluginapi.Ref("id"), v(*p.CreatedBy), v(*p.Timestamp), v(*p.Source), v(*p.Destination)}},
		{SQL: `SELECT json_object('rideId', ?)`, Args: []pluginapi.Arg{pluginapi.Ref("id")}},
	}, ResultStep: 5}, nil
}

func ridesUpcoming(raw json.RawMessage) (*pluginapi.Plan, error) {
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
	return result(`SELECT json_object('rides', json((SELECT json_group_array(json_object('rideId', id, 'username', created_by, 'timestamp', timestamp) ORDER BY timestamp, id)
FROM rides WHERE source = ? AND destination = ? AND timestamp > ?)))`, *p.Source, *p.Destination, *p.After), nil
}

func ridesGet(raw json.RawMessage) (*pluginapi.Plan, error) {
	var p rideIDParams
	if err := pluginapi.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.RideID == nil {
		return nil, missing("rideId")
	}
	id := *p.RideID
	return &pluginapi.Plan{Steps: []planStep{{
		SQL: `SELECT json_object('ride', json_object(
	'rideId', r.id,
	'created_by', r.created_by,
	'users', json((SELECT json_group_array(m.username ORDER BY m.pos, m.username COLLATE BINARY) FROM ride_members m WHERE m.ride_id = r.id)),
	'timestamp', r.timestamp,
	'source', r.source,
	'destination', r.destination))
FROM rides r WHERE r.id = ?`,
		Args:   []pluginapi.Arg{v(id)},
		Expect: pluginapi.ExpectRow, Else: pluginapi.Errorf(pluginapi.CodeNotFound, "ride %d does not exist", id),
	}}, ResultStep: 1}, nil
}

func ridesJoin(raw json.RawMessage) (*pluginapi.Plan, error) {
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
	return &pluginapi.Plan{Steps: []planStep{
		rideMustExist(id),
		userMustExist(name, pluginapi.CodeInvalid),
		{SQL: `SELECT 1 FROM rides WHERE id = ? AND created_by = ?`, Args: []pluginapi.Arg{v(id), v(name)},
			Expect: pluginapi.ExpectNone, Else: pluginapi.Errorf(pluginapi.CodeConflict, "user %q created ride %d and cannot join it", name, id)},
		{SQL: `SELECT 1 FROM ride_members WHERE ride_id = ? AND username = ?`, Args: []pluginapi.Arg{v(id), v(name)},
			Expect: pluginapi.ExpectNone, Else: pluginapi.Errorf(pluginapi.CodeConflict, "user %q already joined ride %d", name, id)},
		// The position is computed by the statement itself from the ride's
		// members, so the replayed statement yields the same value.
		exec(`INSERT INTO ride_members (ride_id, username, pos)
SELECT ?, ?, COALESCE(MAX(pos), 0) + 1 FROM ride_members WHERE ride_id = ?`, id, name, id),
	}}, nil
}

func ridesDelete(raw json.RawMessage) (*pluginapi.Plan, error) {
	var p rideIDParams
	if err := pluginapi.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.RideID == nil {
		return nil, missing("rideId")
	}
	id := *p.RideID
	return &pluginapi.Plan{Steps: []planStep{
		rideMustExist(id),
		exec(`DELETE FROM ride_members WHERE ride_id = ?`, id),
		exec(`DELETE FROM rides WHERE id = ?`, id),
	}}, nil
}

func ridesCount(raw json.RawMessage) (*pluginapi.Plan, error) {
	if err := pluginapi.DecodeParams(raw, &noParams{}); err != nil {
		return nil, err
	}
	return result(`SELECT json_object('count', count(*)) FROM rides`), nil
}

func dbClear(raw json.RawMessage) (*pluginapi.Plan, error) {
	if err := pluginapi.DecodeParams(raw, &noParams{}); err != nil {
		return nil, err
	}
	// counters is kept: ride ids are never reused.
	return &pluginapi.Plan{Steps: []planStep{
		exec(`DELETE FROM ride_members`),
		exec(`DELETE FROM rides`),
		exec(`DELETE FROM users`),
	}}, nil
}
