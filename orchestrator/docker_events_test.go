package orchestrator

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// fakeDaemon answers the few Engine API calls the docker runtime makes at
// start and while it follows events. Its event stream breaks once, which
// the shared daemon of the real tests cannot be made to do.
type fakeDaemon struct {
	mu       sync.Mutex
	events   int      // /events requests so far
	since    []string // their since parameters
	lists    int      // /containers/json requests so far
	removed  []string // containers deleted
	dieEvent string   // sent on the second /events stream
}

func (f *fakeDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if i := strings.Index(p, "/v1."); i == 0 {
		p = p[strings.Index(p[1:], "/")+1:]
	}
	w.Header().Set("Api-Version", "1.41")
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case p == "/_ping":
		w.WriteHeader(200)
	case strings.HasPrefix(p, "/images/") && strings.HasSuffix(p, "/json"):
		_, _ = w.Write([]byte(`{"Id":"sha256:0123"}`))
	case p == "/containers/json":
		f.lists++
		if f.lists == 1 { // the runtime's first look: nothing to adopt
			_, _ = w.Write([]byte(`[]`))
			return
		}
		// Later (after the stream broke): a worker that died meanwhile.
		_, _ = w.Write([]byte(`[{"Id":"c2","State":"exited","Labels":{"rideshare.stack":"fake","rideshare.role":"worker","rideshare.worker":"w-2"}}]`))
	case p == "/events":
		f.events++
		f.since = append(f.since, r.URL.Query().Get("since"))
		if f.events == 1 {
			return // the stream breaks at once
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(f.dieEvent + "\n"))
		w.(http.Flusher).Flush()
		f.mu.Unlock()
		<-r.Context().Done()
		f.mu.Lock()
	case r.Method == http.MethodDelete && strings.HasPrefix(p, "/containers/"):
		f.removed = append(f.removed, strings.TrimPrefix(p, "/containers/"))
		w.WriteHeader(204)
	default:
		http.Error(w, `{"message":"not faked: `+r.Method+" "+p+`"}`, 404)
	}
}

// When the event stream breaks, the runtime subscribes again from the last
// event's time, and reaps the workers that died while it was not
// listening: both deaths are reported and their containers removed.
func TestDockerEventsResubscribe(t *testing.T) {
	die, _ := json.Marshal(map[string]any{"Type": "container", "Action": "die", "timeNano": time.Now().UnixNano(),
		"Actor": map[string]any{"ID": "c1", "Attributes": map[string]string{
			"rideshare.stack": "fake", "rideshare.role": "worker", "rideshare.worker": "w-1", "exitCode": "137"}}})
	f := &fakeDaemon{dieEvent: string(die)}
	srv := httptest.NewServer(f)
	defer srv.Close()
	cli, err := client.New(client.WithHost("tcp://" + strings.TrimPrefix(srv.URL, "http://")))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	d, err := NewDocker(context.Background(), DockerOptions{Stack: "fake", DataDir: t.TempDir(), Client: cli,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.cancel() // not Close: the fake has no stop or list of running workers
	var got []string
	timeout := time.After(30 * time.Second)
	for len(got) < 2 {
		select {
		case id := <-d.Exits():
			got = append(got, id)
		case <-timeout:
			t.Fatalf("exits reported: %v, want w-1 and w-2", got)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"w-1", "w-2"}) {
		t.Fatalf("exits %v, want [w-1 w-2]", got)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.events < 2 || f.since[1] == "" || f.since[1] < f.since[0] {
		t.Fatalf("subscriptions %d, since %v", f.events, f.since)
	}
	slices.Sort(f.removed)
	if !slices.Equal(f.removed, []string{"c1", "c2"}) {
		t.Fatalf("removed %v, want [c1 c2]", f.removed)
	}
	if exitText("137") != "signal: killed" || exitText("3") != "exit status 3" {
		t.Fatalf("exitText: %q %q", exitText("137"), exitText("3"))
	}
}
