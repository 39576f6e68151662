// Command stats-plugin serves the stats handler (package stats) as a
// go-plugin binary that the worker loads from its plugin directory.
package main

import (
	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
	"github.com/rideshare-dbaas/rideshare/worker/plugins/stats"
)

func main() { pluginapi.Serve(stats.New()) }
