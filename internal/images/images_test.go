package images_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/images"
	"github.com/rideshare-dbaas/rideshare/internal/testenv"
)

// mustBinDir is the built bin/ (make build): the worker and its plugins.
func mustBinDir(t *testing.T) string {
	t.Helper()
	return filepath.Dir(testenv.Bin(t, "worker"))
}

// The same files give the same context bytes (sorted entries, fixed times
// and owners): the first half of "the same inputs give the same image".
func TestContextIsDeterministic(t *testing.T) {
	bin := mustBinDir(t)
	s := images.Spec{Component: "worker", BinDir: bin, Version: "v", Revision: "r", Created: "2026-01-01T00:00:00Z"}
	var a, b bytes.Buffer
	if err := s.WriteContext(&a); err != nil {
		t.Fatal(err)
	}
	// Touching the files changes nothing.
	now := time.Now()
	_ = os.Chtimes(filepath.Join(bin, "worker"), now, now)
	if err := s.WriteContext(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two contexts of the same files differ")
	}
	var names []string
	var first time.Time
	tr := tar.NewReader(&a)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if first.IsZero() {
			first = h.ModTime
		}
		if !h.ModTime.Equal(first) || h.ModTime.After(now.Add(-time.Hour)) || h.Uid != 0 {
			t.Errorf("%s: time %v uid %d", h.Name, h.ModTime, h.Uid)
		}
	}
	for _, want := range []string{"Dockerfile", "rootfs/worker", "rootfs/plugins/plugins.json", "rootfs/plugins/rideshare-plugin", "owned/data/", "owned/tmp/"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("context lacks %s: %v", want, names)
		}
	}
}

func TestSpecRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "users"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		spec images.Spec
		err  string
	}{
		{"unknown component", images.Spec{Component: "db", BinDir: dir}, "unknown component"},
		{"missing binary", images.Spec{Component: "rides", BinDir: dir}, "run make build"},
		{"not an executable", images.Spec{Component: "users", BinDir: dir}, "run make build"},
		{"worker without plugins", images.Spec{Component: "worker", BinDir: t.TempDir()}, "run make build"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.WriteContext(io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err = %v, want %q", err, tt.err)
			}
		})
	}
}

// A build the daemon's builder fails answers ImageBuild with no error: the
// failure is in the output stream, and buildTar must report it.
func TestBuildFailureInTheStream(t *testing.T) {
	cli := testenv.RequireDocker(t)
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	df := []byte("FROM scratch\nCOPY missing-file /\n")
	_ = tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(df)), Typeflag: tar.TypeReg})
	_, _ = tw.Write(df)
	_ = tw.Close()
	ref := images.Ref("worker", "test-"+testenv.Name(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := images.BuildContext(ctx, cli, &ctxTar, []string{ref}, nil)
	if err == nil || !strings.Contains(err.Error(), "the builder failed") || !strings.Contains(err.Error(), "missing-file") {
		t.Fatalf("err = %v, want the builder's failure about missing-file", err)
	}
	if ok, _ := images.Exists(ctx, cli, ref); ok {
		t.Fatalf("%s exists after a failed build", ref)
	}
}

// Building the same spec twice gives the same image (the builder's cache
// keys on the files' contents), and a rebuild leaves nothing dangling.
func TestBuildTwiceSameImage(t *testing.T) {
	cli := testenv.RequireDocker(t)
	began := time.Now()
	tag := "test-" + testenv.Name(t)
	s := images.Spec{Component: "worker", BinDir: mustBinDir(t), Tags: []string{tag}, Version: testenv.ImageVersion(t), Revision: "r1", Created: "2026-01-01T00:00:00Z"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if err := images.Remove(context.Background(), cli, images.Ref("worker", tag)); err != nil {
			t.Error(err)
		}
		if left := testenv.DanglingImages(t, cli, began, testenv.ImageVersion(t)); len(left) > 0 {
			t.Errorf("dangling images left: %v", left)
		}
	})
	id1, err := images.Build(ctx, cli, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := images.Build(ctx, cli, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id1 != id2 {
		t.Fatalf("same inputs, two images: %s and %s", id1, id2)
	}
	in, err := cli.ImageInspect(ctx, id1)
	if err != nil {
		t.Fatal(err)
	}
	cfg := in.Config
	if cfg.User != images.User || strings.Join(cfg.Entrypoint, " ") != "/worker" ||
		cfg.Labels["org.opencontainers.image.revision"] != "r1" || cfg.Labels[images.Label] != "worker" {
		t.Fatalf("image config: user %q entrypoint %v labels %v", cfg.User, cfg.Entrypoint, cfg.Labels)
	}
	// Another revision: a new image; the old one, untagged, is removed.
	s.Revision = "r2"
	id3, err := images.Build(ctx, cli, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id3 == id1 {
		t.Fatal("a new revision label gave the same image")
	}
	if _, err := cli.ImageInspect(ctx, id1); err == nil {
		t.Fatalf("the replaced image %s is still there", id1)
	}
}
