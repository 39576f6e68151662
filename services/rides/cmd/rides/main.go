// Command rides runs the RideShare rides service.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // --timezone works without the host's zoneinfo

	"github.com/rideshare-dbaas/rideshare/internal/cmdutil"
	"github.com/rideshare-dbaas/rideshare/internal/httpx"
	"github.com/rideshare-dbaas/rideshare/services/rides"
)

func main() { os.Exit(run()) }

func run() int {
	var opts rides.Options
	fs := flag.NewFlagSet("rides", flag.ContinueOnError)
	opts.RegisterFlags(fs)
	if err := cmdutil.ParseFlags(fs, "rides", os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "rides: %v\n", err)
		}
		return 2
	}
	opts.Logger = httpx.NewLogger(os.Stderr, "rides")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	svc, err := rides.New(opts)
	if err != nil {
		opts.Logger.Error("start", "err", err)
		return 1
	}
	if err := svc.Run(ctx); err != nil {
		opts.Logger.Error("run", "err", err)
		return 1
	}
	return 0
}
