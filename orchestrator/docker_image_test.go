package orchestrator_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/images"
	"github.com/rideshare-dbaas/rideshare/internal/testenv"
	"github.com/rideshare-dbaas/rideshare/orchestrator"
)

// A docker runtime whose worker image is missing builds it from the
// worker binary's folder (the SDK's image build, as make images does), and
// without that folder says to run make images.
func TestDocker_BuildsAMissingWorkerImage(t *testing.T) {
	cli := testenv.RequireDocker(t)
	bin := filepath.Dir(testenv.Bin(t, "worker"))
	name := testenv.Name(t)
	ref := images.Ref("worker", "test-"+name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if err := images.Remove(context.Background(), cli, ref); err != nil {
			t.Error(err)
		}
	})
	opts := orchestrator.DockerOptions{Stack: name, Image: ref, DataDir: t.TempDir(), Client: cli, Logger: testLogger(t)}
	if _, err := orchestrator.NewDocker(ctx, opts); err == nil || !strings.Contains(err.Error(), "make images") {
		t.Fatalf("without BuildFrom: %v, want an error saying to run make images", err)
	}
	opts.BuildFrom = bin
	rt, err := orchestrator.NewDocker(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(true)
	if ok, err := images.Exists(ctx, cli, ref); !ok || err != nil {
		t.Fatalf("%s not built: %v", ref, err)
	}
	// Only our own images are built: another name is an error.
	opts.Image = "example.org/other:1"
	if _, err := orchestrator.NewDocker(ctx, opts); err == nil || !strings.Contains(err.Error(), "make images") {
		t.Fatalf("a foreign missing image: %v", err)
	}
}
