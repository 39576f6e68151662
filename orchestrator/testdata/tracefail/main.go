// Command tracefail is a test plugin for the request-tracing test
// (orchestrator/trace_test.go): it takes the stats plugin's place and
// fails every call, logging the failure with the call's request id through
// pluginapi.Logger, as a plugin author would.
package main

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/rideshare-dbaas/rideshare/worker/pluginapi"
)

// Message is the log line and the error of every call.
const Message = "tracefail: failing on purpose"

type handler struct{}

func (handler) Info(context.Context) (pluginapi.Info, error) {
	return pluginapi.Info{
		Name:    "stats",
		Version: "tracefail",
		Ops: []pluginapi.Op{
			{Name: "stats.rides_per_area", Kind: pluginapi.Read},
			{Name: "stats.top_users", Kind: pluginapi.Read},
		},
	}, nil
}

func (handler) Execute(ctx context.Context, op string, _ json.RawMessage, _ pluginapi.DB) (json.RawMessage, error) {
	pluginapi.Logger(ctx).Error(Message, "op", op)
	return nil, errors.New(Message)
}

func main() { pluginapi.Serve(handler{}) }
