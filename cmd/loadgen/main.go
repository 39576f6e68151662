// Command loadgen drives RideShare's public API with concurrent clients
// for a bounded time and prints throughput and latency per route
// (internal/loadgen; results in docs/benchmarks.md).
//
//	loadgen -url http://127.0.0.1:8080 -c 16 -d 20s -json out.json
//	loadgen -users-url http://127.0.0.1:8081 -rides-url http://127.0.0.1:8082 -c 1
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/rideshare-dbaas/rideshare/internal/cmdutil"
	"github.com/rideshare-dbaas/rideshare/internal/loadgen"
)

func main() { os.Exit(run()) }

func run() int {
	var opts loadgen.Options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	opts.RegisterFlags(fs)
	jsonFile := fs.String("json", "", "also write the report as JSON to this file")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "loadgen: unexpected arguments %q\n", fs.Args())
		return 2
	}
	g, err := loadgen.New(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		return 2
	}
	ctx, stop := cmdutil.SignalContext()
	defer stop()
	rep, err := g.Run(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		return 1
	}
	if err := rep.WriteTable(os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		return 1
	}
	if *jsonFile != "" {
		f, err := os.Create(*jsonFile)
		if err == nil {
			err = rep.WriteJSON(f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
			return 1
		}
	}
	return 0
}
