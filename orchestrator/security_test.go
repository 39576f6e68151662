package orchestrator_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rideshare-dbaas/rideshare/internal/adminauth"
	"github.com/rideshare-dbaas/rideshare/internal/httpx"
	"github.com/rideshare-dbaas/rideshare/internal/mq"
	"github.com/rideshare-dbaas/rideshare/internal/opscli"
	"github.com/rideshare-dbaas/rideshare/internal/testenv"
	"github.com/rideshare-dbaas/rideshare/internal/wire"
	"github.com/rideshare-dbaas/rideshare/orchestrator"
	"github.com/rideshare-dbaas/rideshare/services/users"
)

const testToken = "test-admin-token-0123456789abcdef"

func TestNew_RefusesOpenAdminOutsideDev(t *testing.T) {
	rt := &orchestrator.Process{}
	base := orchestrator.Options{AMQPURL: "amqp://x:y@127.0.0.1:1/", ZKServers: []string{"127.0.0.1:1"}, Runtime: rt}
	tests := []struct {
		name    string
		tweak   func(*orchestrator.Options)
		wantErr error
	}{
		{"no token, no dev", func(o *orchestrator.Options) { o.Listen = "127.0.0.1:0" }, adminauth.ErrNoToken},
		{"dev beyond loopback", func(o *orchestrator.Options) { o.Listen = "0.0.0.0:0"; o.Dev = true }, adminauth.ErrExposedWithoutToken},
		{"dev on every interface", func(o *orchestrator.Options) { o.Listen = ":8000"; o.Dev = true }, adminauth.ErrExposedWithoutToken},
		{"token beyond loopback", func(o *orchestrator.Options) { o.Listen = "0.0.0.0:0"; o.AdminToken = testToken }, nil},
		{"dev on loopback", func(o *orchestrator.Options) { o.Listen = "127.0.0.1:0"; o.Dev = true }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.tweak(&o)
			_, err := orchestrator.New(o)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("New: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestAdminToken runs a stack outside dev mode: the admin endpoints answer
// 401 without the token (or with a wrong one) and work with it; the rest
// of the API needs none; a users service given the token clears the
// database, one without it cannot; the CLI maps 401 to exit 4.
func TestAdminToken(t *testing.T) {
	s := mustStartStack(t, func(o *orchestrator.Options) { o.Dev, o.AdminToken = false, testToken })
	s.waitShape(1, 90*time.Second)
	call := func(method, path, token, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, s.url+path, strings.NewReader(body))
		adminauth.SetHeader(req, token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error
	}
	admin := []struct{ method, path, body string }{
		{"POST", "/api/v1/crash/master", ""},
		{"POST", "/api/v1/crash/slave", ""},
		{"POST", "/api/v1/db/clear", ""},
		{"PUT", "/api/v1/scale", `{"slaves": 2}`},
		{"DELETE", "/api/v1/scale", ""},
	}
	for _, a := range admin {
		for _, tok := range []string{"", "wrong-token-but-long-enough-0000"} {
			if st, msg := call(a.method, a.path, tok, a.body); st != 401 || msg == "" {
				t.Errorf("%s %s with token %q: %d %q, want 401 with a JSON error", a.method, a.path, tok, st, msg)
			}
		}
	}
	for _, p := range []string{"/api/v1/workers", "/api/v1/worker/list", "/api/v1/cluster", "/api/v1/scale", "/readyz", "/metrics"} {
		if st, _ := call("GET", p, "", ""); st != 200 {
			t.Errorf("GET %s without a token: %d, want 200", p, st)
		}
	}
	if len(s.workers()) != 2 {
		t.Fatalf("a refused crash killed something: %+v", s.workers())
	}
	if st, msg := call("POST", "/api/v1/db/clear", testToken, ""); st != 200 {
		t.Fatalf("db/clear with the token: %d %q", st, msg)
	}

	// The services send the token with their own db/clear.
	clear := func(token string) int {
		svc, err := users.New(users.Options{Config: httpx.Config{DBaaSURL: s.url, AdminToken: token, Logger: testLogger(t)}})
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		svc.Handler().ServeHTTP(w, httptest.NewRequest("POST", "/api/v1/db/clear", nil))
		return w.Code
	}
	if st := clear(testToken); st != 200 {
		t.Errorf("users db/clear with the token: %d", st)
	}
	if st := clear(""); st != 503 {
		t.Errorf("users db/clear without the token: %d, want 503", st)
	}

	// The CLI: exit 4 without the token, the crash with it.
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(adminauth.EnvToken, "")
	t.Setenv(adminauth.EnvTokenFile, "")
	if code, out, errOut := rideshareCLI(t, "--url", s.url, "crash", "slave"); code != opscli.ExitUnauthorized {
		t.Errorf("crash slave without a token: exit %d %q %q", code, out, errOut)
	}
	if code, out, errOut := rideshareCLI(t, "--url", s.url, "--token-file", tokFile, "crash", "slave"); code != 0 {
		t.Errorf("crash slave with the token: exit %d %q %q", code, out, errOut)
	}
	if code, out, _ := rideshareCLI(t, "--url", s.url, "status"); code != 0 || !strings.Contains(out, "admin needs a token") {
		t.Errorf("status: %d %q", code, out)
	}
}

// TestBroker_DefaultCredentialsReachNothing: the stack's queues live in a
// vhost of the test run's own user. RabbitMQ's default guest account can
// neither publish to the stack's sync stream nor get a snapshot from its
// master over repairQ, while the stack's own user can (the same calls, so
// the test could fail).
func TestBroker_DefaultCredentialsReachNothing(t *testing.T) {
	s := mustStartStack(t)
	s.waitShape(1, 90*time.Second)
	names := mq.NewNames(s.prefix())
	stackURL := testenv.AMQPURL()
	u, err := amqp.ParseURI(stackURL)
	if err != nil || u.Username == "guest" || u.Vhost == "/" {
		t.Fatalf("the test run must use a vhost and user of its own, not %q (%v)", u.Vhost, err)
	}

	snapshot := func(url string) ([]byte, error) {
		caller := mq.NewCaller(testLogger(t))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		sup := mq.NewSupervisor(url, "security-test", testLogger(t), func(ctx context.Context, conn *amqp.Connection) error {
			return caller.Session(ctx, conn, nil)
		})
		done := make(chan struct{})
		go func() { _ = sup.Run(ctx); close(done) }()
		defer func() { cancel(); <-done }()
		body, _ := json.Marshal(wire.RepairRequest{Snapshot: true, Worker: "security-test"})
		d, err := caller.Call(ctx, mq.Message{Key: names.RepairQ, Type: wire.TypeRepair, Body: body})
		if err != nil {
			return nil, err
		}
		var rep wire.RepairReply
		if err := json.Unmarshal(d.Body, &rep); err != nil {
			return nil, err
		}
		return rep.Snapshot, nil
	}
	// Positive control: the stack's user gets a snapshot.
	if snap, err := snapshot(stackURL); err != nil || len(snap) == 0 {
		t.Fatalf("the stack's own user could not get a snapshot: %d bytes, %v", len(snap), err)
	}
	if err := withChannel(stackURL, func(ch *amqp.Channel) error {
		return ch.ExchangeDeclarePassive(names.SyncX, "fanout", true, false, false, false, nil)
	}); err != nil {
		t.Fatalf("the stack's user cannot see its sync exchange: %v", err)
	}

	guestInVhost := "amqp://guest:guest@127.0.0.1:5672/" + u.Vhost
	// Guest on the stack's vhost: not even a connection.
	if conn, err := amqp.Dial(guestInVhost); err == nil {
		conn.Close()
		t.Fatal("guest could open a connection to the stack's vhost")
	} else if !strings.Contains(strings.ToLower(err.Error()), "access") && !strings.Contains(err.Error(), "403") && !strings.Contains(err.Error(), "530") {
		t.Fatalf("guest's connection failed, but not for lack of access: %v", err)
	}
	// Guest where it may log in (the default vhost, on a machine that still
	// has guest): the stack's sync exchange and repairQ are not there.
	err = withChannel(testenv.GuestURL, func(ch *amqp.Channel) error {
		if err := ch.Confirm(false); err != nil {
			return err
		}
		closed := ch.NotifyClose(make(chan *amqp.Error, 1))
		if err := ch.PublishWithContext(context.Background(), names.SyncX, "", false, false,
			amqp.Publishing{Type: wire.TypeSync, Body: []byte(`{"epoch":999}`)}); err != nil {
			return err
		}
		select {
		case e := <-closed:
			if e == nil || e.Code != amqp.NotFound {
				return errors.New("the channel closed, but not with 404: " + e.Error())
			}
			return errNotThere
		case <-time.After(10 * time.Second):
			return errors.New("a publish to the stack's sync exchange was accepted")
		}
	})
	if err != nil && !errors.Is(err, errNotThere) && !isAccessRefused(err) {
		t.Fatalf("guest publishing to the sync stream: %v", err)
	}
	if _, err := snapshot(testenv.GuestURL); err == nil || !errors.Is(err, mq.ErrUnavailable) {
		t.Fatalf("guest asked for a snapshot: %v, want ErrUnavailable (unroutable, or no connection)", err)
	}
	if _, err := snapshot(guestInVhost); err == nil || !errors.Is(err, mq.ErrUnavailable) {
		t.Fatalf("guest asked the stack's vhost for a snapshot: %v, want ErrUnavailable", err)
	}
}

var errNotThere = errors.New("not there")

func isAccessRefused(err error) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && (ae.Code == amqp.AccessRefused || ae.Code == amqp.NotAllowed)
}

func withChannel(url string, f func(*amqp.Channel) error) error {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	return f(ch)
}
