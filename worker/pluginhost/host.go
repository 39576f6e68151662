// Package pluginhost loads the worker's operation handlers from go-plugin
// binaries listed, with their SHA-256, in a plugin directory's manifest,
// and serves them as the worker's Registry: restarting a plugin whose
// process died or hung, and swapping the whole set on a rolling reload
// (SIGHUP or a changed manifest) without failing calls in flight. See
// DESIGN.md beside this file.
package pluginhost

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rideshare-dbaas/rideshare/internal/pluginsig"
	"github.com/rideshare-dbaas/rideshare/worker"
	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

// Errors.
var (
	// ErrChecksumMismatch: a binary's SHA-256 is not the manifest's.
	ErrChecksumMismatch = errors.New("plugin binary does not match the manifest's sha256")
	// ErrClosed: the host was closed.
	ErrClosed = errors.New("plugin host closed")
	// ErrNoPublicKey: no key to check the manifest's signature with.
	ErrNoPublicKey = errors.New("no plugin public key: give the worker --plugin-pubkey or $" + pluginsig.EnvPublicKey + " (from outside the plugin directory)")
	// ErrUnsigned: the manifest has no signature file.
	ErrUnsigned = errors.New("plugin manifest is not signed")
	// ErrWritableByOthers: a plugin file group or others can write.
	ErrWritableByOthers = errors.New("plugin file is writable by group or others")
)

// Config configures a Host.
type Config struct {
	// Dir is the plugin directory; manifest files are relative to it.
	Dir string
	// Manifest is the manifest's path; default Dir/plugins.json. Its
	// ed25519 signature is Manifest+".sig" (package pluginsig).
	Manifest string
	// PublicKey verifies the manifest's signature (required). It comes
	// from outside the plugin directory: whoever can write there must not
	// be able to vouch for what they wrote.
	PublicKey ed25519.PublicKey
	// Logger receives the host's and the plugins' logs.
	Logger *slog.Logger
	// StartTimeout bounds a plugin's start (handshake and Info); default 10s.
	StartTimeout time.Duration
	// WatchInterval is how often Run polls the manifest; default 1s.
	WatchInterval time.Duration
	// RestartBackoff: after a failed start, calls fail fast with the same
	// error for this long before the next try; default 1s.
	RestartBackoff time.Duration

	// Metrics is where the host registers its Prometheus metrics (plugin
	// calls, failures, restarts, reloads, the loaded set); a private
	// registry when nil.
	Metrics prometheus.Registerer

	noPdeathsig bool // tests: leave orphan handling to the plugin's watchdog
}

// Host runs the plugins of one directory and serves their operations.
type Host struct {
	dir, manifest  string
	pub            ed25519.PublicKey
	log            *slog.Logger
	startTimeout   time.Duration
	watchInterval  time.Duration
	restartBackoff time.Duration
	noPdeathsig    bool // tests: prove the plugin's own watchdog
	met            *hostMetrics

	reloadMu sync.Mutex // one load at a time
	cur      atomic.Pointer[pluginSet]

	chMu    sync.Mutex
	changed chan struct{}

	mu     sync.Mutex
	live   map[*instance]struct{}
	closed bool
	kills  sync.WaitGroup
}

var _ worker.Registry = (*Host)(nil)

// pluginSet is one loaded manifest: what Lookup serves.
type pluginSet struct {
	plugins []*pluginHandle
	byName  map[string]*pluginHandle
	ops     map[string]worker.Op
	infos   []pluginapi.Info
}

// New loads every plugin of the manifest; it fails (and starts nothing)
// when any plugin does not verify or start.
func New(ctx context.Context, cfg Config) (*Host, error) {
	if cfg.Dir == "" {
		return nil, errors.New("pluginhost: Dir is required")
	}
	if len(cfg.PublicKey) != ed25519.PublicKeySize {
		return nil, ErrNoPublicKey
	}
	h := &Host{
		dir:            cfg.Dir,
		manifest:       cfg.Manifest,
		pub:            cfg.PublicKey,
		log:            cfg.Logger,
		startTimeout:   cfg.StartTimeout,
		watchInterval:  cfg.WatchInterval,
		restartBackoff: cfg.RestartBackoff,
		noPdeathsig:    cfg.noPdeathsig,
		changed:        make(chan struct{}),
		live:           map[*instance]struct{}{},
	}
	h.met = newHostMetrics(cfg.Metrics, h)
	if h.manifest == "" {
		h.manifest = filepath.Join(cfg.Dir, ManifestName)
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.startTimeout == 0 {
		h.startTimeout = 10 * time.Second
	}
	if h.watchInterval == 0 {
		h.watchInterval = time.Second
	}
	if h.restartBackoff == 0 {
		h.restartBackoff = time.Second
	}
	if err := h.Reload(ctx); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// Lookup implements worker.Registry.
func (h *Host) Lookup(op string) (worker.Op, bool) {
	s := h.cur.Load()
	if s == nil {
		return worker.Op{}, false
	}
	o, ok := s.ops[op]
	return o, ok
}

// Infos implements worker.Registry.
func (h *Host) Infos() []pluginapi.Info {
	if s := h.cur.Load(); s != nil {
		return s.infos
	}
	return nil
}

// Changed is closed when a reload swaps the plugin set (and replaced by a
// new channel): a master can then apply new plugins' migrations.
func (h *Host) Changed() <-chan struct{} {
	h.chMu.Lock()
	defer h.chMu.Unlock()
	return h.changed
}

func (h *Host) signalChanged() {
	h.chMu.Lock()
	close(h.changed)
	h.changed = make(chan struct{})
	h.chMu.Unlock()
}

// Reload loads the manifest again, rolling: plugins whose entry did not
// change keep running; new or changed ones are started and verified
// first; then the new set replaces the old one atomically, and the old
// processes are killed once their calls in flight have returned. When
// anything fails, the loaded set stays and the error says why.
func (h *Host) Reload(ctx context.Context) error {
	h.reloadMu.Lock()
	defer h.reloadMu.Unlock()
	if err := h.reload(ctx); err != nil {
		h.met.reloadKO.Inc()
		if h.cur.Load() != nil {
			h.log.Error("plugin reload failed; keeping the loaded plugins", "manifest", h.manifest, "err", err)
		}
		return err
	}
	h.met.reloadOK.Inc()
	return nil
}

func (h *Host) reload(ctx context.Context) error {
	m, err := ReadSignedManifest(h.manifest, h.pub)
	if err != nil {
		return err
	}
	old := h.cur.Load()
	next := &pluginSet{byName: map[string]*pluginHandle{}, ops: map[string]worker.Op{}}
	var started []*pluginHandle
	fail := func(err error) error {
		for _, p := range started {
			p.unload()
		}
		return err
	}
	// The new and changed plugins start side by side: each launch is a
	// process start, a handshake and an Info call (~0.4 s apiece on this
	// machine), and a worker that starts (a replacement slave) is not
	// ready before its plugins are.
	fresh := make([]*pluginHandle, len(m.Plugins))
	errs := make([]error, len(m.Plugins))
	var wg sync.WaitGroup
	for i, e := range m.Plugins {
		if old != nil && old.byName[e.Name] != nil && old.byName[e.Name].entry == e {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			inst, info, err := h.launch(ctx, e)
			if err != nil {
				errs[i] = err
				return
			}
			fresh[i] = newHandle(h, e, info, inst)
		}()
	}
	wg.Wait()
	for _, p := range fresh {
		if p != nil {
			started = append(started, p)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fail(err)
	}
	for i, e := range m.Plugins {
		p := fresh[i]
		if p == nil {
			p = old.byName[e.Name] // unchanged: keep its process
		}
		next.plugins = append(next.plugins, p)
		next.byName[e.Name] = p
		next.infos = append(next.infos, p.info)
		if err := worker.IndexOps(next.ops, p, p.info); err != nil {
			return fail(fmt.Errorf("plugin %s: %w", e.Name, err))
		}
	}
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return fail(ErrClosed)
	}
	h.cur.Store(next)
	if old != nil {
		for _, p := range old.plugins {
			if next.byName[p.entry.Name] != p {
				p.unload() // killed when its calls in flight return
			}
		}
		h.signalChanged()
	}
	names := make([]string, 0, len(next.plugins))
	for _, p := range next.plugins {
		names = append(names, p.info.Name+"@"+p.info.Version)
	}
	h.log.Info("plugins loaded", "manifest", h.manifest, "plugins", names, "ops", len(next.ops), "started", len(started))
	return nil
}

// Run reloads on SIGHUP and when the manifest changes (polled: mtime and
// size), until ctx ends. A failed reload is not retried until the manifest
// changes again or another SIGHUP arrives.
func (h *Host) Run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(h.watchInterval)
	defer t.Stop()
	seen := statStamp(h.manifest)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			h.log.Info("SIGHUP: reloading plugins", "manifest", h.manifest)
			seen = statStamp(h.manifest)
			_ = h.Reload(ctx)
		case <-t.C:
			if now := statStamp(h.manifest); !now.equal(seen) {
				seen = now
				h.log.Info("plugin manifest changed: reloading plugins", "manifest", h.manifest)
				_ = h.Reload(ctx)
			}
		}
	}
}

// Close kills every plugin process and waits until they are gone. Calls
// after Close fail.
func (h *Host) Close() error {
	h.mu.Lock()
	h.closed = true
	live := make([]*instance, 0, len(h.live))
	for inst := range h.live {
		live = append(live, inst)
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, inst := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.killNow(inst)
		}()
	}
	wg.Wait()
	h.kills.Wait()
	return nil
}

func (h *Host) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// track records a started process so Close kills it; false when the host
// is already closed (the caller kills it).
func (h *Host) track(inst *instance) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.live[inst] = struct{}{}
	return true
}

// killNow kills inst's process (blocking: go-plugin gives it 2 s to exit
// gracefully) and forgets it.
func (h *Host) killNow(inst *instance) {
	inst.client.Kill()
	if inst.release != nil {
		inst.release()
	}
	h.mu.Lock()
	delete(h.live, inst)
	h.mu.Unlock()
}

// killLater kills inst in the background; Close waits for it.
func (h *Host) killLater(inst *instance, why string) {
	h.kills.Add(1)
	go func() {
		defer h.kills.Done()
		h.killNow(inst)
		h.log.Info("plugin process stopped", "plugin", inst.name, "pid", inst.pid, "why", why)
	}()
}

// Checksum is the manifest's SHA-256 of the loaded plugin serving handler
// ("" when none is loaded); the worker publishes it in its znode.
func (h *Host) Checksum(handler string) string {
	if s := h.cur.Load(); s != nil {
		if p := s.byName[handler]; p != nil {
			return p.entry.SHA256
		}
	}
	return ""
}
