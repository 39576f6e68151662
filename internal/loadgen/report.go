package loadgen

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"time"
)

// Report is the outcome of a run: per route and overall.
type Report struct {
	Started        time.Time      `json:"started"`
	ElapsedSeconds float64        `json:"elapsed_seconds"` // the measured phase, seeding excluded
	Clients        int            `json:"clients"`
	Duration       string         `json:"duration_limit"`
	RequestLimit   int64          `json:"request_limit"` // 0: none
	UsersURL       string         `json:"users_url"`
	RidesURL       string         `json:"rides_url"`
	Mix            map[string]int `json:"mix"`
	SeededUsers    int            `json:"seeded_users"`
	SeededRides    int            `json:"seeded_rides"`
	Routes         []RouteStats   `json:"routes"` // report order, routes with weight 0 left out
	Total          RouteStats     `json:"total"`
}

// RouteStats sums up the calls of one route (or of all, in Report.Total).
// Latencies include every answered call, errors too; a call that got no
// answer (transport error) counts as an error with status 0 and its time
// until the failure.
type RouteStats struct {
	Route            string           `json:"route"`
	Endpoint         string           `json:"endpoint,omitempty"`
	Requests         int64            `json:"requests"`
	Throughput       float64          `json:"throughput_rps"`
	Latency          Latency          `json:"latency_ms"`
	Statuses         map[string]int64 `json:"statuses"` // "200": n, ...; "0" = no answer
	Errors           int64            `json:"errors"`   // non-2xx answers, calls without an answer, 2xx with a wrong body
	ExpectedErrors   int64            `json:"expected_errors"`
	UnexpectedErrors int64            `json:"unexpected_errors"`
	ErrorDetails     []ErrorCount     `json:"error_details,omitempty"`
}

// Latency in milliseconds. Percentiles are nearest-rank over every sample.
type Latency struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// ErrorCount groups the errors of a route by status and class.
type ErrorCount struct {
	Route    string `json:"route,omitempty"` // in Report.Total only
	Status   int    `json:"status"`          // 0: no answer (transport error, timeout)
	Expected bool   `json:"expected"`        // e.g. 400 for joining a ride twice
	Count    int64  `json:"count"`
	Example  string `json:"example"` // the first error message seen
}

// Percentile is the nearest-rank p-th percentile (0 < p <= 100) of sorted
// samples: the smallest sample with at least p% of the samples at or below
// it. It is 0 for no samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// The epsilon keeps float error (99.9/100*1000 = 999.0000000000001)
	// from moving the rank up by one.
	k := int(math.Ceil(p*float64(n)/100 - 1e-9))
	k = min(max(k, 1), n)
	return sorted[k-1]
}

func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// Summarize computes the latency summary; it sorts samples in place.
func Summarize(samples []time.Duration) Latency {
	if len(samples) == 0 {
		return Latency{}
	}
	slices.Sort(samples)
	var sum time.Duration
	for _, s := range samples {
		sum += s
	}
	return Latency{
		Mean: ms(sum / time.Duration(len(samples))),
		P50:  ms(Percentile(samples, 50)),
		P90:  ms(Percentile(samples, 90)),
		P99:  ms(Percentile(samples, 99)),
		Max:  ms(samples[len(samples)-1]),
	}
}

// errKey is one error class of one route.
type errKey struct {
	status   int
	expected bool
}

type errAgg struct {
	count   int64
	example string
}

// recorder collects one client's samples (no locks: one goroutine each);
// the run merges them at the end.
type recorder struct {
	lat      [numRoutes][]time.Duration
	statuses [numRoutes]map[int]int64
	errs     [numRoutes]map[errKey]*errAgg
}

func newRecorder() *recorder {
	r := &recorder{}
	for i := range r.statuses {
		r.statuses[i] = map[int]int64{}
		r.errs[i] = map[errKey]*errAgg{}
	}
	return r
}

// outcome is what one call gave.
type outcome struct {
	status   int    // 0: no answer
	msg      string // what was wrong: a non-2xx's "error", the transport error, or a 2xx's undecodable body
	expected bool   // an error the mix is known to cause
}

func isSuccess(status int) bool { return status >= 200 && status < 300 }

// failed: no answer, a non-2xx, or a 2xx whose body was wrong.
func (o outcome) failed() bool { return !isSuccess(o.status) || o.msg != "" }

func (r *recorder) add(route Route, lat time.Duration, o outcome) {
	r.lat[route] = append(r.lat[route], lat)
	r.statuses[route][o.status]++
	if !o.failed() {
		return
	}
	k := errKey{o.status, o.expected}
	a := r.errs[route][k]
	if a == nil {
		a = &errAgg{example: o.msg}
		r.errs[route][k] = a
	}
	a.count++
}

// merge folds the clients' recorders into one.
func merge(rs []*recorder) *recorder {
	out := newRecorder()
	for _, r := range rs {
		for i := range numRoutes {
			out.lat[i] = append(out.lat[i], r.lat[i]...)
			for s, n := range r.statuses[i] {
				out.statuses[i][s] += n
			}
			for k, a := range r.errs[i] {
				b := out.errs[i][k]
				if b == nil {
					b = &errAgg{example: a.example}
					out.errs[i][k] = b
				}
				b.count += a.count
			}
		}
	}
	return out
}

// stats builds the per-route and total statistics over elapsed.
func (r *recorder) stats(mix Mix, elapsed time.Duration) (routes []RouteStats, total RouteStats) {
	secs := elapsed.Seconds()
	rate := func(n int64) float64 {
		if secs <= 0 {
			return 0
		}
		return math.Round(float64(n)/secs*10) / 10
	}
	total = RouteStats{Route: "total", Statuses: map[string]int64{}}
	var all []time.Duration
	for _, rt := range Routes() {
		if mix[rt] == 0 && len(r.lat[rt]) == 0 {
			continue
		}
		s := RouteStats{Route: rt.String(), Endpoint: rt.Endpoint(), Statuses: map[string]int64{}}
		s.Requests = int64(len(r.lat[rt]))
		s.Throughput = rate(s.Requests)
		all = append(all, r.lat[rt]...)
		s.Latency = Summarize(r.lat[rt])
		for st, n := range r.statuses[rt] {
			s.Statuses[strconv.Itoa(st)] += n
			total.Statuses[strconv.Itoa(st)] += n
		}
		for k, a := range r.errs[rt] {
			s.ErrorDetails = append(s.ErrorDetails, ErrorCount{Status: k.status, Expected: k.expected, Count: a.count, Example: a.example})
			s.Errors += a.count
			if k.expected {
				s.ExpectedErrors += a.count
			} else {
				s.UnexpectedErrors += a.count
			}
		}
		sortErrors(s.ErrorDetails)
		for _, e := range s.ErrorDetails {
			e.Route = s.Route
			total.ErrorDetails = append(total.ErrorDetails, e)
		}
		total.Requests += s.Requests
		total.Errors += s.Errors
		total.ExpectedErrors += s.ExpectedErrors
		total.UnexpectedErrors += s.UnexpectedErrors
		routes = append(routes, s)
	}
	total.Throughput = rate(total.Requests)
	total.Latency = Summarize(all)
	return routes, total
}

func sortErrors(es []ErrorCount) {
	slices.SortFunc(es, func(a, b ErrorCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Status, b.Status),
			cmp.Compare(b2i(a.Expected), b2i(b.Expected)))
	})
}

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteTable writes the report as a text table, then the error classes.
func (rep *Report) WriteTable(w io.Writer) error {
	limit := rep.Duration
	if rep.RequestLimit > 0 {
		limit += fmt.Sprintf(" or %d requests", rep.RequestLimit)
	}
	fmt.Fprintf(w, "loadgen: %d clients, %.2fs measured (limit %s), users %s, rides %s\n",
		rep.Clients, rep.ElapsedSeconds, limit, rep.UsersURL, rep.RidesURL)
	fmt.Fprintf(w, "mix: %s; seeded %d users, %d rides\n\n", mixString(rep.Mix), rep.SeededUsers, rep.SeededRides)
	const head = "%-14s %9s %8s %8s %8s %8s %8s %7s %9s %11s\n"
	fmt.Fprintf(w, head, "route", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors", "expected", "unexpected")
	row := func(s RouteStats) {
		fmt.Fprintf(w, "%-14s %9d %8.1f %8.2f %8.2f %8.2f %8.2f %7d %9d %11d\n", s.Route, s.Requests, s.Throughput,
			s.Latency.P50, s.Latency.P90, s.Latency.P99, s.Latency.Max, s.Errors, s.ExpectedErrors, s.UnexpectedErrors)
	}
	for _, s := range rep.Routes {
		row(s)
	}
	row(rep.Total)
	if len(rep.Total.ErrorDetails) > 0 {
		fmt.Fprintln(w, "\nerrors:")
		for _, e := range rep.Total.ErrorDetails {
			class := "unexpected"
			if e.Expected {
				class = "expected"
			}
			status := strconv.Itoa(e.Status)
			if e.Status == 0 {
				status = "no answer"
			}
			fmt.Fprintf(w, "  %-14s %-9s %-10s %6d  e.g. %s\n", e.Route, status, class, e.Count, e.Example)
		}
	}
	_, err := fmt.Fprintln(w)
	return err
}

func mixString(m map[string]int) string {
	var parts []string
	for _, r := range Routes() {
		if w, ok := m[r.String()]; ok {
			parts = append(parts, fmt.Sprintf("%s=%d", r, w))
		}
	}
	return fmt.Sprint(parts)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
