package adminauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const tok = "0123456789abcdef0123456789abcdef"

func TestGuard(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	tests := []struct {
		name   string
		token  string
		dev    bool
		header string
		want   int
	}{
		{"token, right bearer", tok, false, "Bearer " + tok, 204},
		{"token, lower-case scheme", tok, false, "bearer " + tok, 204},
		{"token, no header", tok, false, "", 401},
		{"token, wrong token", tok, false, "Bearer " + strings.Repeat("x", len(tok)), 401},
		{"token, prefix of the token", tok, false, "Bearer " + tok[:20], 401},
		{"token, token plus more", tok, false, "Bearer " + tok + "x", 401},
		{"token, basic scheme", tok, false, "Basic " + tok, 401},
		{"token in dev mode still needs it", tok, true, "", 401},
		{"dev without token is open", "", true, "", 204},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := NewGuard(tt.token, tt.dev)
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			r := httptest.NewRequest("POST", "/api/v1/crash/slave", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			g.Wrap(ok).ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d", w.Code, tt.want)
			}
			if w.Code == 401 {
				var body struct{ Error string }
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error == "" {
					t.Fatalf("401 body %q is not a JSON error", w.Body.String())
				}
				if w.Header().Get("Content-Type") != "application/json" || w.Header().Get("WWW-Authenticate") == "" {
					t.Fatalf("401 headers %v", w.Header())
				}
			}
		})
	}
}

func TestNewGuard_NeedsTokenOutsideDev(t *testing.T) {
	if _, err := NewGuard("", false); !errors.Is(err, ErrNoToken) {
		t.Fatalf("err %v, want ErrNoToken", err)
	}
	if _, err := NewGuard("short", false); err == nil {
		t.Fatal("a 5-byte token was accepted")
	}
}

func TestCheckListen(t *testing.T) {
	tests := []struct {
		addr, token string
		ok          bool
	}{
		{"127.0.0.1:8000", "", true},
		{"localhost:8000", "", true},
		{"[::1]:8000", "", true},
		{"127.0.0.2:0", "", true},
		{":8000", "", false},
		{"0.0.0.0:8000", "", false},
		{"[::]:8000", "", false},
		{"10.1.2.3:8000", "", false},
		{"db.example:8000", "", false},
		{"0.0.0.0:8000", tok, true},
	}
	for _, tt := range tests {
		t.Run(tt.addr+"/"+tt.token, func(t *testing.T) {
			err := CheckListen(tt.addr, tt.token)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckListen(%q) = %v, want ok=%v", tt.addr, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrExposedWithoutToken) {
				t.Fatalf("error %v is not ErrExposedWithoutToken", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	private := filepath.Join(dir, "token")
	if err := os.WriteFile(private, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(dir, "shared")
	if err := os.WriteFile(shared, []byte(tok), 0o644); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, flag, envFile, env string
		want                     string
		wantErr                  string
	}{
		{"nothing", "", "", "", "", ""},
		{"flag file", private, "", "", tok, ""},
		{"env file", "", private, "", tok, ""},
		{"env value", "", "", " " + tok + " ", tok, ""},
		{"flag wins over env", private, "", "ignored-but-long-enough", tok, ""},
		{"group-readable file refused", shared, "", "", "", "mode 0644"},
		{"short token refused", short, "", "", "", "at least"},
		{"short env refused", "", "", "abc", "", "at least"},
		{"missing file", filepath.Join(dir, "nope"), "", "", "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvTokenFile, tt.envFile)
			t.Setenv(EnvToken, tt.env)
			got, err := Load(tt.flag)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Load = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
