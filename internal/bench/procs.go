package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Process kinds, in report order.
const (
	KindOrchestrator = "orchestrator"
	KindMaster       = "worker (master)"
	KindSlave        = "worker (slave)"
	KindPlugin       = "plugin"
	KindUsers        = "users"
	KindRides        = "rides"
	KindTraefik      = "traefik"
	KindRabbitMQ     = "rabbitmq"
	KindZooKeeper    = "zookeeper"
	KindRqlite       = "rqlite"
	KindLoadTool     = "load tool"
)

// Kinds is the report order of the process kinds.
var Kinds = []string{KindOrchestrator, KindMaster, KindSlave, KindPlugin, KindUsers, KindRides,
	KindTraefik, KindRabbitMQ, KindZooKeeper, KindRqlite, KindLoadTool}

// Proc is one process the bench watches.
type Proc struct {
	PID  int
	Kind string
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's CPU times: 100 on
// every Linux the project runs on.
const clockTick = 100

// procStat reads a process's CPU time (user + system) and parent pid.
func procStat(pid int) (cpu time.Duration, ppid int, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	ppid, _ = strconv.Atoi(f[1])
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(ut+st) * time.Second / clockTick, ppid, nil
}

// procRSS is a process's resident set size in bytes.
func procRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// machineCPU is the machine's busy and total CPU time from /proc/stat.
func machineCPU() (busy, total time.Duration, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat: no cpu line")
	}
	var idle int64
	for i, s := range f[1:] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		if i >= 7 { // steal is not ours; guest and guest_nice are in user already
			continue
		}
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
		total += time.Duration(v) * time.Second / clockTick
	}
	busy = total - time.Duration(idle)*time.Second/clockTick
	return busy, total, nil
}

// allProcs lists every pid with its command name and parent.
type procInfo struct {
	pid, ppid int
	comm      string
}

func listProcs() []procInfo {
	ents, _ := os.ReadDir("/proc")
	var out []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			continue
		}
		_, ppid, err := procStat(pid)
		if err != nil {
			continue
		}
		out = append(out, procInfo{pid, ppid, strings.TrimSpace(string(comm))})
	}
	return out
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
}

// ServerProcs finds the shared servers: RabbitMQ (the Erlang VM, beam.smp,
// listening on amqpPort: rabbitmqctl runs a beam.smp too) and ZooKeeper
// (the JVM running QuorumPeerMain, listening on zkPort).
func ServerProcs(amqpPort, zkPort string) []Proc {
	listensOn := func(pid int, port string) bool {
		addrs, _ := ListenAddrs(pid)
		for _, a := range addrs {
			if strings.HasSuffix(a, ":"+port) {
				return true
			}
		}
		return false
	}
	var out []Proc
	for _, p := range listProcs() {
		switch {
		case p.comm == "beam.smp" && listensOn(p.pid, amqpPort):
			out = append(out, Proc{p.pid, KindRabbitMQ})
		case p.comm == "java" && strings.Contains(cmdline(p.pid), "QuorumPeerMain") && listensOn(p.pid, zkPort):
			out = append(out, Proc{p.pid, KindZooKeeper})
		}
	}
	return out
}

// ChildProcs lists the children of parent (a worker's plugin processes).
func ChildProcs(parent int, kind string) []Proc {
	var out []Proc
	for _, p := range listProcs() {
		if p.ppid == parent {
			out = append(out, Proc{p.pid, kind})
		}
	}
	return out
}

// PIDFile reads a pid file (scripts/stack.sh writes one per component).
func PIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// KindUsage is what one process kind used during a measured window.
type KindUsage struct {
	Kind  string        `json:"kind"`
	Procs int           `json:"procs"`
	CPU   time.Duration `json:"cpu_ns"`
	// MaxRSS is the largest RSS one process of the kind had in a sample;
	// SumRSS adds each process's largest sample.
	MaxRSS int64 `json:"max_rss_bytes"`
	SumRSS int64 `json:"sum_rss_bytes"`
}

// Usage is the CPU and memory of the watched processes over a window, and
// the machine's.
type Usage struct {
	Begin       time.Time     `json:"begin"`
	End         time.Time     `json:"end"`
	Window      time.Duration `json:"window_ns"`
	Kinds       []KindUsage   `json:"kinds"`        // report order, kinds seen only
	MachineBusy time.Duration `json:"machine_busy"` // all cores, every process
	MachineAll  time.Duration `json:"machine_all"`  // cores × window
}

// Ours is the CPU of the watched processes.
func (u Usage) Ours() time.Duration {
	var s time.Duration
	for _, k := range u.Kinds {
		s += k.CPU
	}
	return s
}

// Of returns the usage of one kind (zero when not watched).
func (u Usage) Of(kind string) KindUsage {
	for _, k := range u.Kinds {
		if k.Kind == kind {
			return k
		}
	}
	return KindUsage{Kind: kind}
}

// Sampler measures the CPU and RSS of a set of processes between Begin
// and End, sampling RSS every interval.
type Sampler struct {
	procs    []Proc
	interval time.Duration

	mu        sync.Mutex
	t0        time.Time
	cpu0      map[int]time.Duration
	cpuLast   map[int]time.Duration
	rss       map[int]int64
	busy0     time.Duration
	all0      time.Duration
	stop      chan struct{}
	done      chan struct{}
	begun     bool
	ended     bool
	result    Usage
	resultErr error
}

// NewSampler watches procs.
func NewSampler(procs []Proc, interval time.Duration) *Sampler {
	return &Sampler{procs: procs, interval: interval}
}

func (s *Sampler) sample() {
	for _, p := range s.procs {
		if c, _, err := procStat(p.PID); err == nil {
			s.cpuLast[p.PID] = c
		}
		if r, err := procRSS(p.PID); err == nil && r > s.rss[p.PID] {
			s.rss[p.PID] = r
		}
	}
}

// Begin takes the first readings and starts sampling.
func (s *Sampler) Begin() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.begun {
		return
	}
	s.begun = true
	s.cpu0, s.cpuLast, s.rss = map[int]time.Duration{}, map[int]time.Duration{}, map[int]int64{}
	s.sample()
	for pid, c := range s.cpuLast {
		s.cpu0[pid] = c
	}
	s.busy0, s.all0, _ = machineCPU()
	s.t0 = time.Now()
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.mu.Lock()
				s.sample()
				s.mu.Unlock()
			}
		}
	}()
}

// End takes the last readings and computes the usage.
func (s *Sampler) End() {
	s.mu.Lock()
	if !s.begun || s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	close(s.stop)
	s.mu.Unlock()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sample()
	busy, all, err := machineCPU()
	now := time.Now()
	u := Usage{Begin: s.t0, End: now, Window: now.Sub(s.t0), MachineBusy: busy - s.busy0, MachineAll: all - s.all0}
	byKind := map[string]*KindUsage{}
	for _, p := range s.procs {
		k := byKind[p.Kind]
		if k == nil {
			k = &KindUsage{Kind: p.Kind}
			byKind[p.Kind] = k
		}
		k.Procs++
		// A process that exited counts up to its last reading.
		k.CPU += s.cpuLast[p.PID] - s.cpu0[p.PID]
		k.MaxRSS = max(k.MaxRSS, s.rss[p.PID])
		k.SumRSS += s.rss[p.PID]
	}
	for _, kind := range Kinds {
		if k := byKind[kind]; k != nil {
			u.Kinds = append(u.Kinds, *k)
		}
	}
	s.result, s.resultErr = u, err
}

// Usage is the result, once End has run.
func (s *Sampler) Usage() (Usage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		return Usage{}, errors.New("sampler: End has not run")
	}
	return s.result, s.resultErr
}

// ListenAddrs is the TCP addresses pid listens on (IPv4 and IPv6, a
// v4-mapped IPv6 address printed as IPv4), from /proc/PID/net/tcp{,6} and
// the process's open sockets. A worker's only TCP listener is its pprof
// server: the plugins talk over Unix sockets.
func ListenAddrs(pid int) ([]string, error) {
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err != nil {
			continue
		}
		if in, ok := strings.CutPrefix(l, "socket:["); ok {
			inodes[strings.TrimSuffix(in, "]")] = true
		}
	}
	var out []string
	for _, table := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue // no IPv6 on this kernel
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] { // 0A: LISTEN
				continue
			}
			if a, err := parseHexAddr(f[1]); err == nil {
				out = append(out, a)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// Listening reports whether some socket of this network namespace listens
// on the TCP address (host:port, as ListenAddrs prints it). Polling a port
// with connect(2) before anyone listens can connect the client to itself
// when the port lies in the ephemeral range (32768–60999 here, where the
// engineers' fixed ports are): the server then cannot bind it. So the
// bench connects only to ports that listen.
func Listening(addr string) bool {
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 4 || f[3] != "0A" {
				continue
			}
			if a, err := parseHexAddr(f[1]); err == nil && a == addr {
				return true
			}
		}
	}
	return false
}

// parseHexAddr turns /proc/net/tcp's "0100007F:1F90" into "127.0.0.1:8080"
// (and tcp6's 32 hex digits into an IPv6 address, or IPv4 when mapped).
// The kernel prints each 32-bit word in host order: little-endian on the
// machines the project runs on (amd64, arm64).
func parseHexAddr(s string) (string, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok || (len(ipHex) != 8 && len(ipHex) != 32) {
		return "", fmt.Errorf("not an address: %q", s)
	}
	ip := make(net.IP, 0, 16)
	for i := 0; i < len(ipHex); i += 8 {
		w, err := strconv.ParseUint(ipHex[i:i+8], 16, 32)
		if err != nil {
			return "", err
		}
		ip = append(ip, byte(w), byte(w>>8), byte(w>>16), byte(w>>24))
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip.String(), strconv.FormatUint(port, 10)), nil
}
