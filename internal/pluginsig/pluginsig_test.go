package pluginsig

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestKeyAndSignatureRoundTrip(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "keys", "signing.key")
	pub, err := GenerateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(key); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode())
	}
	if _, err := GenerateKey(key); err == nil {
		t.Fatal("GenerateKey overwrote a key")
	}
	manifest := filepath.Join(dir, "plugins.json")
	if err := os.WriteFile(manifest, []byte(`{"plugins": []}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SignFile(key, manifest); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(manifest)
	sig, _ := os.ReadFile(SigPath(manifest))
	for name, form := range map[string][]byte{"base64": []byte(EncodePublicKey(pub)), "pem": PublicKeyPEM(pub)} {
		p, err := ParsePublicKey(form)
		if err != nil || !p.Equal(pub) {
			t.Fatalf("%s form: %v", name, err)
		}
	}
	if err := Verify(pub, raw, sig); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	other, _, _ := ed25519.GenerateKey(nil)
	tests := []struct {
		name          string
		pub           ed25519.PublicKey
		manifest, sig []byte
	}{
		{"other key", other, raw, sig},
		{"edited manifest", pub, append(append([]byte{}, raw...), ' '), sig},
		{"garbage signature", pub, raw, []byte("not base64!\n")},
		{"short signature", pub, raw, []byte("AAAA\n")},
	}
	for _, tt := range tests {
		if err := Verify(tt.pub, tt.manifest, tt.sig); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: %v, want ErrBadSignature", tt.name, err)
		}
	}
	if err := os.Chmod(key, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivateKey(key); err == nil {
		t.Fatal("a group-readable private key was accepted")
	}
}

func TestLoadPublicKey(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	pub := priv.Public().(ed25519.PublicKey)
	file := filepath.Join(t.TempDir(), "k.pub")
	if err := os.WriteFile(file, PublicKeyPEM(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvPublicKeyFile, "")
	t.Setenv(EnvPublicKey, "")
	if k, _, err := LoadPublicKey(""); k != nil || err != nil {
		t.Fatalf("nothing set: %v %v", k, err)
	}
	t.Setenv(EnvPublicKey, EncodePublicKey(pub))
	if k, src, err := LoadPublicKey(""); err != nil || !k.Equal(pub) || src != EnvPublicKey {
		t.Fatalf("env: %v %q %v", k, src, err)
	}
	if k, src, err := LoadPublicKey(file); err != nil || !k.Equal(pub) || src != file {
		t.Fatalf("file: %v %q %v", k, src, err)
	}
	t.Setenv(EnvPublicKey, "bogus")
	if _, _, err := LoadPublicKey(""); err == nil {
		t.Fatal("a bogus key was accepted")
	}
}
