package pluginhost

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/pluginsig"
)

// ManifestName is the manifest's file name in a plugin directory.
const ManifestName = "plugins.json"

// Manifest lists the plugins of a directory; only listed binaries run, and
// only with the listed SHA-256 (Vault's plugin catalog, in a file):
//
//	{"plugins": [
//	  {"name": "rideshare", "file": "rideshare-plugin", "sha256": "9f2c…"}
//	]}
//
// name is the handler name the plugin must report in its Info; file is
// relative to the plugin directory; sha256 is the binary's hex SHA-256.
// scripts/build-plugins.sh writes it.
type Manifest struct {
	Plugins []ManifestEntry `json:"plugins"`
}

// ManifestEntry is one plugin binary.
type ManifestEntry struct {
	Name   string `json:"name"`
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
}

// ReadManifest reads and checks the manifest at path (not its signature:
// the host reads manifests with ReadSignedManifest).
func ReadManifest(path string) (Manifest, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Manifest{}, fmt.Errorf("read plugin manifest: %w", err)
	}
	return parseManifest(path, raw)
}

// ReadSignedManifest reads the manifest at path and checks it against its
// signature (path.sig) under pub, and that neither file can be written by
// group or others.
func ReadSignedManifest(path string, pub ed25519.PublicKey) (Manifest, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Manifest{}, ErrNoPublicKey
	}
	sigPath := pluginsig.SigPath(path)
	if _, err := os.Stat(sigPath); errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, fmt.Errorf("%w: %s has no %s beside it (rideshare plugin sign)", ErrUnsigned, path, filepath.Base(sigPath))
	}
	for _, f := range []string{path, sigPath} {
		if err := checkNotShared(f); err != nil {
			return Manifest{}, err
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return Manifest{}, fmt.Errorf("read plugin manifest: %w", err)
	}
	sig, err := os.ReadFile(sigPath)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: %s: %w", ErrUnsigned, path, err)
	}
	if err := pluginsig.Verify(pub, raw, sig); err != nil {
		return Manifest{}, fmt.Errorf("%w: %s", err, path)
	}
	return parseManifest(path, raw)
}

// checkNotShared refuses a file that group or others can write: whoever
// can write a plugin binary or its manifest could run code in the worker.
func checkNotShared(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("plugin file: %w", err)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: %s has mode %04o (chmod go-w it)", ErrWritableByOthers, path, fi.Mode().Perm())
	}
	return nil
}

func parseManifest(path string, raw []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("plugin manifest %s: %w", path, err)
	}
	if err := m.check(); err != nil {
		return Manifest{}, fmt.Errorf("plugin manifest %s: %w", path, err)
	}
	return m, nil
}

func (m Manifest) check() error {
	seen := map[string]bool{}
	for i, e := range m.Plugins {
		switch {
		case e.Name == "":
			return fmt.Errorf("plugin %d has no name", i+1)
		case seen[e.Name]:
			return fmt.Errorf("plugin %q is listed twice", e.Name)
		case e.File == "" || !filepath.IsLocal(e.File):
			return fmt.Errorf("plugin %q: file %q must be a path inside the plugin directory", e.Name, e.File)
		}
		if b, err := hex.DecodeString(e.SHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("plugin %q: sha256 %q is not a hex SHA-256", e.Name, e.SHA256)
		}
		seen[e.Name] = true
	}
	return nil
}

// WriteSignedFile signs the manifest with priv, then writes path.sig and
// path, in that order (each atomically): a host that sees the new manifest
// already finds its signature.
func (m Manifest) WriteSignedFile(path string, priv ed25519.PrivateKey) error {
	if err := m.check(); err != nil {
		return err
	}
	raw, err := m.marshal()
	if err != nil {
		return err
	}
	if err := writeAtomic(pluginsig.SigPath(path), pluginsig.Sign(priv, raw)); err != nil {
		return err
	}
	return writeAtomic(path, raw)
}

func (m Manifest) marshal() ([]byte, error) {
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(raw, '\n'), nil
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".manifest-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// WriteFile writes the manifest to path atomically (a temporary file
// renamed into place), so a watching host never reads half of it.
func (m Manifest) WriteFile(path string) error {
	if err := m.check(); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".manifest-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(raw, '\n')); err != nil {
		tmp.Close()
		return err
	}
	// Readable by every worker: in a container a worker runs as another
	// user than whoever ships the plugins (CreateTemp makes it 0600).
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// FileSHA256 returns the hex SHA-256 of the file at path.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// stamp identifies a version of the manifest file for the watch.
type stamp struct {
	mtime time.Time
	size  int64
	ok    bool
}

func statStamp(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	return stamp{mtime: fi.ModTime(), size: fi.Size(), ok: true}
}

func (a stamp) equal(b stamp) bool {
	return a.ok == b.ok && a.size == b.size && a.mtime.Equal(b.mtime)
}
