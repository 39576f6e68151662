package cmdutil

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAMQPURL(t *testing.T) {
	dir := t.TempDir()
	const stackURL = "amqp://rideshare-x:secret@127.0.0.1:5672/rideshare-x"
	private := filepath.Join(dir, "amqp.url")
	if err := os.WriteFile(private, []byte(stackURL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open.url")
	if err := os.WriteFile(open, []byte(stackURL), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, flagURL, flagFile, envFile, env string
		want                                  string
		wantErr                               string
	}{
		{"flag", stackURL, "", "", "", stackURL, ""},
		{"flag file", "", private, "", "", stackURL, ""},
		{"env file", "", "", private, "", stackURL, ""},
		{"env", "", "", "", stackURL, stackURL, ""},
		{"flag file wins over env", "", private, "", "amqp://other:x@127.0.0.1/", stackURL, ""},
		{"nothing", "", "", "", "", "", "no RabbitMQ URL"},
		{"guest", "amqp://guest:guest@127.0.0.1:5672/", "", "", "", "", "guest"},
		{"no user means guest", "amqp://127.0.0.1:5672/", "", "", "", "", "guest"},
		{"readable file", "", open, "", "", "", "mode 0644"},
		{"not a URL", "http://x", "", "", "", "", "not an AMQP URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvAMQPURLFile, tt.envFile)
			t.Setenv(EnvAMQPURL, tt.env)
			got, err := AMQPURL(tt.flagURL, tt.flagFile)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				if tt.wantErr == "guest" && !errors.Is(err, ErrGuest) {
					t.Fatalf("err %v is not ErrGuest", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("AMQPURL = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
