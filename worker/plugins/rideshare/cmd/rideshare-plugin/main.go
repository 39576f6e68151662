// Command rideshare-plugin serves the rideshare handler (package rideshare)
// as a go-plugin binary that the worker loads from its plugin directory.
package main

import (
	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
	"github.com/rideshare-dbaas/rideshare/worker/plugins/rideshare"
)

func main() { pluginapi.Serve(rideshare.New()) }
