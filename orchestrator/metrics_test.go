package orchestrator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rideshare-dbaas/rideshare/internal/mq"
	"github.com/rideshare-dbaas/rideshare/internal/testenv"
	"github.com/rideshare-dbaas/rideshare/orchestrator"
)

// TestMetrics_WorkersTargetsLagQueues runs a real stack (the worker
// binary, RabbitMQ, ZooKeeper): every worker publishes a metrics address,
// Prometheus' http_sd endpoint lists it, its /metrics moves with a write
// and a read, the orchestrator reports each slave's lag and the depth of a
// queue nobody consumes, and a crashed worker leaves the targets.
func TestMetrics_WorkersTargetsLagQueues(t *testing.T) {
	s := mustStartStack(t, func(o *orchestrator.Options) { o.QueuePoll = 200 * time.Millisecond })
	ws := s.waitShape(1, 90*time.Second)
	var master, slave orchestrator.WorkerView
	for _, w := range ws {
		if w.Metrics == "" {
			t.Fatalf("worker %s lists no metrics address: %+v", w.ID, ws)
		}
		if w.Role == "master" {
			master = w
		} else {
			slave = w
		}
	}

	if st, m := s.write("users.add", map[string]any{"username": "zoe", "password": "p"}); st != 200 {
		t.Fatalf("write: %d %v", st, m)
	}
	if st, m := s.read("users.exists", map[string]any{"username": "zoe"}); st != 200 {
		t.Fatalf("read: %d %v", st, m)
	}

	t.Run("http_sd", func(t *testing.T) {
		groups := mustTargets(t, s)
		if len(groups) != 3 || groups[0].Labels["kind"] != "orchestrator" || "http://"+groups[0].Targets[0] != s.url {
			t.Fatalf("want the orchestrator at %s and 2 workers: %+v", s.url, groups)
		}
		for _, w := range []orchestrator.WorkerView{master, slave} {
			if !hasTarget(groups, w.ID, w.Metrics) {
				t.Errorf("no target for %s at %s (%s): %+v", w.ID, w.Metrics, w.Role, groups)
			}
		}
	})

	t.Run("master", func(t *testing.T) {
		// The master answered the write before the finisher's counters
		// are all read by a scrape: wait for them rather than sleep.
		testenv.Eventually(t, 10*time.Second, "master metrics after a write", func() (bool, string) {
			body := mustScrape(t, master.Metrics)
			for _, c := range []struct {
				name   string
				labels []string
				min    float64
			}{
				{"rideshare_worker_group_commit_writes_count", nil, 1},
				{"rideshare_worker_group_commit_seconds_count", nil, 1},
				{"rideshare_worker_group_commit_confirm_seconds_count", nil, 1},
				{"rideshare_worker_writes_total", []string{`outcome="applied"`}, 1},
				{"rideshare_worker_applied_seq", nil, 1},
				{"rideshare_worker_epoch", nil, 1},
				{"rideshare_worker_role", []string{`role="master"`}, 1},
				{"rideshare_worker_plugin_calls_total", []string{`op="users.add"`, `outcome="ok"`}, 1},
				{"rideshare_worker_plugin_call_seconds_count", []string{`op="users.add"`}, 1},
				{"rideshare_worker_plugin_reloads_total", []string{`outcome="ok"`}, 1},
				{"rideshare_worker_plugin_loaded", []string{`plugin="rideshare"`}, 1},
			} {
				v, ok := metricValue(body, c.name, c.labels...)
				if !ok || v < c.min {
					return false, fmt.Sprintf("%s%v = %v (found %v), want >= %v", c.name, c.labels, v, ok, c.min)
				}
			}
			return true, ""
		})
	})

	t.Run("slave", func(t *testing.T) {
		body := mustScrape(t, slave.Metrics)
		for _, c := range []struct {
			name   string
			labels []string
			min    float64
		}{
			{"rideshare_worker_reads_total", []string{`outcome="ok"`}, 1},
			{"rideshare_worker_applied_seq", nil, 1},
			{"rideshare_worker_role", []string{`role="slave"`}, 1},
			{"rideshare_worker_plugin_calls_total", []string{`op="users.exists"`, `outcome="ok"`}, 1},
		} {
			v, ok := metricValue(body, c.name, c.labels...)
			if !ok || v < c.min {
				t.Errorf("%s%v = %v (found %v), want >= %v", c.name, c.labels, v, ok, c.min)
			}
		}
		if v, _ := metricValue(body, "rideshare_worker_role", `role="master"`); v != 0 {
			t.Errorf("a slave reports role master = %v", v)
		}
	})

	t.Run("lag", func(t *testing.T) {
		body := mustScrape(t, strings.TrimPrefix(s.url, "http://"))
		if _, ok := metricValue(body, "rideshare_dbaas_replication_lag", `worker="`+slave.ID+`"`); !ok {
			t.Errorf("no lag series for slave %s", slave.ID)
		}
		if _, ok := metricValue(body, "rideshare_dbaas_replication_lag", `worker="`+master.ID+`"`); ok {
			t.Errorf("a lag series for the master %s", master.ID)
		}
	})

	t.Run("queue depths", func(t *testing.T) {
		// The dead-letter queue has no consumer: a message put there stays.
		names := mq.NewNames(s.prefix())
		mustPublish(t, names.DeadQ, `{"probe":true}`)
		testenv.Eventually(t, 15*time.Second, "queue depth gauges", func() (bool, string) {
			body := mustScrape(t, strings.TrimPrefix(s.url, "http://"))
			dead, ok1 := metricValue(body, "rideshare_dbaas_queue_messages", `queue="`+names.DeadQ+`"`)
			consumers, ok2 := metricValue(body, "rideshare_dbaas_queue_consumers", `queue="`+names.WriteQ+`"`)
			return ok1 && ok2 && dead == 1 && consumers >= 1,
				fmt.Sprintf("%s messages %v (%v), %s consumers %v (%v)", names.DeadQ, dead, ok1, names.WriteQ, consumers, ok2)
		})
	})

	t.Run("crashed worker leaves", func(t *testing.T) {
		st, _, raw := s.call("POST", "/api/v1/crash/slave", nil)
		if st != 200 {
			t.Fatalf("crash/slave: %d %s", st, raw)
		}
		testenv.Eventually(t, 90*time.Second, "the crashed slave gone from the targets, a replacement listed", func() (bool, string) {
			groups := mustTargets(t, s)
			if hasTarget(groups, slave.ID, slave.Metrics) {
				return false, fmt.Sprintf("%s still listed: %+v", slave.ID, groups)
			}
			var workers int
			for _, g := range groups {
				if g.Labels["kind"] == "worker" {
					workers++
				}
			}
			return workers == 2, fmt.Sprintf("%+v", groups)
		})
		body := mustScrape(t, strings.TrimPrefix(s.url, "http://"))
		if _, ok := metricValue(body, "rideshare_dbaas_replication_lag", `worker="`+slave.ID+`"`); ok {
			t.Errorf("the crashed slave %s still has a lag series", slave.ID)
		}
	})
}

func mustTargets(t *testing.T, s *stack) []orchestrator.PromTargets {
	t.Helper()
	st, _, raw := s.call("GET", "/api/v1/prometheus/targets", nil)
	if st != 200 {
		t.Fatalf("targets: %d %s", st, raw)
	}
	var groups []orchestrator.PromTargets
	if err := json.Unmarshal(raw, &groups); err != nil {
		t.Fatalf("targets: %v: %s", err, raw)
	}
	return groups
}

func hasTarget(groups []orchestrator.PromTargets, id, addr string) bool {
	for _, g := range groups {
		if len(g.Targets) == 1 && g.Targets[0] == addr && g.Labels["worker"] == id && g.Labels["kind"] == "worker" && len(g.Labels) == 2 {
			return true
		}
	}
	return false
}

// mustScrape GETs http://addr/metrics.
func mustScrape(t *testing.T, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("scrape %s: %d %s", addr, resp.StatusCode, b)
	}
	return string(b)
}

// metricValue finds, in a text exposition, the sum of the series of name
// carrying every one of labels (`key="value"`).
func metricValue(body, name string, labels ...string) (float64, bool) {
	sum, found := 0.0, false
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		series, val, ok := strings.Cut(line, "} ")
		if !ok {
			series, val, _ = strings.Cut(line, " ")
		}
		match := true
		for _, l := range labels {
			if !strings.Contains(series, l) {
				match = false
			}
		}
		if !match {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			sum, found = sum+f, true
		}
	}
	return sum, found
}

// mustPublish puts one message on queue, confirmed by the broker.
func mustPublish(t *testing.T, queue, body string) {
	t.Helper()
	conn, err := amqp.Dial(testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, amqp.Publishing{Body: []byte(body), DeliveryMode: amqp.Persistent})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := dc.WaitContext(ctx); err != nil || !ok {
		t.Fatalf("publish to %s: acked %v, %v", queue, ok, err)
	}
}
