// Command hostile is a test plugin whose operations try, on purpose, to
// get around the worker: end or nest its transaction, attach databases,
// change pragmas, touch the worker's own tables, write through Query, run
// two statements in one call, write in a read, or hang. The worker's tests
// (worker/hostile_test.go) check each is refused with a clear error, or,
// where it is legitimate (a write through Query), recorded and
// replicated, and that nothing reaches SQLite behind the worker's back.
package main

import (
	"context"
	"encoding/json"

	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

// execOp runs one statement and returns its error: the hostile plugin
// reports what the worker told it.
func execOp(query string) pluginapi.OpFunc {
	return func(ctx context.Context, _ json.RawMessage, db pluginapi.DB) (any, error) {
		_, err := db.Exec(ctx, query)
		return struct{}{}, err
	}
}

// ignoreThenInsert runs query, ignores what the worker said, and writes a
// row as if nothing happened (a plugin that does not check errors).
func ignoreThenInsert(query string) pluginapi.OpFunc {
	return func(ctx context.Context, _ json.RawMessage, db pluginapi.DB) (any, error) {
		_, _ = db.Exec(ctx, query)
		_, err := db.Exec(ctx, `INSERT INTO hostile (v) VALUES ('after')`)
		return struct{}{}, err
	}
}

func queryOp(query string) pluginapi.OpFunc {
	return func(ctx context.Context, _ json.RawMessage, db pluginapi.DB) (any, error) {
		rows, err := db.Query(ctx, query)
		if err != nil {
			return nil, err
		}
		return rows.Values, nil
	}
}

func main() {
	w, r := pluginapi.Write, pluginapi.Read
	pluginapi.Serve(&pluginapi.Table{
		Name:    "hostile",
		Version: "1",
		Ops: []pluginapi.TableOp{
			{Name: "hostile.insert", Kind: w, Run: execOp(`INSERT INTO hostile (v) VALUES ('ok')`)},
			{Name: "hostile.returning", Kind: w, Run: queryOp(`INSERT INTO hostile (v) VALUES ('returned') RETURNING id, v`)},
			{Name: "hostile.cte_write", Kind: w, Run: execOp(`WITH x(v) AS (SELECT 'cte') INSERT INTO hostile (v) SELECT v FROM x`)},
			{Name: "hostile.commit", Kind: w, Run: execOp(`COMMIT`)},
			{Name: "hostile.commit_ignored", Kind: w, Run: ignoreThenInsert(`COMMIT`)},
			{Name: "hostile.commit_comment", Kind: w, Run: execOp(`/* sneaky */ -- really
 commit`)},
			{Name: "hostile.rollback", Kind: w, Run: execOp(`ROLLBACK`)},
			{Name: "hostile.savepoint", Kind: w, Run: execOp(`SAVEPOINT mine`)},
			{Name: "hostile.release", Kind: w, Run: execOp(`RELEASE op`)},
			{Name: "hostile.attach", Kind: w, Run: execOp(`ATTACH DATABASE ':memory:' AS other`)},
			{Name: "hostile.pragma", Kind: w, Run: execOp(`PRAGMA foreign_keys = ON`)},
			{Name: "hostile.pragma_fn", Kind: w, Run: queryOp(`SELECT * FROM pragma_table_info('hostile')`)},
			{Name: "hostile.vacuum", Kind: w, Run: execOp(`VACUUM`)},
			{Name: "hostile.meta", Kind: w, Run: execOp(`UPDATE _meta SET v = 0`)},
			{Name: "hostile.log", Kind: w, Run: execOp(`DELETE FROM _log`)},
			{Name: "hostile.writes", Kind: w, Run: execOp(`DELETE FROM "_writes"`)},
			{Name: "hostile.migrations", Kind: w, Run: execOp(`DELETE FROM [_Migrations]`)},
			{Name: "hostile.read_log", Kind: w, Run: queryOp(`SELECT count(*) FROM _log`)},
			{Name: "hostile.multi", Kind: w, Run: execOp(`INSERT INTO hostile (v) VALUES ('multi'); COMMIT`)},
			{Name: "hostile.random", Kind: w, Run: execOp(`INSERT INTO hostile (v) VALUES (random())`)},
			{Name: "hostile.failed_write_ignored", Kind: w, Run: func(ctx context.Context, _ json.RawMessage, db pluginapi.DB) (any, error) {
				// ON CONFLICT FAIL keeps the rows before the failing one;
				// the worker cannot know them, so the operation fails.
				_, _ = db.Exec(ctx, `INSERT OR FAIL INTO hostile (id, v) VALUES (1000, 'a'), (1000, 'b')`)
				return struct{}{}, nil
			}},
			{Name: "hostile.hang", Kind: w, Run: func(ctx context.Context, _ json.RawMessage, db pluginapi.DB) (any, error) {
				select {} // never returns, whatever the deadline says
			}},
			{Name: "hostile.read_write", Kind: r, Run: queryOp(`INSERT INTO hostile (v) VALUES ('from a read') RETURNING id`)},
			{Name: "hostile.read_meta", Kind: r, Run: queryOp(`SELECT k, v FROM _meta`)},
			{Name: "hostile.read_commit", Kind: r, Run: queryOp(`COMMIT`)},
			{Name: "hostile.read_ok", Kind: r, Run: queryOp(`SELECT count(*) FROM hostile`)},
		},
		Migrations: []pluginapi.Migration{{Version: 1, Statements: []string{
			`CREATE TABLE hostile (id INTEGER PRIMARY KEY, v TEXT NOT NULL)`,
		}}},
	})
}
