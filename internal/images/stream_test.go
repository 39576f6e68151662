package images

import (
	"log/slog"
	"strings"
	"testing"
)

func TestReadBuildStream(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		name, stream, id, err string
	}{
		{"success", `{"stream":"Step 1/2 : FROM scratch\n"}` + "\n" + `{"aux":{"ID":"sha256:abc"}}` + "\n" + `{"stream":"Successfully built abc\n"}`, "sha256:abc", ""},
		{"errorDetail", `{"stream":"Step 2/2 : COPY x /\n"}` + "\n" + `{"errorDetail":{"message":"COPY failed: no x"},"error":"COPY failed: no x"}`, "", "the builder failed: COPY failed: no x"},
		{"error only", `{"error":"boom"}`, "", "the builder failed: boom"},
		{"no image", `{"stream":"nothing\n"}`, "", "names no image"},
		{"garbage", `{"stream":`, "", "reading the build output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := readBuildStream(strings.NewReader(tt.stream), log)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || id != tt.id {
				t.Fatalf("got %q, %v; want %q", id, err, tt.id)
			}
		})
	}
}
