package bench

import (
	"context"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/loadgen"
	"github.com/rideshare-dbaas/rideshare/internal/testenv"
)

func TestParseHexAddr(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"0100007F:1F90", "127.0.0.1:8080"},
		{"00000000:0016", "0.0.0.0:22"},
		{"0000000000000000FFFF00000100007F:0885", "127.0.0.1:2181"},
		{"00000000000000000000000001000000:0016", "[::1]:22"},
	} {
		got, err := parseHexAddr(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseHexAddr(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "7F:1F90", "0100007F", "ZZ00007F:1F90", "0100007F:ZZZZZ"} {
		if _, err := parseHexAddr(bad); err == nil {
			t.Errorf("parseHexAddr(%q) accepted", bad)
		}
	}
}

func TestListenAddrs(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addrs, err := ListenAddrs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(addrs, ln.Addr().String()) {
		t.Errorf("ListenAddrs = %v, want it to hold %s", addrs, ln.Addr())
	}
}

func TestSamplerSeesItsOwnProcess(t *testing.T) {
	s := NewSampler([]Proc{{os.Getpid(), KindLoadTool}, {os.Getpid() + 1<<22, KindRqlite}}, 20*time.Millisecond)
	s.Begin()
	// Burn CPU until the kernel has counted 60 ms more for this process
	// (a condition, not a time: the machine may be busy).
	cpu0, _, err := procStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	x := 0
	for {
		for range 1 << 20 {
			x++
		}
		cpu, _, err := procStat(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if cpu-cpu0 >= 60*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the process got %v of CPU in a minute", cpu-cpu0)
		}
	}
	s.End()
	u, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	me := u.Of(KindLoadTool)
	// Begin read the CPU before cpu0 was read, End after it grew by 60 ms.
	if me.CPU < 60*time.Millisecond || me.MaxRSS <= 0 || me.Procs != 1 {
		t.Errorf("own usage %+v (x=%d): want ≥ 60 ms CPU and an RSS", me, x)
	}
	// A pid that does not exist counts as nothing, without failing.
	if gone := u.Of(KindRqlite); gone.CPU != 0 || gone.MaxRSS != 0 {
		t.Errorf("missing process: %+v", gone)
	}
	if u.MachineAll <= 0 || u.MachineBusy <= 0 || u.Window <= 0 || !u.End.After(u.Begin) {
		t.Errorf("machine %v busy of %v over %v (%v to %v)", u.MachineBusy, u.MachineAll, u.Window, u.Begin, u.End)
	}
	if _, err := NewSampler(nil, time.Second).Usage(); err == nil {
		t.Error("Usage before End succeeded")
	}
}

// TestProber times the fixed steps on the real servers (make test starts
// them; without them it skips, or fails under RIDESHARE_REQUIRE_SERVERS).
func TestProber(t *testing.T) {
	testenv.RequireServers(t)
	ctx := context.Background()
	p, err := NewProber(ctx, t.TempDir(), testenv.AMQPURL(), testenv.ZKServers(), testenv.Name(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	rt, ds, err := p.RoundTrips(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string]loadgen.Latency{"fsync": ds.Fsync, "fdatasync": ds.Fdatasync,
		"zk": rt.ZKSyncGet, "quorum": rt.QuorumConfirm, "transient": rt.TransientConfirm} {
		if l.P50 <= 0 || l.Max < l.P50 {
			t.Errorf("%s: %+v", name, l)
		}
	}
	stop := p.Watch(ctx)
	// Wait for two samples (a condition with a deadline, not a sleep).
	deadline := time.Now().Add(30 * time.Second)
	var env Env
	for {
		time.Sleep(3 * EnvInterval) // the poll interval of this wait
		env = stop()
		if env.Samples >= 1 || time.Now().After(deadline) {
			break
		}
		stop = p.Watch(ctx)
	}
	if env.Samples < 1 || env.Quorum.P50 <= 0 || env.ZK.P50 <= 0 || env.Fdatasync.P50 <= 0 {
		t.Errorf("watch saw %+v", env)
	}
}

func TestListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if !Listening(addr) {
		t.Errorf("Listening(%s) = false while it listens", addr)
	}
	ln.Close()
	if Listening(addr) {
		t.Errorf("Listening(%s) = true after Close", addr)
	}
}
