package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/rideshare-dbaas/rideshare/internal/loadgen"
)

// The SQL the rqlite side runs: the same table and statements as the
// rideshare handler's users.add and users.exists (worker/plugins/rideshare).
const (
	RqliteSchema = `CREATE TABLE IF NOT EXISTS users (
	name     TEXT NOT NULL COLLATE BINARY PRIMARY KEY,
	password TEXT NOT NULL
)`
	RqliteInsert = `INSERT INTO users (name, password) VALUES (?, ?)`
	RqliteSelect = `SELECT 1 FROM users WHERE name = ?`
)

// Read consistency levels of rqlite's /db/query.
const (
	LevelWeak         = "weak"
	LevelLinearizable = "linearizable"
)

// DBaaS calls our orchestrator's HTTP API (docs/dbaas-api.md).
type DBaaS struct {
	URL    string // http://127.0.0.1:PORT
	Client *http.Client
}

// AddUser is one db/write users.add.
func (d DBaaS) AddUser(ctx context.Context, name string) error {
	var out struct {
		Result json.RawMessage `json:"result"`
	}
	return postJSON(ctx, d.Client, d.URL+"/api/v1/db/write", map[string]any{
		"op": "users.add", "params": map[string]string{"username": name, "password": loadgen.Password(name)},
	}, &out)
}

// UserExists is one db/read users.exists at the default (strong)
// consistency; a user that does not exist is an error, so that a read that
// silently misses its row is not counted as served.
func (d DBaaS) UserExists(ctx context.Context, name string) error {
	var out struct {
		Result struct {
			Exists bool `json:"exists"`
		} `json:"result"`
	}
	if err := postJSON(ctx, d.Client, d.URL+"/api/v1/db/read", map[string]any{
		"op": "users.exists", "params": map[string]string{"username": name},
	}, &out); err != nil {
		return err
	}
	if !out.Result.Exists {
		return fmt.Errorf("users.exists %q: false", name)
	}
	return nil
}

// Rqlite calls one rqlite node's HTTP API.
type Rqlite struct {
	URL    string // http://127.0.0.1:PORT
	Client *http.Client
}

// rqliteResults is the body of /db/execute and /db/query. rqlite answers
// 200 even when a statement failed; the error is in its result.
type rqliteResults struct {
	Results []struct {
		Error        string  `json:"error"`
		RowsAffected int64   `json:"rows_affected"`
		Values       [][]any `json:"values"`
	} `json:"results"`
	Error string `json:"error"`
}

func (r *rqliteResults) check(n int) error {
	if r.Error != "" {
		return fmt.Errorf("rqlite: %s", r.Error)
	}
	if len(r.Results) != n {
		return fmt.Errorf("rqlite: %d results for %d statements", len(r.Results), n)
	}
	for _, res := range r.Results {
		if res.Error != "" {
			return fmt.Errorf("rqlite: %s", res.Error)
		}
	}
	return nil
}

// Execute runs statements (each [sql, args...]) in one /db/execute call.
func (q Rqlite) Execute(ctx context.Context, stmts ...[]any) error {
	var out rqliteResults
	if err := postJSON(ctx, q.Client, q.URL+"/db/execute", stmts, &out); err != nil {
		return err
	}
	return out.check(len(stmts))
}

// Schema creates the users table (idempotent).
func (q Rqlite) Schema(ctx context.Context) error {
	return q.Execute(ctx, []any{RqliteSchema})
}

// AddUser is one parameterised INSERT, the twin of DBaaS.AddUser.
func (q Rqlite) AddUser(ctx context.Context, name string) error {
	var out rqliteResults
	if err := postJSON(ctx, q.Client, q.URL+"/db/execute",
		[][]any{{RqliteInsert, name, loadgen.Password(name)}}, &out); err != nil {
		return err
	}
	if err := out.check(1); err != nil {
		return err
	}
	if out.Results[0].RowsAffected != 1 {
		return fmt.Errorf("rqlite insert %q: %d rows affected", name, out.Results[0].RowsAffected)
	}
	return nil
}

// UserExists is one point SELECT at the given read consistency level, the
// twin of DBaaS.UserExists.
func (q Rqlite) UserExists(ctx context.Context, level, name string) error {
	var out rqliteResults
	u := q.URL + "/db/query?level=" + url.QueryEscape(level)
	if err := postJSON(ctx, q.Client, u, [][]any{{RqliteSelect, name}}, &out); err != nil {
		return err
	}
	if err := out.check(1); err != nil {
		return err
	}
	if len(out.Results[0].Values) != 1 {
		return fmt.Errorf("rqlite select %q: %d rows", name, len(out.Results[0].Values))
	}
	return nil
}

// postJSON posts body as JSON and decodes a 200 answer into out; any other
// status is an error carrying the start of the answer.
func postJSON(ctx context.Context, c *http.Client, u string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s: reading the answer: %w", req.URL.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d %s", req.URL.Path, resp.StatusCode, strings.TrimSpace(string(data[:min(len(data), 200)])))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s: undecodable answer: %w", req.URL.Path, err)
	}
	return nil
}
