package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// The operations the clients run (handler rideshare). rides.create and
// rides.join are not idempotent by themselves: applied twice, the first
// makes a second ride, the second answers 409. So only the write id keeps
// a resent write from being applied twice.
const (
	opAddUser = "users.add"
	opCreate  = "rides.create"
	opJoin    = "rides.join"
)

// readDeadline bounds how long a client keeps resending one
// read-your-writes check that gets no answer (503s).
const readDeadline = 30 * time.Second

type load struct {
	c   *Chaos
	api *api
	rec *recorder
}

func newLoad(c *Chaos, a *api, rec *recorder) *load { return &load{c: c, api: a, rec: rec} }

// run runs the clients until ctx ends.
func (l *load) run(ctx context.Context) {
	var wg sync.WaitGroup
	for n := range l.c.opts.Clients {
		cl := &client{n: n, l: l, rng: rand.New(rand.NewPCG(l.c.opts.Seed, uint64(n)+1))}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl.run(ctx)
		}()
	}
	wg.Wait()
}

type ownRide struct {
	id      int64
	creator string
	members []string
}

// client is one of the N clients. It writes one thing at a time: a write is
// resent with the same id until it is acknowledged (or the run ends), then
// read back with min_seq = the write's seq.
type client struct {
	n     int
	l     *load
	rng   *rand.Rand
	users []string
	rides []ownRide
	nUser int
	nOp   int
}

func (cl *client) run(ctx context.Context) {
	for ctx.Err() == nil {
		w, params := cl.next()
		cl.l.rec.add(w)
		rep, ok := cl.writeUntilAck(ctx, w, params)
		if !ok {
			return
		}
		if rep.Status != 200 {
			continue
		}
		cl.applied(w)
		cl.readYourWrite(ctx, w, rep.Seq)
	}
}

func (cl *client) next() (*writeRec, map[string]any) {
	run := cl.l.c.runID
	cl.nOp++
	w := &writeRec{ID: fmt.Sprintf("chaos-%s-c%02d-w%06d", run, cl.n, cl.nOp), Client: cl.n}
	newUser := func() (*writeRec, map[string]any) {
		cl.nUser++
		w.Op, w.Username = opAddUser, fmt.Sprintf("chaos-%s-c%02d-u%04d", run, cl.n, cl.nUser)
		return w, map[string]any{"username": w.Username, "password": fmt.Sprintf("%040x", cl.rng.Uint64())}
	}
	if len(cl.users) < 2 {
		return newUser()
	}
	p := cl.rng.IntN(100)
	if p >= 80 {
		return newUser()
	}
	if p >= 55 {
		if ri, joiner, ok := cl.joinCandidate(); ok {
			w.Op, w.Username, w.RideID = opJoin, joiner, cl.rides[ri].id
			return w, map[string]any{"rideId": w.RideID, "username": joiner}
		}
	}
	// A timestamp unique to this write: a second ride with the same
	// creator and timestamp can only come from applying it twice.
	w.Op = opCreate
	w.Username = cl.users[cl.rng.IntN(len(cl.users))]
	w.TS = 2_000_000_000 + int64(cl.n)*10_000_000 + int64(cl.nOp)
	w.Source = 1 + cl.rng.IntN(198)
	w.Dest = 1 + (w.Source+cl.rng.IntN(197))%198
	return w, map[string]any{"created_by": w.Username, "timestamp": w.TS, "source": w.Source, "destination": w.Dest}
}

// joinCandidate picks one of the client's recent rides and one of its
// users who is neither its creator nor already in it.
func (cl *client) joinCandidate() (int, string, bool) {
	if len(cl.rides) == 0 {
		return 0, "", false
	}
	lo := max(0, len(cl.rides)-20)
	ri := lo + cl.rng.IntN(len(cl.rides)-lo)
	r := cl.rides[ri]
	var cands []string
	for _, u := range cl.users {
		if u != r.creator && !slices.Contains(r.members, u) {
			cands = append(cands, u)
		}
	}
	if len(cands) == 0 {
		return 0, "", false
	}
	return ri, cands[cl.rng.IntN(len(cands))], true
}

func (cl *client) applied(w *writeRec) {
	switch w.Op {
	case opAddUser:
		cl.users = append(cl.users, w.Username)
	case opCreate:
		cl.rides = append(cl.rides, ownRide{id: w.RideID, creator: w.Username})
	case opJoin:
		for i := range cl.rides {
			if cl.rides[i].id == w.RideID {
				cl.rides[i].members = append(cl.rides[i].members, w.Username)
			}
		}
	}
}

// writeUntilAck sends w with the same id until it is acknowledged. It
// returns false when the run ended first (w stays unacknowledged: it may
// or may not have been applied, but at most once).
func (cl *client) writeUntilAck(ctx context.Context, w *writeRec, params map[string]any) (reply, bool) {
	rec := cl.l.rec
	backoff := 10 * time.Millisecond
	for ctx.Err() == nil {
		sent := time.Now()
		rec.attempt(w, sent)
		rep := cl.l.api.write(ctx, w.ID, w.Op, params)
		rec.count(fmt.Sprintf("write %d", rep.Status))
		switch {
		case rep.Status == 200:
			var rideID int64
			if w.Op == opCreate {
				var res struct {
					RideID *int64 `json:"rideId"`
				}
				if err := json.Unmarshal(rep.Result, &res); err != nil || res.RideID == nil {
					rec.violation("bad-reply", "write %s (%s) answered 200 without a rideId: %s", w.ID, w.Op, rep)
				} else {
					rideID = *res.RideID
				}
			}
			rec.acked(w, sent, rep, rideID)
			return rep, true
		case (rep.Status == 400 || rep.Status == 404 || rep.Status == 409) && rep.Code != "":
			// An acknowledged refusal. None is expected: the user names are
			// new, the creator and joiner were acknowledged before, the
			// joiner is not yet in the ride. A 409 on a resent write means
			// it was applied twice; a 404 means an acknowledged write is gone.
			rec.acked(w, sent, rep, 0)
			rec.violation("unexpected-refusal", "write %s %s %v answered %s", w.ID, w.Op, params, rep)
			return rep, true
		case rep.Status == 0 && ctx.Err() != nil:
			return rep, false
		case rep.Status == 0 || rep.Status == 502 || rep.Status == 503 || rep.Status == 500:
			// No answer or unavailable: resend the same id.
		default:
			rec.violation("bad-reply", "write %s %s answered %s", w.ID, w.Op, rep)
		}
		select {
		case <-ctx.Done():
			return reply{}, false
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 200*time.Millisecond)
	}
	return reply{}, false
}

// readYourWrite reads w back from a replica that has applied at least its
// seq ("consistency": "session", so min_seq alone decides). The answer must
// show the write, and its seq must not be below min_seq.
func (cl *client) readYourWrite(ctx context.Context, w *writeRec, seq uint64) {
	var op string
	var params map[string]any
	switch w.Op {
	case opAddUser:
		op, params = "users.exists", map[string]any{"username": w.Username}
	default:
		op, params = "rides.get", map[string]any{"rideId": w.RideID}
	}
	rec := cl.l.rec
	rep, ok := cl.readUntilAnswered(ctx, op, params, seq)
	if !ok {
		rec.mu.Lock()
		if ctx.Err() != nil {
			rec.rywCut++ // the run ended first
		} else {
			rec.rywUncertain++
		}
		rec.mu.Unlock()
		return
	}
	rec.mu.Lock()
	rec.rywChecked++
	rec.mu.Unlock()
	stale := func(why string) {
		rec.violation("stale-read", "%s %v with min_seq %d (after write %s %s acked at seq %d) %s: %s", op, params, seq, w.ID, w.Op, seq, why, rep)
	}
	if rep.Status != 200 {
		stale("did not find it")
		return
	}
	if rep.Seq < seq {
		stale(fmt.Sprintf("answered from seq %d < min_seq", rep.Seq))
		return
	}
	switch w.Op {
	case opAddUser:
		var res struct {
			Exists bool `json:"exists"`
		}
		if json.Unmarshal(rep.Result, &res) != nil || !res.Exists {
			stale("says the user does not exist")
		}
	case opCreate, opJoin:
		var res struct {
			Ride struct {
				RideID    int64    `json:"rideId"`
				CreatedBy string   `json:"created_by"`
				Users     []string `json:"users"`
				Timestamp int64    `json:"timestamp"`
			} `json:"ride"`
		}
		if err := json.Unmarshal(rep.Result, &res); err != nil {
			stale("unreadable result")
			return
		}
		switch {
		case w.Op == opCreate && (res.Ride.CreatedBy != w.Username || res.Ride.Timestamp != w.TS):
			stale(fmt.Sprintf("shows another ride (created_by %q timestamp %d, want %q %d)", res.Ride.CreatedBy, res.Ride.Timestamp, w.Username, w.TS))
		case w.Op == opJoin && !slices.Contains(res.Ride.Users, w.Username):
			stale(fmt.Sprintf("does not list %q among %v", w.Username, res.Ride.Users))
		}
	}
}

// readUntilAnswered resends a read that got no answer or a 503 until it
// gets one, for at most readDeadline. ok is false when it never did.
func (cl *client) readUntilAnswered(ctx context.Context, op string, params any, minSeq uint64) (reply, bool) {
	rec := cl.l.rec
	deadline := time.Now().Add(readDeadline)
	backoff := 10 * time.Millisecond
	for ctx.Err() == nil && time.Now().Before(deadline) {
		rep := cl.l.api.read(ctx, op, params, minSeq)
		rec.count(fmt.Sprintf("read %d", rep.Status))
		rec.mu.Lock()
		rec.reads++
		rec.mu.Unlock()
		switch {
		case rep.Status == 200 || rep.Status == 404:
			return rep, true
		case rep.Status == 0 || rep.Status == 502 || rep.Status == 503 || rep.Status == 500:
		default:
			rec.violation("bad-reply", "read %s %v answered %s", op, params, rep)
			return rep, false
		}
		rec.mu.Lock()
		rec.readRetries++
		rec.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 200*time.Millisecond)
	}
	return reply{}, false
}
