package rideshare

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
	_ "modernc.org/sqlite"
)

// ---- test helpers: a real SQLite database behind pluginapi.DB ----

// testTxDB is a test helper: pluginapi.DB over one open *sql.Tx, the way the
// worker lends its transaction to a handler.
type testTxDB struct {
	tx *sql.Tx
}

func (d *testTxDB) Exec(ctx context.Context, query string, args ...any) (pluginapi.ExecResult, error) {
	res, err := d.tx.ExecContext(ctx, query, args...)
	if err != nil {
		return pluginapi.ExecResult{}, err
	}
	var out pluginapi.ExecResult
	if out.LastInsertID, err = res.LastInsertId(); err != nil {
		return pluginapi.ExecResult{}, err
	}
	if out.RowsAffected, err = res.RowsAffected(); err != nil {
		return pluginapi.ExecResult{}, err
	}
	return out, nil
}

func (d *testTxDB) Query(ctx context.Context, query string, args ...any) (pluginapi.Rows, error) {
	rows, err := d.tx.QueryContext(ctx, query, args...)
	if err != nil {
		return pluginapi.Rows{}, err
	}
	return pluginapi.ScanRows(rows)
}

// mustOpenTx is a test helper: it opens a fresh SQLite file in t.TempDir(),
// applies the handler's migrations (committed), and returns a DB over a new
// transaction that is rolled back when the test ends.
func mustOpenTx(t testing.TB) *testTxDB {
	t.Helper()
	sqldb := mustOpenSQL(t)
	tx, err := sqldb.Begin()
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	t.Cleanup(func() { _ = tx.Rollback() })
	return &testTxDB{tx: tx}
}

// mustOpenSQL is a test helper: a fresh migrated SQLite file.
func mustOpenSQL(t testing.TB) *sql.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rideshare.db")
	sqldb, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	sqldb.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = sqldb.Close() })
	info, err := New().Info(context.Background())
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	tx, err := sqldb.Begin()
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	for _, m := range info.Migrations {
		for _, s := range m.Statements {
			if _, err := tx.Exec(s); err != nil {
				t.Fatalf("migration %d: %v\n%s", m.Version, err, s)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit migrations: %v", err)
	}
	return sqldb
}

// recordingDB is a test helper: it passes calls to db and records every Exec
// (the statements the worker would replicate).
type recordingDB struct {
	db    pluginapi.DB
	execs []recordedExec
}

type recordedExec struct {
	query string
	args  []any
}

func (r *recordingDB) Exec(ctx context.Context, query string, args ...any) (pluginapi.ExecResult, error) {
	for _, a := range args {
		switch a.(type) {
		case int64, string:
		default:
			return pluginapi.ExecResult{}, fmt.Errorf("argument of type %T (want int64 or string) in %q", a, query)
		}
	}
	r.execs = append(r.execs, recordedExec{query, append([]any(nil), args...)})
	return r.db.Exec(ctx, query, args...)
}

func (r *recordingDB) Query(ctx context.Context, query string, args ...any) (pluginapi.Rows, error) {
	return r.db.Query(ctx, query, args...)
}

// dump renders every table's rows, in a stable order, as text.
func dump(t testing.TB, db pluginapi.DB) string {
	t.Helper()
	ctx := context.Background()
	tables, err := db.Query(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	var b strings.Builder
	for _, row := range tables.Values {
		name := row[0].(string)
		rows, err := db.Query(ctx, fmt.Sprintf(`SELECT * FROM %q`, name))
		if err != nil {
			t.Fatalf("dump %s: %v", name, err)
		}
		lines := make([]string, 0, len(rows.Values))
		for _, r := range rows.Values {
			lines = append(lines, fmt.Sprintf("%#v", r))
		}
		sort.Strings(lines)
		fmt.Fprintf(&b, "== %s %v\n%s\n", name, rows.Columns, strings.Join(lines, "\n"))
	}
	return b.String()
}

// call runs op and returns its result as text, or the error.
func call(t testing.TB, db pluginapi.DB, op, params string) (string, error) {
	t.Helper()
	var raw json.RawMessage
	if params != "" {
		raw = json.RawMessage(params)
	}
	out, err := New().Execute(context.Background(), op, raw, db)
	if err != nil {
		if out != nil {
			t.Errorf("%s %s: result %s returned with error %v", op, params, out, err)
		}
		return "", err
	}
	if !json.Valid(out) || !strings.HasPrefix(string(out), "{") {
		t.Fatalf("%s %s: result is not a JSON object: %s", op, params, out)
	}
	return string(out), nil
}

// mustCall runs op and fails the test if it does not succeed.
func mustCall(t testing.TB, db pluginapi.DB, op, params string) string {
	t.Helper()
	out, err := call(t, db, op, params)
	if err != nil {
		t.Fatalf("%s %s: %v", op, params, err)
	}
	return out
}

// assertJSON compares two JSON texts by value.
func assertJSON(t testing.TB, what, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("%s: bad JSON %q: %v", what, got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad wanted JSON %q: %v", what, want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %s\nwant %s", what, got, want)
	}
}

// seed loads the fixture every table test starts from:
//
//	users alice bob carol dave
//	ride 1: alice, t=2000, 1->2, joined by carol then bob
//	ride 2: bob,   t=1000, 1->2
//	ride 3: alice, t=2000, 1->2
//	ride 4: carol, t=3000, 2->1, joined by dave
func seed(t testing.TB, db pluginapi.DB) {
	t.Helper()
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		mustCall(t, db, OpUsersAdd, fmt.Sprintf(`{"username":%q,"password":"%040d"}`, u, 0))
	}
	for i, r := range []string{
		`{"created_by":"alice","timestamp":2000,"source":1,"destination":2}`,
		`{"created_by":"bob","timestamp":1000,"source":1,"destination":2}`,
		`{"created_by":"alice","timestamp":2000,"source":1,"destination":2}`,
		`{"created_by":"carol","timestamp":3000,"source":2,"destination":1}`,
	} {
		assertJSON(t, "seed ride", mustCall(t, db, OpRidesCreate, r), fmt.Sprintf(`{"rideId":%d}`, i+1))
	}
	mustCall(t, db, OpRidesJoin, `{"rideId":1,"username":"carol"}`)
	mustCall(t, db, OpRidesJoin, `{"rideId":1,"username":"bob"}`)
	mustCall(t, db, OpRidesJoin, `{"rideId":4,"username":"dave"}`)
}

type step struct{ op, params string }

type check struct {
	op, params, want string
}

// ---- the table ----

func TestOperations(t *testing.T) {
	tests := []struct {
		name     string
		setup    []step // run after seed, each must succeed
		op       string
		params   string
		want     string         // result, when the op succeeds
		wantCode pluginapi.Code // refusal code, when it does not
		wantMsg  string         // substring of the refusal message
		after    []check        // reads that must then answer these results
	}{
		// users.add
		{name: "users.add/ok", op: OpUsersAdd, params: `{"username":"erin","password":"x"}`, want: `{}`,
			after: []check{{OpUsersExists, `{"username":"erin"}`, `{"exists":true}`}}},
		{name: "users.add/case sensitive", op: OpUsersAdd, params: `{"username":"Alice","password":"x"}`, want: `{}`},
		{name: "users.add/sql and control characters", op: OpUsersAdd, params: `{"username":"x'); DROP TABLE users;--\u0000\n","password":"p"}`, want: `{}`,
			after: []check{
				{OpUsersExists, `{"username":"x'); DROP TABLE users;--\u0000\n"}`, `{"exists":true}`},
				{OpRidesCount, `{}`, `{"count":4}`},
			}},
		{name: "users.add/refused taken", op: OpUsersAdd, params: `{"username":"alice","password":"x"}`, wantCode: pluginapi.CodeConflict, wantMsg: "taken"},
		{name: "users.add/refused empty username", op: OpUsersAdd, params: `{"username":"","password":"x"}`, wantCode: pluginapi.CodeInvalid, wantMsg: "username"},
		{name: "users.add/refused empty password", op: OpUsersAdd, params: `{"username":"erin","password":""}`, wantCode: pluginapi.CodeInvalid, wantMsg: "password"},
		{name: "users.add/refused missing username", op: OpUsersAdd, params: `{"password":"x"}`, wantCode: pluginapi.CodeInvalid, wantMsg: `"username" is required`},
		{name: "users.add/refused missing password", op: OpUsersAdd, params: `{"username":"erin"}`, wantCode: pluginapi.CodeInvalid, wantMsg: `"password" is required`},
		{name: "users.add/refused null params", op: OpUsersAdd, params: `null`, wantCode: pluginapi.CodeInvalid, wantMsg: "username"},
		{name: "users.add/refused unknown field", op: OpUsersAdd, params: `{"username":"erin","password":"x","admin":true}`, wantCode: pluginapi.CodeInvalid, wantMsg: "admin"},
		{name: "users.add/refused wrong field case", op: OpUsersAdd, params: `{"Username":"erin","password":"x"}`, wantCode: pluginapi.CodeInvalid, wantMsg: "Username"},
		{name: "users.add/refused wrong type", op: OpUsersAdd, params: `{"username":5,"password":"x"}`, wantCode: pluginapi.CodeInvalid, wantMsg: "username"},
		{name: "users.add/refused null username", op: OpUsersAdd, params: `{"username":null,"password":"x"}`, wantCode: pluginapi.CodeInvalid, wantMsg: "username"},
		{name: "users.add/refused not an object", op: OpUsersAdd, params: `["erin","x"]`, wantCode: pluginapi.CodeInvalid},
		{name: "users.add/refused trailing data", op: OpUsersAdd, params: `{"username":"erin","password":"x"}{}`, wantCode: pluginapi.CodeInvalid},

		// users.delete
		{name: "users.delete/ok cascades creator", op: OpUsersDelete, params: `{"username":"alice"}`, want: `{}`,
			after: []check{
				{OpUsersExists, `{"username":"alice"}`, `{"exists":false}`},
				{OpRidesCount, `{}`, `{"count":2}`},
				{OpRidesUpcoming, `{"source":1,"destination":2,"after":0}`, `{"rides":[{"rideId":2,"username":"bob","timestamp":1000}]}`},
				{OpUsersList, `{}`, `{"users":["bob","carol","dave"]}`},
			}},
		{name: "users.delete/ok removes memberships and own rides", op: OpUsersDelete, params: `{"username":"carol"}`, want: `{}`,
			after: []check{
				{OpRidesGet, `{"rideId":1}`, `{"ride":{"rideId":1,"created_by":"alice","users":["bob"],"timestamp":2000,"source":1,"destination":2}}`},
				{OpRidesCount, `{}`, `{"count":3}`},
				{OpRidesUpcoming, `{"source":2,"destination":1,"after":0}`, `{"rides":[]}`},
			}},
		{name: "users.delete/refused not found", op: OpUsersDelete, params: `{"username":"nobody"}`, wantCode: pluginapi.CodeNotFound, wantMsg: "nobody"},
		{name: "users.delete/refused case sensitive", op: OpUsersDelete, params: `{"username":"ALICE"}`, wantCode: pluginapi.CodeNotFound},
		{name: "users.delete/refused missing username", op: OpUsersDelete, params: `{}`, wantCode: pluginapi.CodeInvalid, wantMsg: "username"},
		{name: "users.delete/refused unknown field", op: OpUsersDelete, params: `{"username":"alice","cascade":false}`, wantCode: pluginapi.CodeInvalid, wantMsg: "cascade"},

		// users.list
		{name: "users.list/byte order", setup: []step{
			{OpUsersAdd, `{"username":"Zed","password":"x"}`},
			{OpUsersAdd, `{"username":"_u","password":"x"}`},
			{OpUsersAdd, `{"username":"éa","password":"x"}`},
			{OpUsersAdd, `{"username":"B","password":"x"}`},
			{OpUsersAdd, `{"username":"alice2","password":"x"}`},
		}, op: OpUsersList, params: `{}`, want: `{"users":["B","Zed","_u","alice","alice2","bob","carol","dave","éa"]}`},
		{name: "users.list/empty", setup: []step{{OpDBClear, `{}`}}, op: OpUsersList, params: ``, want: `{"users":[]}`},
		{name: "users.list/refused unknown field", op: OpUsersList, params: `{"limit":1}`, wantCode: pluginapi.CodeInvalid, wantMsg: "limit"},

		// users.exists
		{name: "users.exists/true", op: OpUsersExists, params: `{"username":"bob"}`, want: `{"exists":true}`},
		{name: "users.exists/false", op: OpUsersExists, params: `{"username":"zoe"}`, want: `{"exists":false}`},
		{name: "users.exists/false for other case", op: OpUsersExists, params: `{"username":"Bob"}`, want: `{"exists":false}`},
		{name: "users.exists/false for empty", op: OpUsersExists, params: `{"username":""}`, want: `{"exists":false}`},
		{name: "users.exists/refused missing username", op: OpUsersExists, params: `{}`, wantCode: pluginapi.CodeInvalid, wantMsg: "username"},
		{name: "users.exists/refused wrong type", op: OpUsersExists, params: `{"username":["bob"]}`, wantCode: pluginapi.CodeInvalid, wantMsg: "username"},

		// rides.create
		{name: "rides.create/ok next id", op: OpRidesCreate, params: `{"created_by":"dave","timestamp":5000,"source":198,"destination":7}`, want: `{"rideId":5}`,
			after: []check{
				{OpRidesGet, `{"rideId":5}`, `{"ride":{"rideId":5,"created_by":"dave","users":[],"timestamp":5000,"source":198,"destination":7}}`},
				{OpRidesCount, `{}`, `{"count":5}`},
			}},
		{name: "rides.create/ok negative timestamp", op: OpRidesCreate, params: `{"created_by":"dave","timestamp":-5,"source":1,"destination":7}`, want: `{"rideId":5}`},
		{name: "rides.create/refused no such user", op: OpRidesCreate, params: `{"created_by":"nobody","timestamp":1,"source":1,"destination":2}`, wantCode: pluginapi.CodeNotFound, wantMsg: "nobody"},
		{name: "rides.create/refused source equals destination", op: OpRidesCreate, params: `{"created_by":"bob","timestamp":1,"source":3,"destination":3}`, wantCode: pluginapi.CodeInvalid, wantMsg: "same"},
		{name: "rides.create/refused source below 1", op: OpRidesCreate, params: `{"created_by":"bob","timestamp":1,"source":0,"destination":3}`, wantCode: pluginapi.CodeInvalid, wantMsg: "source"},
		{name: "rides.create/refused destination below 1", op: OpRidesCreate, params: `{"created_by":"bob","timestamp":1,"source":3,"destination":-1}`, wantCode: pluginapi.CodeInvalid, wantMsg: "destination"},
		{name: "rides.create/refused invalid before not found", op: OpRidesCreate, params: `{"created_by":"nobody","timestamp":1,"source":3,"destination":3}`, wantCode: pluginapi.CodeInvalid},
		{name: "rides.create/refused missing created_by", op: OpRidesCreate, params: `{"timestamp":1,"source":1,"destination":2}`, wantCode: pluginapi.CodeInvalid, wantMsg: "created_by"},
		{name: "rides.create/refused missing timestamp", op: OpRidesCreate, params: `{"created_by":"bob","source":1,"destination":2}`, wantCode: pluginapi.CodeInvalid, wantMsg: "timestamp"},
		{name: "rides.create/refused missing source", op: OpRidesCreate, params: `{"created_by":"bob","timestamp":1,"destination":2}`, wantCode: pluginapi.CodeInvalid, wantMsg: "source"},
		{name: "rides.create/refused missing destination", op: OpRidesCreate, params: `{"created_by":"bob","timestamp":1,"source":1}`, wantCode: pluginapi.CodeInvalid, wantMsg: "destination"},
		{name: "rides.create/refused string timestamp", op: OpRidesCreate, params: `{"created_by":"bob","timestamp":"26-01-2027:00-53-09","source":1,"destination":2}`, wantCode: pluginapi.CodeInvalid, wantMsg: "timestamp"},
		{name: "rides.create/refused fractional area", op: OpRidesCreate, params: `{"created_by":"bob","timestamp":1,"source":1.5,"destination":2}`, wantCode: pluginapi.CodeInvalid, wantMsg: "source"},
		{name: "rides.create/refused huge number", op: OpRidesCreate, params: `{"created_by":"bob","timestamp":99999999999999999999,"source":1,"destination":2}`, wantCode: pluginapi.CodeInvalid, wantMsg: "timestamp"},
		{name: "rides.create/refused unknown field", op: OpRidesCreate, params: `{"created_by":"bob","timestamp":1,"source":1,"destination":2,"rideId":1}`, wantCode: pluginapi.CodeInvalid, wantMsg: "rideId"},

		// rides.upcoming
		{name: "rides.upcoming/ordered by time then id", op: OpRidesUpcoming, params: `{"source":1,"destination":2,"after":999}`,
			want: `{"rides":[{"rideId":2,"username":"bob","timestamp":1000},{"rideId":1,"username":"alice","timestamp":2000},{"rideId":3,"username":"alice","timestamp":2000}]}`},
		{name: "rides.upcoming/strictly after", op: OpRidesUpcoming, params: `{"source":1,"destination":2,"after":1000}`,
			want: `{"rides":[{"rideId":1,"username":"alice","timestamp":2000},{"rideId":3,"username":"alice","timestamp":2000}]}`},
		{name: "rides.upcoming/none after", op: OpRidesUpcoming, params: `{"source":1,"destination":2,"after":2000}`, want: `{"rides":[]}`},
		{name: "rides.upcoming/direction matters", op: OpRidesUpcoming, params: `{"source":2,"destination":1,"after":0}`,
			want: `{"rides":[{"rideId":4,"username":"carol","timestamp":3000}]}`},
		{name: "rides.upcoming/no route", op: OpRidesUpcoming, params: `{"source":5,"destination":6,"after":0}`, want: `{"rides":[]}`},
		{name: "rides.upcoming/refused missing after", op: OpRidesUpcoming, params: `{"source":1,"destination":2}`, wantCode: pluginapi.CodeInvalid, wantMsg: "after"},
		{name: "rides.upcoming/refused missing source", op: OpRidesUpcoming, params: `{"destination":2,"after":0}`, wantCode: pluginapi.CodeInvalid, wantMsg: "source"},
		{name: "rides.upcoming/refused missing destination", op: OpRidesUpcoming, params: `{"source":1,"after":0}`, wantCode: pluginapi.CodeInvalid, wantMsg: "destination"},
		{name: "rides.upcoming/refused string area", op: OpRidesUpcoming, params: `{"source":"1","destination":2,"after":0}`, wantCode: pluginapi.CodeInvalid, wantMsg: "source"},

		// rides.get
		{name: "rides.get/users in join order", op: OpRidesGet, params: `{"rideId":1}`,
			want: `{"ride":{"rideId":1,"created_by":"alice","users":["carol","bob"],"timestamp":2000,"source":1,"destination":2}}`},
		{name: "rides.get/no riders", op: OpRidesGet, params: `{"rideId":3}`,
			want: `{"ride":{"rideId":3,"created_by":"alice","users":[],"timestamp":2000,"source":1,"destination":2}}`},
		{name: "rides.get/refused not found", op: OpRidesGet, params: `{"rideId":99}`, wantCode: pluginapi.CodeNotFound, wantMsg: "ride 99"},
		{name: "rides.get/refused zero id", op: OpRidesGet, params: `{"rideId":0}`, wantCode: pluginapi.CodeNotFound},
		{name: "rides.get/refused missing rideId", op: OpRidesGet, params: `{}`, wantCode: pluginapi.CodeInvalid, wantMsg: "rideId"},
		{name: "rides.get/refused string rideId", op: OpRidesGet, params: `{"rideId":"1"}`, wantCode: pluginapi.CodeInvalid, wantMsg: "rideId"},
		{name: "rides.get/refused wrong field case", op: OpRidesGet, params: `{"rideid":1}`, wantCode: pluginapi.CodeInvalid, wantMsg: "rideid"},
		{name: "rides.get/refused duplicate field", op: OpRidesGet, params: `{"rideId":1,"rideId":2}`, wantCode: pluginapi.CodeInvalid, wantMsg: "twice"},
		{name: "rides.get/refused null spaced params", op: OpRidesGet, params: ` null `, wantCode: pluginapi.CodeInvalid, wantMsg: "rideId"},

		// rides.join
		{name: "rides.join/ok appended", op: OpRidesJoin, params: `{"rideId":1,"username":"dave"}`, want: `{}`,
			after: []check{{OpRidesGet, `{"rideId":1}`, `{"ride":{"rideId":1,"created_by":"alice","users":["carol","bob","dave"],"timestamp":2000,"source":1,"destination":2}}`}}},
		{name: "rides.join/refused no such ride", op: OpRidesJoin, params: `{"rideId":99,"username":"bob"}`, wantCode: pluginapi.CodeNotFound, wantMsg: "ride"},
		{name: "rides.join/refused no such ride before no such user", op: OpRidesJoin, params: `{"rideId":99,"username":"nobody"}`, wantCode: pluginapi.CodeNotFound, wantMsg: "ride"},
		{name: "rides.join/refused no such user", op: OpRidesJoin, params: `{"rideId":1,"username":"nobody"}`, wantCode: pluginapi.CodeInvalid, wantMsg: "nobody"},
		{name: "rides.join/refused creator", op: OpRidesJoin, params: `{"rideId":1,"username":"alice"}`, wantCode: pluginapi.CodeConflict, wantMsg: "created"},
		{name: "rides.join/refused twice", op: OpRidesJoin, params: `{"rideId":1,"username":"carol"}`, wantCode: pluginapi.CodeConflict, wantMsg: "already"},
		{name: "rides.join/refused missing rideId", op: OpRidesJoin, params: `{"username":"bob"}`, wantCode: pluginapi.CodeInvalid, wantMsg: "rideId"},
		{name: "rides.join/refused missing username", op: OpRidesJoin, params: `{"rideId":1}`, wantCode: pluginapi.CodeInvalid, wantMsg: "username"},
		{name: "rides.join/refused wrong type", op: OpRidesJoin, params: `{"rideId":1,"username":true}`, wantCode: pluginapi.CodeInvalid, wantMsg: "username"},

		// rides.delete
		{name: "rides.delete/ok", op: OpRidesDelete, params: `{"rideId":1}`, want: `{}`,
			after: []check{
				{OpRidesCount, `{}`, `{"count":3}`},
				{OpRidesUpcoming, `{"source":1,"destination":2,"after":0}`, `{"rides":[{"rideId":2,"username":"bob","timestamp":1000},{"rideId":3,"username":"alice","timestamp":2000}]}`},
				{OpUsersList, `{}`, `{"users":["alice","bob","carol","dave"]}`},
			}},
		{name: "rides.delete/refused not found", op: OpRidesDelete, params: `{"rideId":99}`, wantCode: pluginapi.CodeNotFound, wantMsg: "ride 99"},
		{name: "rides.delete/refused already deleted", setup: []step{{OpRidesDelete, `{"rideId":2}`}}, op: OpRidesDelete, params: `{"rideId":2}`, wantCode: pluginapi.CodeNotFound},
		{name: "rides.delete/refused missing rideId", op: OpRidesDelete, params: `{}`, wantCode: pluginapi.CodeInvalid, wantMsg: "rideId"},

		// rides.count
		{name: "rides.count/ok", op: OpRidesCount, params: `{}`, want: `{"count":4}`},
		{name: "rides.count/empty", setup: []step{{OpDBClear, `{}`}}, op: OpRidesCount, params: `{}`, want: `{"count":0}`},
		{name: "rides.count/refused unknown field", op: OpRidesCount, params: `{"source":1}`, wantCode: pluginapi.CodeInvalid, wantMsg: "source"},

		// db.clear
		{name: "db.clear/ok", op: OpDBClear, params: `{}`, want: `{}`,
			after: []check{
				{OpUsersList, `{}`, `{"users":[]}`},
				{OpRidesCount, `{}`, `{"count":0}`},
				{OpRidesUpcoming, `{"source":1,"destination":2,"after":0}`, `{"rides":[]}`},
				{OpUsersExists, `{"username":"alice"}`, `{"exists":false}`},
			}},
		{name: "db.clear/ok without params", op: OpDBClear, params: ``, want: `{}`},
		{name: "db.clear/refused unknown field", op: OpDBClear, params: `{"tables":["users"]}`, wantCode: pluginapi.CodeInvalid, wantMsg: "tables"},

		// dispatch
		{name: "unknown op/refused", op: "users.drop", params: `{}`, wantCode: pluginapi.CodeInvalid, wantMsg: `unknown operation "users.drop"`},
		{name: "unknown op/refused empty name", op: "", params: `{}`, wantCode: pluginapi.CodeInvalid, wantMsg: "unknown operation"},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		if seen[tc.name] {
			t.Fatalf("duplicate test name %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			db := mustOpenTx(t)
			seed(t, db)
			for _, s := range tc.setup {
				mustCall(t, db, s.op, s.params)
			}
			before := dump(t, db)
			got, err := call(t, db, tc.op, tc.params)
			if tc.wantCode != "" {
				e, ok := pluginapi.AsError(err)
				if !ok {
					t.Fatalf("got result %s, error %v; want a %s refusal", got, err, tc.wantCode)
				}
				if e.Code != tc.wantCode || !strings.Contains(e.Message, tc.wantMsg) {
					t.Fatalf("refusal %q; want code %s, message containing %q", e, tc.wantCode, tc.wantMsg)
				}
				if after := dump(t, db); after != before {
					t.Fatalf("a refused operation changed the database:\nbefore:\n%s\nafter:\n%s", before, after)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			assertJSON(t, tc.op, got, tc.want)
			for _, c := range tc.after {
				assertJSON(t, "then "+c.op+" "+c.params, mustCall(t, db, c.op, c.params), c.want)
			}
		})
	}
	// Every declared op has at least one success case and one refusal case.
	info, _ := New().Info(context.Background())
	for _, op := range info.Ops {
		var ok, refused bool
		for _, tc := range tests {
			if tc.op == op.Name {
				ok = ok || tc.wantCode == ""
				refused = refused || tc.wantCode != ""
			}
		}
		if !ok || !refused {
			t.Errorf("op %s: success case %v, refusal case %v", op.Name, ok, refused)
		}
	}
}

func TestInfo(t *testing.T) {
	info, err := New().Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "rideshare" || info.Version != "1.0.0" {
		t.Errorf("name %q version %q", info.Name, info.Version)
	}
	want := map[string]pluginapi.Kind{
		"users.add": pluginapi.Write, "users.delete": pluginapi.Write, "users.list": pluginapi.Read,
		"users.exists": pluginapi.Read, "rides.create": pluginapi.Write, "rides.upcoming": pluginapi.Read,
		"rides.get": pluginapi.Read, "rides.join": pluginapi.Write, "rides.delete": pluginapi.Write,
		"rides.count": pluginapi.Read, "db.clear": pluginapi.Write,
	}
	got := map[string]pluginapi.Kind{}
	for _, op := range info.Ops {
		if _, dup := got[op.Name]; dup {
			t.Errorf("op %s listed twice", op.Name)
		}
		got[op.Name] = op.Kind
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ops %v\nwant %v", got, want)
	}
	if len(info.Migrations) == 0 || info.Migrations[0].Version != 1 {
		t.Fatalf("migrations %+v: want version 1 first", info.Migrations)
	}
	for i, m := range info.Migrations {
		if m.Version != i+1 || len(m.Statements) == 0 {
			t.Errorf("migration %d: version %d, %d statements", i, m.Version, len(m.Statements))
		}
	}
	// Info hands out copies: changing them does not change the handler.
	info.Migrations[0].Statements[0] = "DROP TABLE users"
	again, _ := New().Info(context.Background())
	if again.Migrations[0].Statements[0] == "DROP TABLE users" {
		t.Error("Info exposes the handler's migration slice")
	}
}

func TestRideIDsNeverReused(t *testing.T) {
	db := mustOpenTx(t)
	mustCall(t, db, OpUsersAdd, `{"username":"u","password":"p"}`)
	create := func() string {
		return mustCall(t, db, OpRidesCreate, `{"created_by":"u","timestamp":10,"source":1,"destination":2}`)
	}
	assertJSON(t, "first", create(), `{"rideId":1}`)
	assertJSON(t, "second", create(), `{"rideId":2}`)
	mustCall(t, db, OpRidesDelete, `{"rideId":2}`)
	assertJSON(t, "after rides.delete", create(), `{"rideId":3}`)
	mustCall(t, db, OpUsersDelete, `{"username":"u"}`) // deletes rides 1 and 3
	mustCall(t, db, OpUsersAdd, `{"username":"u","password":"p"}`)
	assertJSON(t, "after users.delete", create(), `{"rideId":4}`)
	mustCall(t, db, OpDBClear, `{}`)
	mustCall(t, db, OpUsersAdd, `{"username":"u","password":"p"}`)
	assertJSON(t, "after db.clear", create(), `{"rideId":5}`)
	_, err := call(t, db, OpRidesGet, `{"rideId":1}`)
	if !errors.Is(err, pluginapi.ErrNotFound) {
		t.Errorf("ride 1 after db.clear: %v, want not_found", err)
	}
	// A refused create does not consume an id.
	if _, err := call(t, db, OpRidesCreate, `{"created_by":"nobody","timestamp":10,"source":1,"destination":2}`); !errors.Is(err, pluginapi.ErrNotFound) {
		t.Fatalf("create by nobody: %v", err)
	}
	assertJSON(t, "after a refusal", create(), `{"rideId":6}`)
}

func TestJoinOrderSurvivesRemovals(t *testing.T) {
	db := mustOpenTx(t)
	for _, u := range []string{"owner", "zed", "amy", "kim", "bo", "al"} {
		mustCall(t, db, OpUsersAdd, fmt.Sprintf(`{"username":%q,"password":"p"}`, u))
	}
	mustCall(t, db, OpRidesCreate, `{"created_by":"owner","timestamp":10,"source":1,"destination":2}`)
	mustCall(t, db, OpRidesCreate, `{"created_by":"owner","timestamp":10,"source":1,"destination":2}`)
	for _, u := range []string{"zed", "amy", "kim"} {
		mustCall(t, db, OpRidesJoin, fmt.Sprintf(`{"rideId":1,"username":%q}`, u))
	}
	mustCall(t, db, OpRidesJoin, `{"rideId":2,"username":"al"}`) // other rides do not disturb
	mustCall(t, db, OpUsersDelete, `{"username":"kim"}`)         // the last joiner leaves
	mustCall(t, db, OpRidesJoin, `{"rideId":1,"username":"bo"}`)
	mustCall(t, db, OpUsersDelete, `{"username":"zed"}`) // the first joiner leaves
	mustCall(t, db, OpRidesJoin, `{"rideId":1,"username":"al"}`)
	got := mustCall(t, db, OpRidesGet, `{"rideId":1}`)
	assertJSON(t, "ride 1", got, `{"ride":{"rideId":1,"created_by":"owner","users":["amy","bo","al"],"timestamp":10,"source":1,"destination":2}}`)
}

// TestDeterministicReplay runs writes on database A while recording every
// statement executed, replays the statements verbatim on a fresh database B,
// and checks that both hold the same rows: what the slaves do.
func TestDeterministicReplay(t *testing.T) {
	a, b := mustOpenTx(t), mustOpenTx(t)
	rec := &recordingDB{db: a}
	writes := []step{
		{OpUsersAdd, `{"username":"alice","password":"p1"}`},
		{OpUsersAdd, `{"username":"bob","password":"p2"}`},
		{OpUsersAdd, `{"username":"carol","password":"p3"}`},
		{OpUsersAdd, `{"username":"dave","password":"p4"}`},
		{OpRidesCreate, `{"created_by":"alice","timestamp":100,"source":1,"destination":2}`},
		{OpRidesCreate, `{"created_by":"bob","timestamp":50,"source":1,"destination":2}`},
		{OpRidesCreate, `{"created_by":"carol","timestamp":70,"source":3,"destination":4}`},
		{OpRidesJoin, `{"rideId":1,"username":"carol"}`},
		{OpRidesJoin, `{"rideId":1,"username":"bob"}`},
		{OpRidesJoin, `{"rideId":2,"username":"dave"}`},
		{OpRidesJoin, `{"rideId":3,"username":"alice"}`},
		{OpRidesDelete, `{"rideId":2}`},
		{OpUsersDelete, `{"username":"carol"}`},
		{OpRidesJoin, `{"rideId":1,"username":"dave"}`},
		{OpDBClear, `{}`},
		{OpUsersAdd, `{"username":"erin","password":"p5"}`},
		{OpUsersAdd, `{"username":"fay","password":"p6"}`},
		{OpRidesCreate, `{"created_by":"erin","timestamp":10,"source":5,"destination":6}`},
		{OpRidesJoin, `{"rideId":4,"username":"fay"}`},
		{OpRidesCreate, `{"created_by":"fay","timestamp":10,"source":5,"destination":6}`},
	}
	for _, w := range writes {
		mustCall(t, rec, w.op, w.params)
	}
	// A refused write executes nothing.
	n := len(rec.execs)
	if _, err := call(t, rec, OpRidesJoin, `{"rideId":4,"username":"fay"}`); !errors.Is(err, pluginapi.ErrConflict) {
		t.Fatalf("join twice: %v", err)
	}
	if len(rec.execs) != n {
		t.Fatalf("a refused write executed %d statements", len(rec.execs)-n)
	}
	for _, e := range rec.execs {
		for _, bad := range []string{"random(", "now", "datetime(", "julianday(", "PRAGMA"} {
			if strings.Contains(strings.ToLower(e.query), strings.ToLower(bad)) {
				t.Errorf("nondeterministic statement %q", e.query)
			}
		}
		if _, err := b.Exec(context.Background(), e.query, e.args...); err != nil {
			t.Fatalf("replay %q %v: %v", e.query, e.args, err)
		}
	}
	da, db := dump(t, a), dump(t, b)
	if da != db {
		t.Fatalf("replica differs:\nmaster:\n%s\nreplica:\n%s", da, db)
	}
	if !strings.Contains(da, `"ride_id", 5`) {
		t.Errorf("counter not kept across db.clear:\n%s", da)
	}
	// The reads agree too.
	for _, c := range []step{
		{OpUsersList, `{}`},
		{OpRidesGet, `{"rideId":4}`},
		{OpRidesUpcoming, `{"source":5,"destination":6,"after":0}`},
		{OpRidesCount, `{}`},
	} {
		assertJSON(t, c.op, mustCall(t, b, c.op, c.params), mustCall(t, a, c.op, c.params))
	}
}

// fakeDB answers every Query with rows and every Exec with execErr.
type fakeDB struct {
	rows    pluginapi.Rows
	err     error
	execErr error
}

func (f *fakeDB) Exec(context.Context, string, ...any) (pluginapi.ExecResult, error) {
	return pluginapi.ExecResult{}, f.execErr
}

func (f *fakeDB) Query(context.Context, string, ...any) (pluginapi.Rows, error) {
	return f.rows, f.err
}

func TestBadDatabaseAnswersAreFailures(t *testing.T) {
	boom := errors.New("disk on fire")
	tests := []struct {
		name   string
		db     *fakeDB
		op     string
		params string
	}{
		{"query error", &fakeDB{err: boom}, OpUsersList, `{}`},
		{"exec error", &fakeDB{execErr: boom}, OpDBClear, `{}`},
		{"exec error on add", &fakeDB{execErr: boom}, OpUsersAdd, `{"username":"u","password":"p"}`},
		{"name is an integer", &fakeDB{rows: pluginapi.Rows{Values: [][]any{{int64(3)}}}}, OpUsersList, `{}`},
		{"name is NULL", &fakeDB{rows: pluginapi.Rows{Values: [][]any{{nil}}}}, OpUsersList, `{}`},
		{"short row", &fakeDB{rows: pluginapi.Rows{Values: [][]any{{}}}}, OpRidesCount, `{}`},
		{"result is not JSON", &fakeDB{rows: pluginapi.Rows{Values: [][]any{{`{"count":`}}}}, OpRidesCount, `{}`},
		{"count is a fraction", &fakeDB{rows: pluginapi.Rows{Values: [][]any{{1.5}}}}, OpRidesCount, `{}`},
		{"count has no row", &fakeDB{rows: pluginapi.Rows{}}, OpRidesCount, `{}`},
		{"ride id is text", &fakeDB{rows: pluginapi.Rows{Values: [][]any{{"x", "u", int64(1)}}}}, OpRidesUpcoming, `{"source":1,"destination":2,"after":0}`},
		{"ride row too wide", &fakeDB{rows: pluginapi.Rows{Values: [][]any{{int64(1), "u", int64(1), int64(1)}}}}, OpRidesUpcoming, `{"source":1,"destination":2,"after":0}`},
		{"ride detail wrong types", &fakeDB{rows: pluginapi.Rows{Values: [][]any{{int64(1), "u", "t", int64(1), int64(2)}}}}, OpRidesGet, `{"rideId":1}`},
		{"unknown type", &fakeDB{rows: pluginapi.Rows{Values: [][]any{{struct{}{}}}}}, OpRidesCount, `{}`},
		{"nil db", nil, OpRidesCount, `{}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var db pluginapi.DB
			if tc.db != nil {
				db = tc.db
			}
			out, err := New().Execute(context.Background(), tc.op, json.RawMessage(tc.params), db)
			if err == nil {
				t.Fatalf("got %s, want a failure", out)
			}
			if _, refused := pluginapi.AsError(err); refused {
				t.Fatalf("got refusal %v, want a handler failure", err)
			}
			if out != nil {
				t.Errorf("result %s with error", out)
			}
		})
	}
}

func TestCanceledContext(t *testing.T) {
	db := mustOpenTx(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := New().Execute(ctx, OpUsersAdd, json.RawMessage(`{"username":"u","password":"p"}`), db)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if got := mustCall(t, db, OpUsersExists, `{"username":"u"}`); got != `{"exists":false}` {
		t.Errorf("canceled write applied: %s", got)
	}
}

// FuzzExecute feeds arbitrary operation names and parameters to Execute on a
// seeded database: it must never panic, a result must be a JSON object, and
// every error must be a refusal with a known code that changed nothing (bad
// input is the client's fault, never a handler failure).
func FuzzExecute(f *testing.F) {
	seeds := []struct{ op, params string }{
		{OpUsersAdd, `{"username":"erin","password":"p"}`},
		{OpUsersAdd, `{"username":"alice","password":"p"}`},
		{OpUsersAdd, `{"username":"","password":""}`},
		{OpUsersAdd, `{"username":"\u0000","password":"\uffff"}`},
		{OpUsersDelete, `{"username":"alice"}`},
		{OpUsersDelete, `{"username":1}`},
		{OpUsersList, ``},
		{OpUsersList, `{"x":1}`},
		{OpUsersExists, `{"username":"bob"}`},
		{OpRidesCreate, `{"created_by":"bob","timestamp":1,"source":1,"destination":2}`},
		{OpRidesCreate, `{"created_by":"bob","timestamp":-9223372036854775808,"source":9223372036854775807,"destination":1}`},
		{OpRidesCreate, `{"created_by":"bob","timestamp":1e3,"source":1,"destination":2}`},
		{OpRidesUpcoming, `{"source":1,"destination":2,"after":-1}`},
		{OpRidesGet, `{"rideId":1}`},
		{OpRidesGet, `{"rideId":-1}`},
		{OpRidesJoin, `{"rideId":1,"username":"bob"}`},
		{OpRidesJoin, `{"rideId":1,"username":"carol"}`},
		{OpRidesDelete, `{"rideId":2}`},
		{OpRidesCount, `{}`},
		{OpDBClear, `{}`},
		{"nope", `{}`},
		{"", ``},
		{OpUsersAdd, `{`},
		{OpUsersAdd, `[]`},
		{OpUsersAdd, `"x"`},
		{OpRidesJoin, `{"rideId":1,"rideId":2,"username":"dave"}`},
		{OpRidesGet, "{\"rideId\":1}\xff"},
	}
	for _, s := range seeds {
		f.Add(s.op, []byte(s.params))
	}
	sqldb := mustOpenSQL(f)
	f.Fuzz(func(t *testing.T, op string, params []byte) {
		tx, err := sqldb.Begin()
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }()
		db := &testTxDB{tx: tx}
		seed(t, db)
		before := dump(t, db)
		out, err := New().Execute(context.Background(), op, json.RawMessage(params), db)
		if err != nil {
			if out != nil {
				t.Errorf("result %s returned with error %v", out, err)
			}
			e, ok := pluginapi.AsError(err)
			if !ok {
				t.Fatalf("op %q params %q: handler failure %v, want a refusal", op, params, err)
			}
			switch e.Code {
			case pluginapi.CodeInvalid, pluginapi.CodeNotFound, pluginapi.CodeConflict:
			default:
				t.Fatalf("unknown code %q", e.Code)
			}
			if e.Message == "" {
				t.Fatal("refusal without a message")
			}
			if after := dump(t, db); after != before {
				t.Fatalf("refused %q %q changed the database", op, params)
			}
			return
		}
		var obj map[string]any
		if err := json.Unmarshal(out, &obj); err != nil {
			t.Fatalf("op %q params %q: result %q is not a JSON object: %v", op, params, out, err)
		}
	})
}
