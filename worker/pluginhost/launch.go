package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	plugin "github.com/hashicorp/go-plugin"
	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

// instance is one running plugin process. refs, retired and killed are
// guarded by the owning pluginHandle's mutex.
type instance struct {
	name    string
	client  *plugin.Client
	handler *pluginapi.GRPCClient
	pid     int
	release func() // ends the goroutine holding the thread that forked it

	refs    int  // calls in flight
	retired bool // takes no new calls; killed once refs is 0
	killed  bool
}

// launch verifies e's binary against the manifest and starts it. Every
// error path kills what it started.
func (h *Host) launch(ctx context.Context, e ManifestEntry) (*instance, pluginapi.Info, error) {
	path := filepath.Join(h.dir, e.File)
	if err := checkNotShared(path); err != nil {
		h.log.Error("plugin binary is writable by group or others; refusing to run it", "plugin", e.Name, "file", path, "err", err)
		return nil, pluginapi.Info{}, fmt.Errorf("plugin %s: %w", e.Name, err)
	}
	got, err := FileSHA256(path)
	if err != nil {
		return nil, pluginapi.Info{}, fmt.Errorf("plugin %s: %w", e.Name, err)
	}
	if !strings.EqualFold(got, e.SHA256) {
		h.log.Error("plugin binary does not match its manifest; refusing to run it",
			"plugin", e.Name, "file", path, "manifest_sha256", e.SHA256, "file_sha256", got)
		return nil, pluginapi.Info{}, fmt.Errorf("%w: plugin %s: %s has sha256 %s, the manifest says %s", ErrChecksumMismatch, e.Name, path, got, e.SHA256)
	}
	want, _ := hex.DecodeString(e.SHA256) // checked by ReadManifest

	cmd := exec.Command(path)
	if !h.noPdeathsig {
		setPdeathsig(cmd)
	}
	cmd.Env = append(cmd.Env, pluginapi.EnvLogLevel+"="+h.pluginLogLevel())
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  pluginapi.Handshake,
		VersionedPlugins: pluginapi.VersionedPlugins,
		Cmd:              cmd,
		// go-plugin hashes the file again right before exec, so a binary
		// swapped after our check is refused too.
		SecureConfig:     &plugin.SecureConfig{Checksum: want, Hash: sha256.New()},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Managed:          true,
		StartTimeout:     h.startTimeout,
		Logger:           newSlogLogger(h.log.With("plugin", e.Name)),
	})
	inst := &instance{name: e.Name, client: client}
	fail := func(err error) (*instance, pluginapi.Info, error) {
		h.killNow(inst)
		return nil, pluginapi.Info{}, err
	}

	rpc, release, err := startOnLockedThread(client)
	inst.release = release
	if err != nil {
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			now, _ := FileSHA256(path)
			h.log.Error("plugin binary changed after it was verified; refusing to run it",
				"plugin", e.Name, "file", path, "manifest_sha256", e.SHA256, "file_sha256", now)
			return fail(fmt.Errorf("%w: plugin %s: %s has sha256 %s, the manifest says %s", ErrChecksumMismatch, e.Name, path, now, e.SHA256))
		}
		return fail(fmt.Errorf("plugin %s: start %s: %w", e.Name, path, err))
	}
	if !h.track(inst) {
		return fail(ErrClosed)
	}
	if rc := client.ReattachConfig(); rc != nil {
		inst.pid = rc.Pid
	}
	raw, err := rpc.Dispense(pluginapi.PluginName)
	if err != nil {
		return fail(fmt.Errorf("plugin %s: dispense: %w", e.Name, err))
	}
	gc, ok := raw.(*pluginapi.GRPCClient)
	if !ok {
		return fail(fmt.Errorf("plugin %s: dispensed %T, not a handler", e.Name, raw))
	}
	inst.handler = gc
	ictx, cancel := context.WithTimeout(ctx, h.startTimeout)
	defer cancel()
	info, err := gc.Info(ictx)
	if err != nil {
		return fail(fmt.Errorf("plugin %s: info: %w", e.Name, err))
	}
	if info.Name != e.Name {
		return fail(fmt.Errorf("plugin %s: %s reports handler %q; the manifest names it %q", e.Name, path, info.Name, e.Name))
	}
	h.log.Info("plugin ready", "plugin", e.Name, "version", info.Version, "pid", inst.pid,
		"protocol", client.NegotiatedVersion(), "ops", len(info.Ops))
	return inst, info, nil
}

// startOnLockedThread starts the plugin process from a goroutine locked to
// its OS thread, which stays parked until release is called (after the
// process is killed). Pdeathsig fires when the *thread* that forked the
// child exits, and the Go runtime may retire an idle thread: pinning it
// means the signal fires only when the whole worker dies.
func startOnLockedThread(client *plugin.Client) (plugin.ClientProtocol, func(), error) {
	type result struct {
		rpc plugin.ClientProtocol
		err error
	}
	res := make(chan result, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		rpc, err := client.Client()
		res <- result{rpc, err}
		<-done
	}()
	r := <-res
	return r.rpc, sync.OnceFunc(func() { close(done) }), r.err
}

// pluginLogLevel is the level plugins log at: the lowest the worker's log
// takes, so nothing is produced only to be dropped.
func (h *Host) pluginLogLevel() string {
	return strings.ToLower(newSlogLogger(h.log).GetLevel().String())
}
