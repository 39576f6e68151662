// Package pluginsig signs and verifies plugin manifests with ed25519. The
// SHA-256 in a manifest proves a binary is the one listed (integrity); the
// signature over the manifest's exact bytes proves who listed it (origin).
// The private key stays with whoever builds plugins (make build makes a dev
// key under ~/.config/rideshare, mode 0600); workers get the public key
// from outside the plugin directory (a flag or the environment).
//
// Formats: the private key is a PEM "PRIVATE KEY" (PKCS #8), the public key
// a PEM "PUBLIC KEY" (PKIX) or, for environment variables, the base64 of
// its 32 bytes; the signature file (<manifest>.sig) is the base64 of the 64
// signature bytes on one line. openssl reads and writes all three.
package pluginsig

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SigSuffix is added to the manifest's path to name its signature file.
const SigSuffix = ".sig"

// Environment variables the worker reads for the public key.
const (
	EnvPublicKey     = "RIDESHARE_PLUGIN_PUBKEY"      // base64 of the 32 key bytes, or PEM
	EnvPublicKeyFile = "RIDESHARE_PLUGIN_PUBKEY_FILE" // a file holding it
)

// ErrBadSignature: the manifest is not signed by the key.
var ErrBadSignature = errors.New("plugin manifest signature does not verify")

// DefaultKeyPath is where make build keeps the dev signing key:
// $RIDESHARE_PLUGIN_KEY, else ~/.config/rideshare/plugin-signing.key.
func DefaultKeyPath() string {
	if p := os.Getenv("RIDESHARE_PLUGIN_KEY"); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = filepath.Join(os.TempDir(), "rideshare-config")
	}
	return filepath.Join(dir, "rideshare", "plugin-signing.key")
}

// SigPath is the signature file of the manifest at path.
func SigPath(manifest string) string { return manifest + SigSuffix }

// GenerateKey makes a key pair and writes the private key to path (mode
// 0600, its directory 0700). It refuses to overwrite an existing file.
func GenerateKey(path string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, err
	}
	return pub, f.Close()
}

// ReadPrivateKey reads a PEM PKCS #8 ed25519 key from a file only its
// owner can access.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s has mode %04o: group and others must have no access (chmod 600 it)", path, fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	b, _ := pem.Decode(raw)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: not a PEM PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: %T is not an ed25519 key", path, k)
	}
	return priv, nil
}

// EncodePublicKey is the one-line form (base64 of the 32 bytes).
func EncodePublicKey(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

// PublicKeyPEM is the PEM form.
func PublicKeyPEM(pub ed25519.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ParsePublicKey reads either form.
func ParsePublicKey(s []byte) (ed25519.PublicKey, error) {
	if b, _ := pem.Decode(s); b != nil {
		if b.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("public key: PEM block %q, want PUBLIC KEY", b.Type)
		}
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public key: %w", err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("public key: %T is not an ed25519 key", k)
		}
		return pub, nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(s)))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, errors.New("public key: neither a PEM PUBLIC KEY nor the base64 of 32 bytes")
	}
	return ed25519.PublicKey(raw), nil
}

// LoadPublicKey returns the key from the file path (a flag), else from the
// file $RIDESHARE_PLUGIN_PUBKEY_FILE, else from $RIDESHARE_PLUGIN_PUBKEY;
// nil when none is set.
func LoadPublicKey(path string) (ed25519.PublicKey, string, error) {
	if path == "" {
		path = os.Getenv(EnvPublicKeyFile)
	}
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, "", fmt.Errorf("plugin public key: %w", err)
		}
		pub, err := ParsePublicKey(raw)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", path, err)
		}
		return pub, path, nil
	}
	if v := os.Getenv(EnvPublicKey); v != "" {
		pub, err := ParsePublicKey([]byte(v))
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", EnvPublicKey, err)
		}
		return pub, EnvPublicKey, nil
	}
	return nil, "", nil
}

// Sign returns the signature file's content for manifest.
func Sign(priv ed25519.PrivateKey, manifest []byte) []byte {
	return []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(priv, manifest)) + "\n")
}

// Verify checks sigFile (Sign's output) over manifest.
func Verify(pub ed25519.PublicKey, manifest, sigFile []byte) error {
	sig, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(sigFile)))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: the signature file is not the base64 of %d bytes", ErrBadSignature, ed25519.SignatureSize)
	}
	if !ed25519.Verify(pub, manifest, sig) {
		return ErrBadSignature
	}
	return nil
}

// SignFile signs the manifest at path with the key at keyPath, writing
// path.sig (atomically, mode 0644).
func SignFile(keyPath, path string) error {
	priv, err := ReadPrivateKey(keyPath)
	if err != nil {
		return err
	}
	manifest, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	tmp := SigPath(path) + ".tmp"
	if err := os.WriteFile(tmp, Sign(priv, manifest), 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, SigPath(path))
}
