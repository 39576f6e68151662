package worker

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"modernc.org/sqlite"
)

// The worker, not the plugin, decides what reaches SQLite. A handler's
// statements pass two checks before they run:
//
//  1. a lexical one (checkStatement): exactly one statement per call, and
//     none of the statements that would take the transaction or the
//     connection away from the worker (BEGIN, COMMIT, END, ROLLBACK,
//     SAVEPOINT, RELEASE, ATTACH, DETACH, PRAGMA, VACUUM);
//  2. SQLite's own authorizer, installed on every connection the worker
//     opens (a connection hook of a driver of our own), which sees every
//     table and action a statement compiles to, however it is spelled:
//     it refuses what the lexical check refuses, any access to the
//     worker's own tables (_meta, _log, _writes, _migrations), and the
//     non-deterministic random() and randomblob() in writes, and it
//     reports whether the statement writes — so a write carried by Query
//     (INSERT … RETURNING) is recorded for replication like one carried
//     by Exec.
//
// The authorizer is the guarantee; the lexical check gives the clear
// error message.

// ErrStatementRefused is returned for a handler statement the worker does
// not let through.
var ErrStatementRefused = errors.New("statement refused")

// driverName is the database/sql driver of the worker's connections: the
// sqlite driver with the guard's connection hook.
const driverName = "rideshare-sqlite"

// guardParam names a connection's guard in its DSN (a URI parameter SQLite
// itself ignores).
const guardParam = "rideshare_guard"

// workerTables are the worker's own tables; handlers never touch them.
var workerTables = map[string]bool{"_meta": true, "_log": true, "_writes": true, "_migrations": true}

var guards = struct {
	sync.Mutex
	next int
	m    map[string]*guard
}{m: map[string]*guard{}}

func init() {
	d := &sqlite.Driver{}
	d.RegisterConnectionHook(func(conn sqlite.ExecQuerierContext, dsn string) error {
		g := guardOf(dsn)
		if g == nil {
			return nil
		}
		ar, ok := conn.(sqlite.AuthorizerRegisterer)
		if !ok {
			return errors.New("sqlite driver without an authorizer: cannot guard handler statements")
		}
		return ar.RegisterAuthorizer(g.authorize)
	})
	sql.Register(driverName, d)
}

func guardOf(dsn string) *guard {
	_, q, ok := strings.Cut(dsn, "?")
	if !ok {
		return nil
	}
	v, err := url.ParseQuery(q)
	if err != nil {
		return nil
	}
	id := v.Get(guardParam)
	if id == "" {
		return nil
	}
	guards.Lock()
	defer guards.Unlock()
	return guards.m[id]
}

// guard is the policy of the connections of one pool. On the writer
// connection the worker switches it on around each handler statement
// (handler); on a handler reader pool it is always on.
type guard struct {
	id      string
	always  bool        // every statement is a handler's
	handler atomic.Bool // the statement being prepared is a handler's
	writes  atomic.Bool // set when the statement being prepared writes
	nondet  atomic.Bool // it calls random() or randomblob()
	why     atomic.Pointer[string]
}

// newGuard registers a guard and returns it with the DSN parameter that
// attaches it to a pool's connections.
func newGuard(always bool) (*guard, string) {
	guards.Lock()
	defer guards.Unlock()
	guards.next++
	g := &guard{id: fmt.Sprint(guards.next), always: always}
	guards.m[g.id] = g
	return g, "&" + guardParam + "=" + g.id
}

// release forgets the guard (its pool is closed).
func (g *guard) release() {
	guards.Lock()
	delete(guards.m, g.id)
	guards.Unlock()
}

// begin switches the guard on for one handler statement.
func (g *guard) begin() {
	g.why.Store(nil)
	g.writes.Store(false)
	g.nondet.Store(false)
	g.handler.Store(true)
}

// end switches it off and reports whether the statement wrote, and why
// SQLite refused it if it did.
func (g *guard) end() (wrote bool, refused string) {
	g.handler.Store(false)
	if w := g.why.Load(); w != nil {
		refused = *w
	}
	return g.writes.Load(), refused
}

func (g *guard) deny(why string) sqlite.AuthorizerReturnCode {
	g.why.Store(&why)
	return sqlite.AuthorizerDeny
}

func (g *guard) authorize(action sqlite.AuthorizerActionCode, arg1, arg2, _, _ string) sqlite.AuthorizerReturnCode {
	if !g.always && !g.handler.Load() {
		return sqlite.AuthorizerOK // the worker's own statements
	}
	table := ""
	switch action {
	case sqlite.AuthTransaction:
		if g.always {
			// The driver's own BEGIN and ROLLBACK of a read transaction on
			// a handler reader (which cannot write: query_only). A
			// handler's are refused by the lexical check.
			return sqlite.AuthorizerOK
		}
		return g.deny("transaction control belongs to the worker")
	case sqlite.AuthSavepoint:
		return g.deny("transaction control belongs to the worker")
	case sqlite.AuthAttach, sqlite.AuthDetach:
		return g.deny("attaching databases is not allowed")
	case sqlite.AuthPragma:
		return g.deny("PRAGMA is not allowed")
	case sqlite.AuthFunction:
		// Only a statement that writes must replay the same everywhere;
		// SQLite authorizes every part of a statement before it runs any,
		// so the pair is refused whichever of the two comes first.
		if f := strings.ToLower(arg2); f == "random" || f == "randomblob" {
			g.nondet.Store(true)
			if g.writes.Load() {
				return g.deny(f + "() is not deterministic: a write must replay the same on every replica")
			}
		}
		return sqlite.AuthorizerOK
	case sqlite.AuthRead, sqlite.AuthSelect, sqlite.AuthRecursive:
		table = arg1
	case sqlite.AuthInsert, sqlite.AuthUpdate, sqlite.AuthDelete,
		sqlite.AuthCreateTable, sqlite.AuthDropTable, sqlite.AuthCreateTempTable, sqlite.AuthDropTempTable,
		sqlite.AuthCreateView, sqlite.AuthDropView, sqlite.AuthCreateTempView, sqlite.AuthDropTempView,
		sqlite.AuthCreateVTable, sqlite.AuthDropVTable, sqlite.AuthAnalyze:
		table = arg1
		g.writes.Store(true)
	case sqlite.AuthCreateIndex, sqlite.AuthDropIndex, sqlite.AuthCreateTempIndex, sqlite.AuthDropTempIndex,
		sqlite.AuthCreateTrigger, sqlite.AuthDropTrigger, sqlite.AuthCreateTempTrigger, sqlite.AuthDropTempTrigger:
		table = arg2
		g.writes.Store(true)
	case sqlite.AuthAlterTable:
		table = arg2
		g.writes.Store(true)
	case sqlite.AuthReindex:
		g.writes.Store(true)
	default:
		return g.deny(fmt.Sprintf("SQLite action %d is not allowed", action))
	}
	if workerTables[strings.ToLower(table)] {
		return g.deny("table " + table + " belongs to the worker")
	}
	if g.writes.Load() && g.nondet.Load() {
		return g.deny("random() is not deterministic: a write must replay the same on every replica")
	}
	return sqlite.AuthorizerOK
}

// checkStatement is the lexical check of a handler statement: one
// statement, not one of those that take the transaction or the
// connection away from the worker.
func checkStatement(query string) error {
	kw, more := scanSQL(query)
	switch kw {
	case "":
		return fmt.Errorf("%w: empty statement", ErrStatementRefused)
	case "BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE":
		return fmt.Errorf("%w: %s: transaction control belongs to the worker", ErrStatementRefused, kw)
	case "ATTACH", "DETACH":
		return fmt.Errorf("%w: %s: attaching databases is not allowed", ErrStatementRefused, kw)
	case "PRAGMA", "VACUUM":
		return fmt.Errorf("%w: %s is not allowed", ErrStatementRefused, kw)
	}
	if more {
		return fmt.Errorf("%w: one statement per call (found more after a ';')", ErrStatementRefused)
	}
	return nil
}

// scanSQL returns the first keyword of query (upper-cased) and whether
// another statement follows a ';'. It skips white space, comments, string
// literals and quoted identifiers.
func scanSQL(q string) (first string, more bool) {
	ended := false
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				return first, more
			}
			i += end + 4
		case c == ';':
			ended = first != ""
			i++
		default:
			if ended {
				return first, true
			}
			j := i
			switch c {
			case '\'', '"', '`':
				j = skipQuoted(q, i, c)
			case '[':
				if k := strings.IndexByte(q[i:], ']'); k >= 0 {
					j = i + k + 1
				} else {
					j = len(q)
				}
			default:
				for j < len(q) && (isWordByte(q[j])) {
					j++
				}
				if j == i {
					j++
				}
			}
			if first == "" {
				first = strings.ToUpper(q[i:j])
				if !isWordByte(q[i]) {
					first = "?"
				}
			}
			i = j
		}
	}
	return first, false
}

func skipQuoted(q string, i int, quote byte) int {
	for j := i + 1; j < len(q); j++ {
		if q[j] == quote {
			if j+1 < len(q) && q[j+1] == quote {
				j++ // doubled quote
				continue
			}
			return j + 1
		}
	}
	return len(q)
}

func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}
