// Package testenv is what integration tests share: where the real
// RabbitMQ, ZooKeeper and the built binaries are, and names that keep
// concurrent tests apart on one broker and one ZooKeeper.
//
// `make test` starts the servers, builds the binaries and sets
// RIDESHARE_REQUIRE_SERVERS=1, so there a missing server fails the test
// instead of skipping it. A plain `go test ./...` without servers skips the
// integration tests with a message that says how to run them.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// AMQPURL is the RabbitMQ the tests use (AMQP_URL, default loopback).
func AMQPURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://127.0.0.1:5672/"
}

// ZKServers is the ZooKeeper the tests use (ZK_SERVERS, default loopback).
func ZKServers() []string {
	s := os.Getenv("ZK_SERVERS")
	if s == "" {
		s = "127.0.0.1:2181"
	}
	return strings.Split(s, ",")
}

func required() bool { return os.Getenv("RIDESHARE_REQUIRE_SERVERS") != "" }

func reachable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// RequireServers skips (or, under make test, fails) unless RabbitMQ and
// ZooKeeper answer.
func RequireServers(t testing.TB) {
	t.Helper()
	amqpHost := strings.TrimSuffix(strings.TrimPrefix(AMQPURL(), "amqp://"), "/")
	if i := strings.LastIndex(amqpHost, "@"); i >= 0 {
		amqpHost = amqpHost[i+1:]
	}
	for _, addr := range []string{amqpHost, ZKServers()[0]} {
		if !reachable(addr) {
			msg := "integration test needs RabbitMQ and ZooKeeper (" + addr + " does not answer); run `make test` or `make servers`"
			if required() {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// Missing reports that something an integration test needs is not there:
// it skips the test, or fails it under `make test` (RIDESHARE_REQUIRE_SERVERS),
// where everything must be.
func Missing(t testing.TB, msg string) {
	t.Helper()
	if required() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Bin returns the path of a built binary (RIDESHARE_BIN or <repo>/bin),
// skipping or failing like RequireServers when it is missing.
func Bin(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("RIDESHARE_BIN")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "bin")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		msg := "integration test needs the built binary " + p + "; run `make build`"
		if required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// Traefik returns the Traefik binary ($RIDESHARE_BIN/traefik or the repo's
// bin/traefik, where `make traefik` puts it). When it is missing the test
// skips, or fails under RIDESHARE_REQUIRE_TRAEFIK (make test); -short skips
// unless that is set.
func Traefik(t testing.TB) string {
	t.Helper()
	required := os.Getenv("RIDESHARE_REQUIRE_TRAEFIK") != ""
	dir := os.Getenv("RIDESHARE_BIN")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "bin")
	}
	bin, err := filepath.Abs(filepath.Join(dir, "traefik"))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(bin)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		msg := "no Traefik binary at " + bin + ": run `make traefik` (or set RIDESHARE_BIN to the directory holding traefik)"
		if required {
			t.Fatal(msg + "; failing because RIDESHARE_REQUIRE_TRAEFIK is set")
		}
		t.Skip(msg)
	}
	if testing.Short() && !required {
		t.Skip("-short: skipping a test that runs Traefik")
	}
	return bin
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

var nonWord = regexp.MustCompile(`[^a-zA-Z0-9]+`)

// Name returns a name unique to this test run, usable as a ZooKeeper path
// element and a queue prefix.
func Name(t testing.TB) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	n := nonWord.ReplaceAllString(t.Name(), "-")
	if len(n) > 40 {
		n = n[:40]
	}
	return strings.ToLower(n) + "-" + hex.EncodeToString(b)
}

// Eventually polls cond every interval until it returns true or timeout
// passes, then fails with msg and cond's last explanation.
func Eventually(t testing.TB, timeout time.Duration, msg string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %s", msg, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
