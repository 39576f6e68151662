package pluginapi_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedCodeIsFresh regenerates pluginpb from handler.proto into a
// temporary directory with scripts/protoc.sh (pinned versions) and fails
// when the committed files differ.
func TestGeneratedCodeIsFresh(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		if os.Getenv("RIDESHARE_REQUIRE_SERVERS") != "" {
			t.Fatal("protoc is not installed and RIDESHARE_REQUIRE_SERVERS is set: run scripts/protoc.sh setup")
		}
		t.Skip("protoc is not installed: run scripts/protoc.sh setup to check that worker/pluginapi/pluginpb is fresh")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "protoc.sh"), "gen", out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/protoc.sh gen: %v\n%s", err, b)
	}
	for _, name := range []string{"handler.pb.go", "handler_grpc.pb.go"} {
		fresh, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join("pluginpb", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("worker/pluginapi/pluginpb/%s is stale: run scripts/protoc.sh and commit the result", name)
		}
	}
}
