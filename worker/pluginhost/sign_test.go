package pluginhost

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/rideshare-dbaas/rideshare/internal/pluginsig"
)

// The tests' signing key: fixed, so that the helper process (the test
// binary run again) has the same public key.
var (
	testPriv = ed25519.NewKeyFromSeed([]byte("rideshare pluginhost test key 32"))
	testPub  = testPriv.Public().(ed25519.PublicKey)
)

func mustWriteManifest(t testing.TB, m Manifest, path string) {
	t.Helper()
	if err := m.WriteSignedFile(path, testPriv); err != nil {
		t.Fatal(err)
	}
}

// Only a manifest signed by the configured key loads, and no plugin file
// that group or others can write runs.
func TestManifestSignatureAndModes(t *testing.T) {
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	manifestOf := func(dir string) string { return filepath.Join(dir, ManifestName) }
	tests := []struct {
		name    string
		spoil   func(t *testing.T, dir string)
		pub     ed25519.PublicKey
		wantErr error
	}{
		{"signed: loads", func(*testing.T, string) {}, testPub, nil},
		{"no public key", func(*testing.T, string) {}, nil, ErrNoPublicKey},
		{"no signature", func(t *testing.T, dir string) {
			if err := os.Remove(pluginsig.SigPath(manifestOf(dir))); err != nil {
				t.Fatal(err)
			}
		}, testPub, ErrUnsigned},
		{"signed by another key", func(t *testing.T, dir string) {
			raw, _ := os.ReadFile(manifestOf(dir))
			if err := os.WriteFile(pluginsig.SigPath(manifestOf(dir)), pluginsig.Sign(otherPriv, raw), 0o644); err != nil {
				t.Fatal(err)
			}
		}, testPub, pluginsig.ErrBadSignature},
		{"manifest edited after signing", func(t *testing.T, dir string) {
			raw, _ := os.ReadFile(manifestOf(dir))
			if err := os.WriteFile(manifestOf(dir), append(raw, ' '), 0o644); err != nil {
				t.Fatal(err)
			}
		}, testPub, pluginsig.ErrBadSignature},
		{"group-writable binary", func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, "misbehave"), 0o775); err != nil {
				t.Fatal(err)
			}
		}, testPub, ErrWritableByOthers},
		{"world-writable manifest", func(t *testing.T, dir string) {
			if err := os.Chmod(manifestOf(dir), 0o646); err != nil {
				t.Fatal(err)
			}
		}, testPub, ErrWritableByOthers},
		{"group-writable signature", func(t *testing.T, dir string) {
			if err := os.Chmod(pluginsig.SigPath(manifestOf(dir)), 0o664); err != nil {
				t.Fatal(err)
			}
		}, testPub, ErrWritableByOthers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := mustPluginDir(t, plug{"misbehave", bins.misbehave1, "misbehave"})
			tt.spoil(t, dir)
			log, buf := testLogger(t)
			h, err := New(context.Background(), Config{Dir: dir, Logger: log, PublicKey: tt.pub})
			if err == nil {
				h.Close()
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("New: %v\n%s", err, buf)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("New: %v, want %v", err, tt.wantErr)
			}
		})
	}
}
