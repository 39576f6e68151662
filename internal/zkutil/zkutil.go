// Package zkutil holds the ZooKeeper plumbing the orchestrator and the
// workers share: a connection whose session changes are reported without
// loss, and small helpers for paths.
//
// go-zookeeper reconnects by itself and, after an expiry, silently opens a
// new session: the old session's ephemeral znodes are gone and nothing
// re-creates them. Session tells its owner about every new session
// (coalesced, never dropped), and the owner rebuilds what the session
// owned.
package zkutil

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// Session is a ZooKeeper connection plus a signal for session changes.
type Session struct {
	Conn *zk.Conn
	log  *slog.Logger

	mu       sync.Mutex
	lastID   int64
	changed  chan struct{} // capacity 1: coalesced "look at the session again"
	lost     chan struct{} // capacity 1: disconnected or expired
	hasState zk.State
}

// Connect opens a session to servers. It does not wait for the session;
// use WaitSession.
func Connect(servers []string, timeout time.Duration, log *slog.Logger) (*Session, error) {
	s := &Session{log: log, changed: make(chan struct{}, 1), lost: make(chan struct{}, 1)}
	conn, events, err := zk.Connect(servers, timeout,
		zk.WithLogger(zkLogger{log}),
		zk.WithLogInfo(false),
		zk.WithEventCallback(s.onEvent))
	if err != nil {
		return nil, fmt.Errorf("zookeeper connect %v: %w", servers, err)
	}
	// The event channel is buffered to 6 and dropped into when full; the
	// callback above sees every event, so just drain it.
	go func() {
		for range events { //nolint:revive
		}
	}()
	s.Conn = conn
	return s, nil
}

func (s *Session) onEvent(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	s.mu.Lock()
	s.hasState = ev.State
	s.mu.Unlock()
	switch ev.State {
	case zk.StateHasSession:
		signal(s.changed)
	case zk.StateDisconnected, zk.StateExpired:
		signal(s.lost)
		signal(s.changed)
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Changed fires (coalesced) after the session was established, lost or
// replaced. Receivers re-read SessionID and state.
func (s *Session) Changed() <-chan struct{} { return s.changed }

// Lost fires (coalesced) when the connection dropped or the session expired.
func (s *Session) Lost() <-chan struct{} { return s.lost }

// HasSession reports whether the session is usable right now.
func (s *Session) HasSession() bool { return s.Conn.State() == zk.StateHasSession }

// NewSessionID returns the current session id and whether it differs from
// the one seen at the last call (a new session: ephemerals must be rebuilt).
func (s *Session) NewSessionID() (int64, bool) {
	id := s.Conn.SessionID()
	s.mu.Lock()
	defer s.mu.Unlock()
	isNew := id != 0 && id != s.lastID
	if isNew {
		s.lastID = id
	}
	return id, isNew
}

// WaitSession waits until a session is established, logging every few
// seconds while ZooKeeper does not answer.
func (s *Session) WaitSession(ctx context.Context, servers []string) error {
	start := time.Now()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	lastLog := time.Now()
	for !s.HasSession() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if time.Since(lastLog) > 3*time.Second {
			s.log.Warn("waiting for ZooKeeper; is it running?", "servers", servers, "waited", time.Since(start).Round(time.Second))
			lastLog = time.Now()
		}
	}
	return nil
}

// Close ends the session.
func (s *Session) Close() { s.Conn.Close() }

// EnsurePath creates p and its parents as persistent znodes.
func EnsurePath(conn *zk.Conn, p string) error {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	cur := ""
	for _, part := range parts {
		cur = path.Join("/", cur, part)
		_, err := conn.Create(cur, nil, 0, zk.WorldACL(zk.PermAll))
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("create %s: %w", cur, err)
		}
	}
	return nil
}

// SplitServers splits a comma-separated server list.
func SplitServers(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

type zkLogger struct{ log *slog.Logger }

func (l zkLogger) Printf(format string, args ...any) {
	l.log.Debug("zk: " + fmt.Sprintf(format, args...))
}
