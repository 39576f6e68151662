// Command images builds RideShare's container images from bin/ (make
// images): rideshare/orchestrator, rideshare/worker, rideshare/users and
// rideshare/rides, each tagged with every --tag. See package images.
//
//	images [--bin bin] [--tag dev,REV] [--revision REV] [--created TIME] [COMPONENT...]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/moby/moby/client"
	"github.com/rideshare-dbaas/rideshare/internal/cmdutil"
	"github.com/rideshare-dbaas/rideshare/internal/images"
)

func main() {
	var (
		spec     images.Spec
		tags     string
		logLevel string
		printDF  bool
	)
	flag.StringVar(&spec.BinDir, "bin", "bin", "folder of the built binaries (and plugins/)")
	flag.StringVar(&tags, "tag", images.DefaultTag, "tags to give every image, comma-separated")
	flag.StringVar(&spec.Version, "version", images.DefaultTag, "OCI label org.opencontainers.image.version")
	flag.StringVar(&spec.Revision, "revision", "", "OCI label org.opencontainers.image.revision (git revision)")
	flag.StringVar(&spec.Created, "created", "", "OCI label org.opencontainers.image.created (RFC 3339; use the commit's time so the same inputs give the same image)")
	flag.StringVar(&spec.Source, "source", "https://github.com/rideshare-dbaas/rideshare", "OCI label org.opencontainers.image.source")
	flag.StringVar(&logLevel, "log-level", "info", "debug (the builder's output), info, warn or error")
	flag.BoolVar(&printDF, "print-dockerfile", false, "print each image's Dockerfile instead of building")
	if err := cmdutil.ParseFlags(flag.CommandLine, "images", os.Args[1:]); err != nil {
		cmdutil.Exit("images", err, 2)
	}
	log, err := cmdutil.Logger("images", logLevel)
	if err != nil {
		cmdutil.Exit("images", err, 2)
	}
	spec.Tags = strings.Split(tags, ",")
	comps := flag.Args()
	if len(comps) == 0 {
		comps = images.Components
	}
	if printDF {
		for _, c := range comps {
			spec.Component = c
			fmt.Printf("# %s\n%s\n", images.Ref(c, spec.Tags[0]), spec.Dockerfile())
		}
		return
	}
	ctx, stop := cmdutil.SignalContext()
	defer stop()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		cmdutil.Exit("images", err, 1)
	}
	defer cli.Close()
	for _, c := range comps {
		spec.Component = c
		start := time.Now()
		bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		id, err := images.Build(bctx, cli, spec, log)
		cancel()
		if err != nil {
			stop()
			cmdutil.Exit("images", err, 1)
		}
		fmt.Printf("%-34s %s  (%.1fs)\n", images.Ref(c, spec.Tags[0]), strings.TrimPrefix(id, "sha256:")[:12], time.Since(start).Seconds())
	}
}
