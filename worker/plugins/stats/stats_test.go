package stats

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
	"github.com/rideshare-dbaas/rideshare/worker/plugins/rideshare"
	_ "modernc.org/sqlite"
)

// ---- test helpers: a real SQLite file behind pluginapi.DB ----

// testDB is a test helper: pluginapi.DB over one open *sql.Tx, the way the
// worker lends a transaction to a handler. With readOnly set, Exec fails,
// as in a slave's read snapshot.
type testDB struct {
	tx       *sql.Tx
	readOnly bool
	queries  []string
}

func (d *testDB) Exec(ctx context.Context, query string, args ...any) (pluginapi.ExecResult, error) {
	if d.readOnly {
		return pluginapi.ExecResult{}, fmt.Errorf("read-only snapshot: Exec(%q)", query)
	}
	res, err := d.tx.ExecContext(ctx, query, args...)
	if err != nil {
		return pluginapi.ExecResult{}, err
	}
	id, _ := res.LastInsertId()
	n, _ := res.RowsAffected()
	return pluginapi.ExecResult{LastInsertID: id, RowsAffected: n}, nil
}

func (d *testDB) Query(ctx context.Context, query string, args ...any) (pluginapi.Rows, error) {
	d.queries = append(d.queries, query)
	rows, err := d.tx.QueryContext(ctx, query, args...)
	if err != nil {
		return pluginapi.Rows{}, err
	}
	return pluginapi.ScanRows(rows)
}

// mustOpen is a test helper: a fresh SQLite file in t.TempDir() with the
// rideshare schema and then the stats migrations applied (the manifest
// order), and a DB over a transaction rolled back when the test ends.
func mustOpen(t testing.TB) *testDB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stats.db")
	sqldb, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	sqldb.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = sqldb.Close() })
	ctx := context.Background()
	tx, err := sqldb.Begin()
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	t.Cleanup(func() { _ = tx.Rollback() })
	for _, h := range []pluginapi.Handler{rideshare.New(), New()} {
		info, err := h.Info(ctx)
		if err != nil {
			t.Fatalf("info: %v", err)
		}
		for _, m := range info.Migrations {
			for _, s := range m.Statements {
				if _, err := tx.Exec(s); err != nil {
					t.Fatalf("%s migration %d: %v\n%s", info.Name, m.Version, err, s)
				}
			}
		}
	}
	return &testDB{tx: tx}
}

// rs runs a rideshare operation (the data the stats are about) and fails
// the test unless it succeeds.
func rs(t testing.TB, db pluginapi.DB, op, params string) {
	t.Helper()
	if _, err := rideshare.New().Execute(context.Background(), op, json.RawMessage(params), db); err != nil {
		t.Fatalf("rideshare %s %s: %v", op, params, err)
	}
}

// seed loads the fixture the table tests start from:
//
//	users alice bob carol dave erin (erin never rides)
//	ride 1: alice 1->2, joined by carol, bob
//	ride 2: bob   1->2
//	ride 3: alice 1->3
//	ride 4: carol 2->1, joined by dave, bob
//	ride 5: dave  5->4
//
// so area 1: 3 from, 1 to; 2: 1 from, 2 to; 3: 0/1; 4: 0/1; 5: 1/0, and
// bob 1 created + 2 joined, alice 2+0, carol 1+1, dave 1+1, erin nothing.
func seed(t testing.TB, db pluginapi.DB) {
	t.Helper()
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin"} {
		rs(t, db, rideshare.OpUsersAdd, fmt.Sprintf(`{"username":%q,"password":"%040d"}`, u, 0))
	}
	for _, r := range []string{
		`{"created_by":"alice","timestamp":2000,"source":1,"destination":2}`,
		`{"created_by":"bob","timestamp":1000,"source":1,"destination":2}`,
		`{"created_by":"alice","timestamp":2000,"source":1,"destination":3}`,
		`{"created_by":"carol","timestamp":3000,"source":2,"destination":1}`,
		`{"created_by":"dave","timestamp":4000,"source":5,"destination":4}`,
	} {
		rs(t, db, rideshare.OpRidesCreate, r)
	}
	rs(t, db, rideshare.OpRidesJoin, `{"rideId":1,"username":"carol"}`)
	rs(t, db, rideshare.OpRidesJoin, `{"rideId":1,"username":"bob"}`)
	rs(t, db, rideshare.OpRidesJoin, `{"rideId":4,"username":"dave"}`)
	rs(t, db, rideshare.OpRidesJoin, `{"rideId":4,"username":"bob"}`)
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

// ---- the table ----

func TestOperations(t *testing.T) {
	const allAreas = `{"areas":[
		{"area":1,"rides_from":3,"rides_to":1},
		{"area":2,"rides_from":1,"rides_to":2},
		{"area":3,"rides_from":0,"rides_to":1},
		{"area":4,"rides_from":0,"rides_to":1},
		{"area":5,"rides_from":1,"rides_to":0}]}`
	const allUsers = `{"users":[
		{"username":"bob","created":1,"joined":2},
		{"username":"alice","created":2,"joined":0},
		{"username":"carol","created":1,"joined":1},
		{"username":"dave","created":1,"joined":1}]}`
	tests := []struct {
		name     string
		setup    []string // rideshare writes after seed: "op params"
		empty    bool     // start from an empty database instead of the seed
		op       string
		params   string
		want     string
		wantCode pluginapi.Code
		wantMsg  string
	}{
		// stats.rides_per_area
		{name: "areas/all, busiest first then area", op: OpRidesPerArea, params: `{}`, want: allAreas},
		{name: "areas/absent params", op: OpRidesPerArea, params: ``, want: allAreas},
		{name: "areas/null params", op: OpRidesPerArea, params: `null`, want: allAreas},
		{name: "areas/null limit is no limit", op: OpRidesPerArea, params: `{"limit":null}`, want: allAreas},
		{name: "areas/limit", op: OpRidesPerArea, params: `{"limit":2}`,
			want: `{"areas":[{"area":1,"rides_from":3,"rides_to":1},{"area":2,"rides_from":1,"rides_to":2}]}`},
		{name: "areas/limit above the count", op: OpRidesPerArea, params: `{"limit":1000000}`, want: allAreas},
		{name: "areas/empty database", empty: true, op: OpRidesPerArea, params: `{}`, want: `{"areas":[]}`},
		{name: "areas/deleted rides do not count", setup: []string{
			rideshare.OpRidesDelete + ` {"rideId":5}`,
			rideshare.OpUsersDelete + ` {"username":"alice"}`,
		}, op: OpRidesPerArea, params: `{}`,
			want: `{"areas":[{"area":1,"rides_from":1,"rides_to":1},{"area":2,"rides_from":1,"rides_to":1}]}`},
		{name: "areas/refused limit 0", op: OpRidesPerArea, params: `{"limit":0}`, wantCode: pluginapi.CodeInvalid, wantMsg: `"limit" must be a positive integer`},
		{name: "areas/refused negative limit", op: OpRidesPerArea, params: `{"limit":-1}`, wantCode: pluginapi.CodeInvalid, wantMsg: "limit"},
		{name: "areas/refused fractional limit", op: OpRidesPerArea, params: `{"limit":1.5}`, wantCode: pluginapi.CodeInvalid, wantMsg: "limit"},
		{name: "areas/refused string limit", op: OpRidesPerArea, params: `{"limit":"3"}`, wantCode: pluginapi.CodeInvalid, wantMsg: "limit"},
		{name: "areas/refused huge limit", op: OpRidesPerArea, params: `{"limit":1e30}`, wantCode: pluginapi.CodeInvalid, wantMsg: "limit"},
		{name: "areas/refused unknown field", op: OpRidesPerArea, params: `{"area":1}`, wantCode: pluginapi.CodeInvalid, wantMsg: `unknown field "area"`},
		{name: "areas/refused wrong case", op: OpRidesPerArea, params: `{"Limit":1}`, wantCode: pluginapi.CodeInvalid, wantMsg: `unknown field "Limit"`},
		{name: "areas/refused duplicate", op: OpRidesPerArea, params: `{"limit":1,"limit":2}`, wantCode: pluginapi.CodeInvalid, wantMsg: "twice"},
		{name: "areas/refused not an object", op: OpRidesPerArea, params: `[1]`, wantCode: pluginapi.CodeInvalid},
		{name: "areas/refused trailing data", op: OpRidesPerArea, params: `{}{}`, wantCode: pluginapi.CodeInvalid},

		// stats.top_users
		{name: "users/activity, then created, then name", op: OpTopUsers, params: `{}`, want: allUsers},
		{name: "users/absent params", op: OpTopUsers, params: ``, want: allUsers},
		{name: "users/limit", op: OpTopUsers, params: `{"limit":2}`,
			want: `{"users":[{"username":"bob","created":1,"joined":2},{"username":"alice","created":2,"joined":0}]}`},
		{name: "users/limit 100", op: OpTopUsers, params: `{"limit":100}`, want: allUsers},
		{name: "users/byte order breaks ties", setup: []string{
			rideshare.OpUsersAdd + ` {"username":"Zed","password":"x"}`,
			rideshare.OpUsersAdd + ` {"username":"éa","password":"x"}`,
			rideshare.OpRidesCreate + ` {"created_by":"éa","timestamp":1,"source":7,"destination":8}`,
			rideshare.OpRidesCreate + ` {"created_by":"Zed","timestamp":1,"source":7,"destination":8}`,
		}, op: OpTopUsers, params: `{"limit":6}`, want: `{"users":[
			{"username":"bob","created":1,"joined":2},
			{"username":"alice","created":2,"joined":0},
			{"username":"carol","created":1,"joined":1},
			{"username":"dave","created":1,"joined":1},
			{"username":"Zed","created":1,"joined":0},
			{"username":"éa","created":1,"joined":0}]}`},
		{name: "users/default limit is 10", setup: func() []string {
			var s []string
			for i := range 12 {
				s = append(s,
					fmt.Sprintf(`%s {"username":"u%02d","password":"x"}`, rideshare.OpUsersAdd, i),
					fmt.Sprintf(`%s {"created_by":"u%02d","timestamp":1,"source":9,"destination":10}`, rideshare.OpRidesCreate, i),
					fmt.Sprintf(`%s {"created_by":"u%02d","timestamp":1,"source":9,"destination":10}`, rideshare.OpRidesCreate, i),
					fmt.Sprintf(`%s {"created_by":"u%02d","timestamp":1,"source":9,"destination":10}`, rideshare.OpRidesCreate, i),
				)
			}
			return s
		}(), op: OpTopUsers, params: `{}`, want: `{"users":[
			{"username":"u00","created":3,"joined":0},{"username":"u01","created":3,"joined":0},
			{"username":"u02","created":3,"joined":0},{"username":"u03","created":3,"joined":0},
			{"username":"u04","created":3,"joined":0},{"username":"u05","created":3,"joined":0},
			{"username":"u06","created":3,"joined":0},{"username":"u07","created":3,"joined":0},
			{"username":"u08","created":3,"joined":0},{"username":"u09","created":3,"joined":0}]}`},
		{name: "users/deleted user and memberships gone", setup: []string{
			rideshare.OpUsersDelete + ` {"username":"bob"}`,
		}, op: OpTopUsers, params: `{}`, want: `{"users":[
			{"username":"alice","created":2,"joined":0},
			{"username":"carol","created":1,"joined":1},
			{"username":"dave","created":1,"joined":1}]}`},
		{name: "users/sql-looking names are names", setup: []string{
			rideshare.OpUsersAdd + ` {"username":"x'); DROP TABLE rides;--","password":"x"}`,
			rideshare.OpRidesJoin + ` {"rideId":5,"username":"x'); DROP TABLE rides;--"}`,
		}, op: OpTopUsers, params: `{"limit":5}`, want: `{"users":[
			{"username":"bob","created":1,"joined":2},
			{"username":"alice","created":2,"joined":0},
			{"username":"carol","created":1,"joined":1},
			{"username":"dave","created":1,"joined":1},
			{"username":"x'); DROP TABLE rides;--","created":0,"joined":1}]}`},
		{name: "users/empty database", empty: true, op: OpTopUsers, params: `{}`, want: `{"users":[]}`},
		{name: "users/refused limit 0", op: OpTopUsers, params: `{"limit":0}`, wantCode: pluginapi.CodeInvalid, wantMsg: `"limit" must be an integer from 1 to 100, not 0`},
		{name: "users/refused limit 101", op: OpTopUsers, params: `{"limit":101}`, wantCode: pluginapi.CodeInvalid, wantMsg: "from 1 to 100, not 101"},
		{name: "users/refused fractional limit", op: OpTopUsers, params: `{"limit":2.0}`, wantCode: pluginapi.CodeInvalid, wantMsg: "limit"},
		{name: "users/refused bool limit", op: OpTopUsers, params: `{"limit":true}`, wantCode: pluginapi.CodeInvalid, wantMsg: "limit"},
		{name: "users/refused unknown field", op: OpTopUsers, params: `{"limit":5,"offset":5}`, wantCode: pluginapi.CodeInvalid, wantMsg: `unknown field "offset"`},
		{name: "users/refused wrong case", op: OpTopUsers, params: `{"LIMIT":5}`, wantCode: pluginapi.CodeInvalid, wantMsg: `unknown field "LIMIT"`},
		{name: "users/refused duplicate", op: OpTopUsers, params: `{"limit":5,"limit":500}`, wantCode: pluginapi.CodeInvalid, wantMsg: "twice"},
		{name: "users/refused malformed", op: OpTopUsers, params: `{"limit":`, wantCode: pluginapi.CodeInvalid},

		// anything else
		{name: "unknown operation", op: "stats.nope", params: `{}`, wantCode: pluginapi.CodeInvalid, wantMsg: `unknown operation "stats.nope"`},
		{name: "rideshare op is not ours", op: rideshare.OpRidesCount, params: `{}`, wantCode: pluginapi.CodeInvalid, wantMsg: "unknown operation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := mustOpen(t)
			if !tt.empty {
				seed(t, db)
			}
			for _, s := range tt.setup {
				op, params, _ := strings.Cut(s, " ")
				rs(t, db, op, params)
			}
			db.readOnly = true // reads run in a read-only snapshot
			var raw json.RawMessage
			if tt.params != "" {
				raw = json.RawMessage(tt.params)
			}
			out, err := New().Execute(context.Background(), tt.op, raw, db)
			if tt.wantCode != "" {
				pe, ok := pluginapi.AsError(err)
				if !ok {
					t.Fatalf("got result %s, error %v; want a %s refusal", out, err, tt.wantCode)
				}
				if pe.Code != tt.wantCode || !strings.Contains(pe.Message, tt.wantMsg) {
					t.Fatalf("refusal %q, want code %s with %q", pe, tt.wantCode, tt.wantMsg)
				}
				if out != nil {
					t.Fatalf("result %s returned with a refusal", out)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s %s: %v", tt.op, tt.params, err)
			}
			assertJSON(t, tt.op, string(out), tt.want)
		})
	}
}

func TestInfo(t *testing.T) {
	ctx := context.Background()
	info, err := New().Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != HandlerName || info.Version == "" {
		t.Fatalf("name %q version %q", info.Name, info.Version)
	}
	want := []pluginapi.Op{{Name: OpRidesPerArea, Kind: pluginapi.Read}, {Name: OpTopUsers, Kind: pluginapi.Read}}
	if !reflect.DeepEqual(info.Ops, want) {
		t.Fatalf("ops %+v, want %+v", info.Ops, want)
	}
	// Loaded next to rideshare: no operation may collide.
	rinfo, err := rideshare.New().Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range info.Ops {
		for _, b := range rinfo.Ops {
			if a.Name == b.Name {
				t.Errorf("operation %q served by both stats and rideshare", a.Name)
			}
		}
	}
	for i, m := range info.Migrations {
		if m.Version != i+1 || len(m.Statements) == 0 {
			t.Errorf("migration %d: version %d, %d statements", i, m.Version, len(m.Statements))
		}
	}
	// Info hands out copies: a caller cannot edit the released migrations.
	info.Migrations[0].Statements[0] = "DROP TABLE rides"
	again, _ := New().Info(ctx)
	if again.Migrations[0].Statements[0] == "DROP TABLE rides" {
		t.Fatal("Info exposes the package's migration slice")
	}
}

// The index the migration adds is what rides_per_area's destination arm
// uses (and rideshare's rides_route its source arm): no table scan.
func TestRidesPerAreaUsesIndexes(t *testing.T) {
	db := mustOpen(t)
	seed(t, db)
	if _, err := New().Execute(context.Background(), OpRidesPerArea, nil, db); err != nil {
		t.Fatal(err)
	}
	q := db.queries[len(db.queries)-1]
	plan, err := db.Query(context.Background(), "EXPLAIN QUERY PLAN "+q, int64(-1))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, row := range plan.Values {
		fmt.Fprintln(&b, row[len(row)-1])
	}
	for _, idx := range []string{"rides_route", "stats_rides_destination"} {
		if !strings.Contains(b.String(), "COVERING INDEX "+idx) {
			t.Errorf("plan does not use covering index %s:\n%s", idx, b.String())
		}
	}
}

// The migration applies on a database that already has data (a plugin
// added by a reload), and twice is harmless.
func TestMigrationOnExistingData(t *testing.T) {
	db := mustOpen(t)
	seed(t, db)
	info, _ := New().Info(context.Background())
	for range 2 {
		for _, s := range info.Migrations[0].Statements {
			if _, err := db.Exec(context.Background(), s); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestExecuteFailures(t *testing.T) {
	ctx := context.Background()
	if _, err := New().Execute(ctx, OpTopUsers, nil, nil); err == nil {
		t.Fatal("nil db: no error")
	} else if _, refused := pluginapi.AsError(err); refused {
		t.Fatalf("nil db is a failure, not a refusal: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	db := mustOpen(t)
	if _, err := New().Execute(cctx, OpTopUsers, nil, db); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	// A database answering garbage is a failure naming the operation.
	for _, bad := range []pluginapi.Rows{
		{Values: [][]any{{"alice", int64(1)}}},
		{Values: [][]any{{nil, int64(1), int64(0)}}},
		{Values: [][]any{{"alice", "x", int64(0)}}},
		{Values: [][]any{{"alice", 1.5, int64(0)}}},
	} {
		_, err := New().Execute(ctx, OpTopUsers, nil, fixedRows{bad})
		if err == nil || !strings.Contains(err.Error(), OpTopUsers) {
			t.Errorf("rows %v: %v", bad.Values, err)
		}
		if _, refused := pluginapi.AsError(err); refused {
			t.Errorf("rows %v: garbage reported as a refusal", bad.Values)
		}
	}
	if _, err := New().Execute(ctx, OpRidesPerArea, nil, fixedRows{pluginapi.Rows{Values: [][]any{{"one", int64(1), int64(0)}}}}); err == nil {
		t.Error("area as text: no error")
	}
	// An integral float (a transport that widened integers) is accepted.
	out, err := New().Execute(ctx, OpRidesPerArea, nil, fixedRows{pluginapi.Rows{Values: [][]any{{float64(3), int64(1), float64(2)}}}})
	if err != nil {
		t.Fatal(err)
	}
	assertJSON(t, "widened", string(out), `{"areas":[{"area":3,"rides_from":1,"rides_to":2}]}`)
}

// fixedRows answers every query with rows.
type fixedRows struct{ rows pluginapi.Rows }

func (f fixedRows) Exec(context.Context, string, ...any) (pluginapi.ExecResult, error) {
	return pluginapi.ExecResult{}, errors.New("read-only")
}

func (f fixedRows) Query(context.Context, string, ...any) (pluginapi.Rows, error) { return f.rows, nil }
