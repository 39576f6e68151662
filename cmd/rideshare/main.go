// Command rideshare is the operators' CLI over the orchestrator's API
// (status, workers, crash, scale, plugins, events, watch) and the plugin
// signing tool (plugin keygen|sign|verify|pubkey). See internal/opscli.
package main

import (
	"os"

	"github.com/rideshare-dbaas/rideshare/internal/opscli"
)

func main() { os.Exit(opscli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
