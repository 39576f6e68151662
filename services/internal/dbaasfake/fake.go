// Package dbaasfake is a TEST DOUBLE of the DBaaS orchestrator: an
// httptest server that keeps the rideshare operations of docs/dbaas-api.md
// in memory, plus the stats plugin's reads (which SetStatsInstalled(false)
// turns into "unknown read operation", as on workers without the plugin). Only the services' tests use it; it has no replication,
// durability or worker behind it.
package dbaasfake

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Server is the fake orchestrator.
type Server struct {
	URL string

	// Intercept, when set, is asked first about every request (path is the
	// endpoint, op the operation or "" for db/clear). Returning handled
	// answers status with body instead of running the operation.
	Intercept func(path, op string) (status int, body string, handled bool)

	mu       sync.Mutex
	seq      uint64
	users    map[string]string // name -> password
	rides    map[int64]*ride
	nextRide int64
	replies  map[string]reply // idempotency id -> first reply
	reads    map[string]int   // op -> reads served
	writes   map[string]int   // op -> writes applied
	noStats  bool             // the stats plugin is "not installed"
}

type ride struct {
	ID          int64    `json:"rideId"`
	CreatedBy   string   `json:"created_by"`
	Users       []string `json:"users"`
	Timestamp   int64    `json:"timestamp"`
	Source      int      `json:"source"`
	Destination int      `json:"destination"`
}

type reply struct {
	status int
	body   []byte
}

// New starts a fake on 127.0.0.1 and stops it when the test ends.
func New(t testing.TB) *Server {
	s := &Server{
		users: map[string]string{}, rides: map[int64]*ride{},
		replies: map[string]reply{}, reads: map[string]int{}, writes: map[string]int{},
	}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Reads is how many reads of op were served ("" for all ops).
func (s *Server) Reads(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if op != "" {
		return s.reads[op]
	}
	n := 0
	for _, v := range s.reads {
		n += v
	}
	return n
}

// Writes is how many writes of op were applied.
func (s *Server) Writes(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes[op]
}

// SetStatsInstalled says whether the stats plugin's read operations
// (stats.rides_per_area, stats.top_users) exist; they do by default.
func (s *Server) SetStatsInstalled(installed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noStats = !installed
}

// AddUser stores a user directly, bypassing HTTP.
func (s *Server) AddUser(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[name] = "0000000000000000000000000000000000000000"
}

// Ride returns a stored ride's creator, joiners and timestamp.
func (s *Server) Ride(id int64) (createdBy string, users []string, ts int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rides[id]
	if !ok {
		return "", nil, 0, false
	}
	return r.CreatedBy, slices.Clone(r.Users), r.Timestamp, true
}

type request struct {
	Op     string          `json:"op"`
	Params json.RawMessage `json:"params"`
	ID     string          `json:"id"`
	MinSeq *uint64         `json:"min_seq"`
}

var writeOps = map[string]bool{
	"users.add": true, "users.delete": true, "rides.create": true,
	"rides.join": true, "rides.delete": true, "db.clear": true,
}

var readOps = map[string]bool{
	"users.list": true, "users.exists": true, "rides.upcoming": true,
	"rides.get": true, "rides.count": true,
	"stats.rides_per_area": true, "stats.top_users": true,
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req request
	if r.URL.Path == "/api/v1/db/clear" {
		req.Op = "db.clear"
	} else if err := json.Unmarshal(body, &req); err != nil {
		write(w, 400, map[string]any{"error": "malformed JSON: " + err.Error()})
		return
	}
	if s.Intercept != nil {
		op := req.Op
		if r.URL.Path == "/api/v1/db/clear" {
			op = ""
		}
		if status, b, ok := s.Intercept(r.URL.Path, op); ok {
			w.WriteHeader(status)
			_, _ = io.WriteString(w, b)
			return
		}
	}
	switch r.URL.Path {
	case "/api/v1/db/clear":
		s.mu.Lock()
		s.seq++
		s.users, s.rides = map[string]string{}, map[int64]*ride{}
		seq := s.seq
		s.mu.Unlock()
		w.Header().Set("X-DBaaS-Seq", strconv.FormatUint(seq, 10))
		write(w, 200, map[string]any{})
	case "/api/v1/db/write":
		if !writeOps[req.Op] {
			write(w, 400, map[string]any{"error": "unknown write operation " + req.Op})
			return
		}
		s.mu.Lock()
		rp, seen := s.replies[req.ID]
		if !seen || req.ID == "" {
			s.seq++
			rp = s.applyWrite(req)
			if req.ID != "" {
				s.replies[req.ID] = rp
			}
		}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rp.status)
		_, _ = w.Write(rp.body)
	case "/api/v1/db/read":
		s.mu.Lock()
		if !readOps[req.Op] || (s.noStats && strings.HasPrefix(req.Op, "stats.")) {
			s.mu.Unlock()
			write(w, 400, map[string]any{"error": fmt.Sprintf("unknown read operation %q", req.Op)})
			return
		}
		s.reads[req.Op]++
		rp := s.applyRead(req)
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rp.status)
		_, _ = w.Write(rp.body)
	default:
		write(w, 404, map[string]any{"error": "no route"})
	}
}

func write(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (s *Server) ok(result any) reply {
	b, _ := json.Marshal(map[string]any{"seq": s.seq, "result": result})
	return reply{200, b}
}

func (s *Server) refuse(code, msg string) reply {
	status := map[string]int{"invalid": 400, "not_found": 404, "conflict": 409}[code]
	b, _ := json.Marshal(map[string]any{"error": msg, "code": code, "seq": s.seq})
	return reply{status, b}
}

type params struct {
	Username    *string `json:"username"`
	Password    *string `json:"password"`
	CreatedBy   *string `json:"created_by"`
	Timestamp   *int64  `json:"timestamp"`
	Source      *int    `json:"source"`
	Destination *int    `json:"destination"`
	RideID      *int64  `json:"rideId"`
	After       *int64  `json:"after"`
	Limit       *int    `json:"limit"`
}

func (s *Server) applyWrite(req request) reply {
	var p params
	if len(req.Params) > 0 {
		if err := json.Unmarshal(req.Params, &p); err != nil {
			return s.refuse("invalid", "params: "+err.Error())
		}
	}
	s.writes[req.Op]++
	switch req.Op {
	case "users.add":
		if p.Username == nil || *p.Username == "" || p.Password == nil || *p.Password == "" {
			return s.refuse("invalid", "empty username or password")
		}
		if _, ok := s.users[*p.Username]; ok {
			return s.refuse("conflict", "username taken")
		}
		s.users[*p.Username] = *p.Password
	case "users.delete":
		if p.Username == nil {
			return s.refuse("invalid", "username missing")
		}
		if _, ok := s.users[*p.Username]; !ok {
			return s.refuse("not_found", "no such user")
		}
		delete(s.users, *p.Username)
		for id, r := range s.rides {
			if r.CreatedBy == *p.Username {
				delete(s.rides, id)
				continue
			}
			r.Users = slices.DeleteFunc(r.Users, func(u string) bool { return u == *p.Username })
		}
	case "rides.create":
		if p.CreatedBy == nil || p.Timestamp == nil || p.Source == nil || p.Destination == nil {
			return s.refuse("invalid", "missing parameter")
		}
		if *p.Source < 1 || *p.Destination < 1 || *p.Source == *p.Destination {
			return s.refuse("invalid", "bad areas")
		}
		if _, ok := s.users[*p.CreatedBy]; !ok {
			return s.refuse("not_found", "no such user")
		}
		s.nextRide++ // never reset, not even by db.clear
		s.rides[s.nextRide] = &ride{ID: s.nextRide, CreatedBy: *p.CreatedBy, Users: []string{},
			Timestamp: *p.Timestamp, Source: *p.Source, Destination: *p.Destination}
		return s.ok(map[string]any{"rideId": s.nextRide})
	case "rides.join":
		if p.RideID == nil || p.Username == nil {
			return s.refuse("invalid", "missing parameter")
		}
		r, ok := s.rides[*p.RideID]
		if !ok {
			return s.refuse("not_found", "ride not found")
		}
		if _, ok := s.users[*p.Username]; !ok {
			return s.refuse("invalid", "no such user")
		}
		if r.CreatedBy == *p.Username {
			return s.refuse("conflict", "the creator cannot join their own ride")
		}
		if slices.Contains(r.Users, *p.Username) {
			return s.refuse("conflict", "already joined")
		}
		r.Users = append(r.Users, *p.Username)
	case "rides.delete":
		if p.RideID == nil {
			return s.refuse("invalid", "missing rideId")
		}
		if _, ok := s.rides[*p.RideID]; !ok {
			return s.refuse("not_found", "ride not found")
		}
		delete(s.rides, *p.RideID)
	case "db.clear":
		s.users, s.rides = map[string]string{}, map[int64]*ride{}
	}
	return s.ok(map[string]any{})
}

func (s *Server) applyRead(req request) reply {
	var p params
	if len(req.Params) > 0 {
		if err := json.Unmarshal(req.Params, &p); err != nil {
			return s.refuse("invalid", "params: "+err.Error())
		}
	}
	switch req.Op {
	case "users.list":
		names := make([]string, 0, len(s.users))
		for n := range s.users {
			names = append(names, n)
		}
		slices.Sort(names)
		return s.ok(map[string]any{"users": names})
	case "users.exists":
		_, ok := s.users[deref(p.Username)]
		return s.ok(map[string]any{"exists": ok})
	case "rides.upcoming":
		if p.Source == nil || p.Destination == nil || p.After == nil {
			return s.refuse("invalid", "missing parameter")
		}
		type item struct {
			ID        int64  `json:"rideId"`
			Username  string `json:"username"`
			Timestamp int64  `json:"timestamp"`
		}
		list := []item{}
		for _, r := range s.rides {
			if r.Source == *p.Source && r.Destination == *p.Destination && r.Timestamp > *p.After {
				list = append(list, item{r.ID, r.CreatedBy, r.Timestamp})
			}
		}
		slices.SortFunc(list, func(a, b item) int {
			if c := cmp.Compare(a.Timestamp, b.Timestamp); c != 0 {
				return c
			}
			return cmp.Compare(a.ID, b.ID)
		})
		return s.ok(map[string]any{"rides": list})
	case "rides.get":
		if p.RideID == nil {
			return s.refuse("invalid", "missing rideId")
		}
		r, ok := s.rides[*p.RideID]
		if !ok {
			return s.refuse("not_found", "ride not found")
		}
		return s.ok(map[string]any{"ride": r})
	case "rides.count":
		return s.ok(map[string]any{"count": len(s.rides)})
	case "stats.rides_per_area":
		return s.ridesPerArea(p)
	case "stats.top_users":
		return s.topUsers(p)
	}
	return s.refuse("invalid", fmt.Sprintf("unknown op %s", req.Op))
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// ridesPerArea is the stats plugin's stats.rides_per_area: areas with rides,
// busiest first, then by number.
func (s *Server) ridesPerArea(p params) reply {
	if p.Limit != nil && *p.Limit < 1 {
		return s.refuse("invalid", `parameter "limit" must be a positive integer`)
	}
	type area struct {
		Area      int `json:"area"`
		RidesFrom int `json:"rides_from"`
		RidesTo   int `json:"rides_to"`
	}
	by := map[int]*area{}
	get := func(n int) *area {
		if by[n] == nil {
			by[n] = &area{Area: n}
		}
		return by[n]
	}
	for _, r := range s.rides {
		get(r.Source).RidesFrom++
		get(r.Destination).RidesTo++
	}
	list := make([]area, 0, len(by))
	for _, a := range by {
		list = append(list, *a)
	}
	slices.SortFunc(list, func(a, b area) int {
		return cmp.Or(cmp.Compare(b.RidesFrom+b.RidesTo, a.RidesFrom+a.RidesTo), cmp.Compare(a.Area, b.Area))
	})
	if p.Limit != nil && *p.Limit < len(list) {
		list = list[:*p.Limit]
	}
	return s.ok(map[string]any{"areas": list})
}

// topUsers is the stats plugin's stats.top_users: users by rides created
// plus joined, then created, then name; users without rides left out.
func (s *Server) topUsers(p params) reply {
	limit := 10
	if p.Limit != nil {
		limit = *p.Limit
	}
	if limit < 1 || limit > 100 {
		return s.refuse("invalid", fmt.Sprintf(`parameter "limit" must be an integer from 1 to 100, not %d`, limit))
	}
	type user struct {
		Username string `json:"username"`
		Created  int    `json:"created"`
		Joined   int    `json:"joined"`
	}
	by := map[string]*user{}
	get := func(n string) *user {
		if by[n] == nil {
			by[n] = &user{Username: n}
		}
		return by[n]
	}
	for _, r := range s.rides {
		get(r.CreatedBy).Created++
		for _, u := range r.Users {
			get(u).Joined++
		}
	}
	list := make([]user, 0, len(by))
	for _, u := range by {
		list = append(list, *u)
	}
	slices.SortFunc(list, func(a, b user) int {
		return cmp.Or(cmp.Compare(b.Created+b.Joined, a.Created+a.Joined), cmp.Compare(b.Created, a.Created),
			cmp.Compare(a.Username, b.Username))
	})
	if limit < len(list) {
		list = list[:limit]
	}
	return s.ok(map[string]any{"users": list})
}
