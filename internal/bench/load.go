package bench

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/loadgen"
)

// Op is one request of a load: it returns nil when the server answered
// with success. client is the goroutine's number (0..Clients-1) and seq
// counts that goroutine's calls from 0, so an op can make unique keys
// without sharing state.
type Op func(ctx context.Context, client int, seq int64) error

// Spec is the shape of one measured load.
type Spec struct {
	Clients  int           // exactly this many goroutines, each one request at a time
	Warmup   time.Duration // calls made but not counted, before Duration starts
	Duration time.Duration // the measured phase
	// OnMeasure, when set, is called with true when the measured phase
	// begins and with false when it ends (at its deadline, or earlier when
	// the load stops early), from a goroutine of its own.
	OnMeasure func(begin bool)
	// MinRequests (0: none) extends the measured phase until this many
	// calls succeeded: the smoke's loads are short, and one stall of the
	// machine must not leave one empty.
	MinRequests int64
}

// Result is what one load gave. Latencies cover the successful calls only;
// errors are counted and the first one kept.
type Result struct {
	Clients    int             `json:"clients"`
	Requests   int64           `json:"requests"` // successful calls in the measured phase
	Errors     int64           `json:"errors"`
	FirstError string          `json:"first_error,omitempty"`
	Elapsed    float64         `json:"elapsed_seconds"`
	Throughput float64         `json:"throughput_rps"` // Requests / Elapsed
	Latency    loadgen.Latency `json:"latency_ms"`
}

// MaxExtension bounds how long a load with Spec.MinRequests may run past
// its duration.
const MaxExtension = 30 * time.Second

// Run drives op from exactly spec.Clients goroutines: warm-up first (not
// counted), then spec.Duration measured. A goroutine starts no call after
// the deadline; a call still in flight then runs to its end (so that no
// leftover work spills into the next load) but is not counted. With
// spec.MinRequests, the measured phase goes on past the deadline (at most
// MaxExtension) until that many calls succeeded, and Elapsed says how
// long it was. ctx cancels the whole load; Run then returns ctx's error.
func Run(ctx context.Context, spec Spec, op Op) (Result, error) {
	if spec.Clients < 1 {
		return Result{}, fmt.Errorf("clients must be at least 1, got %d", spec.Clients)
	}
	if spec.Duration <= 0 {
		return Result{}, fmt.Errorf("duration must be positive, got %s", spec.Duration)
	}
	type clientRec struct {
		lat   []time.Duration
		errs  int64
		first string
		last  time.Time // end of its last counted call
	}
	recs := make([]clientRec, spec.Clients)
	start := time.Now().Add(spec.Warmup)
	end := start.Add(spec.Duration)
	hardEnd := end.Add(MaxExtension)
	var served atomic.Int64
	// short: past the deadline with fewer than MinRequests served.
	short := func(now time.Time) bool {
		return served.Load() < spec.MinRequests && now.Before(hardEnd)
	}
	if spec.OnMeasure != nil {
		stop := make(chan struct{})
		var twg sync.WaitGroup
		twg.Go(func() {
			select {
			case <-stop:
				return
			case <-time.After(time.Until(start)):
				spec.OnMeasure(true)
			}
			select {
			case <-stop:
			case <-time.After(time.Until(end)):
				if short(time.Now()) {
					<-stop // extended: the end is when the clients stop
				}
			}
			spec.OnMeasure(false)
		})
		defer func() { close(stop); twg.Wait() }()
	}
	var wg sync.WaitGroup
	for c := range spec.Clients {
		wg.Go(func() {
			r := &recs[c]
			var seq int64
			for {
				t0 := time.Now()
				if !t0.Before(end) && !short(t0) {
					return
				}
				err := op(ctx, c, seq)
				seq++
				t1 := time.Now()
				if ctx.Err() != nil || (t1.After(end) && !short(t1)) {
					return
				}
				if t0.Before(start) { // warm-up
					continue
				}
				r.last = t1
				if err != nil {
					if r.errs == 0 {
						r.first = err.Error()
					}
					r.errs++
					continue
				}
				served.Add(1)
				r.lat = append(r.lat, t1.Sub(t0))
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	windowEnd := end
	for _, r := range recs {
		if r.last.After(windowEnd) {
			windowEnd = r.last
		}
	}
	res := Result{Clients: spec.Clients, Elapsed: windowEnd.Sub(start).Seconds()}
	var all []time.Duration
	for _, r := range recs {
		all = append(all, r.lat...)
		res.Errors += r.errs
		if res.FirstError == "" {
			res.FirstError = r.first
		}
	}
	res.Requests = int64(len(all))
	res.Throughput = float64(res.Requests) / res.Elapsed
	res.Latency = loadgen.Summarize(all)
	return res, nil
}

// NewHTTPClient is the client every load uses: keep-alive connections, at
// least one idle connection kept per client goroutine, never a proxy.
func NewHTTPClient(clients int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        2 * clients,
			MaxIdleConnsPerHost: 2 * clients,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}
}
