package testenv

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/rideshare-dbaas/rideshare/internal/images"
)

func dockerRequired() bool { return os.Getenv("RIDESHARE_REQUIRE_DOCKER") != "" }

// RequireDocker returns a client of the Docker daemon (DOCKER_HOST or the
// local socket), closed at the test's end. Where no daemon answers it
// skips the test, or fails it under RIDESHARE_REQUIRE_DOCKER=1 (which
// `make test` sets when `docker info` works).
func RequireDocker(t testing.TB) *client.Client {
	t.Helper()
	fail := func(why string) {
		msg := "integration test needs a Docker daemon (" + why + "); run `make test` on a machine where `docker info` works"
		if dockerRequired() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		fail(err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		fail(err.Error())
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// WorkerImage builds the worker image from the built binaries (Bin's
// folder) under a tag of this test's own, through the same code as `make
// images` and the orchestrator's fallback, and removes the tag at the end:
// a concurrent `make images` elsewhere cannot change what the test runs,
// and nothing is left behind (the layers are shared with rideshare/worker:dev
// through the build cache, so this costs a context upload).
func WorkerImage(t testing.TB, cli *client.Client) string {
	t.Helper()
	bin := Bin(t, "worker")
	tag := "test-" + Name(t)
	if len(tag) > 128 {
		tag = tag[:128]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ref := images.Ref("worker", tag)
	if _, err := images.Build(ctx, cli, images.Spec{Component: "worker", BinDir: filepath.Dir(bin), Tags: []string{tag}, Version: ImageVersion(t)}, nil); err != nil {
		t.Fatalf("building %s: %v", ref, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := images.Remove(ctx, cli, ref); err != nil {
			t.Errorf("removing %s: %v", ref, err)
		}
	})
	return ref
}

// StackContainers lists the containers labelled rideshare.stack=stack, in
// any state, as "name (state)".
func StackContainers(t testing.TB, cli *client.Client, stack string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", "rideshare.stack="+stack)})
	if err != nil {
		t.Fatalf("listing containers: %v", err)
	}
	out := make([]string, 0, len(res.Items))
	for _, c := range res.Items {
		out = append(out, strings.TrimPrefix(strings.Join(c.Names, ","), "/")+" ("+string(c.State)+")")
	}
	return out
}

// ImageVersion is the version label of the images t builds: its own, so
// that what another test or a concurrent make images leaves dangling is
// never taken for t's.
func ImageVersion(t testing.TB) string {
	v := "test-" + Name(t)
	if len(v) > 128 {
		v = v[:128]
	}
	return v
}

// DanglingImages lists the untagged images of ours built since since with
// the version label version (ImageVersion): what a test's builds and
// removals left behind.
func DanglingImages(t testing.TB, cli *client.Client, since time.Time, version string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cli.ImageList(ctx, client.ImageListOptions{
		Filters: client.Filters{}.Add("dangling", "true").Add("label", images.Label).
			Add("label", "org.opencontainers.image.version="+version)})
	if err != nil {
		t.Fatalf("listing images: %v", err)
	}
	var out []string
	for _, im := range res.Items {
		if im.Created >= since.Unix() {
			out = append(out, im.ID)
		}
	}
	return out
}
