package pluginapi

import (
	"context"

	hclog "github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/metadata"
)

// MetadataRequestID is the gRPC metadata key that carries the request id
// of a call from the worker to a plugin: one value on Execute, one value
// per call (in order) on Plan.
const MetadataRequestID = "x-request-id"

// LogRequestID is the log attribute that holds the request id, in the
// worker's and the plugins' lines alike.
const LogRequestID = "request_id"

type requestIDKey struct{}

// WithRequestID returns ctx carrying the id of the client request a
// handler call serves. The worker sets it on the contexts it hands
// handlers, in process or through a plugin; a plugin's handler finds it
// with RequestID.
func WithRequestID(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the id of the client request the handler call with
// ctx serves (the X-Request-ID the client or the first service gave it),
// or "" when the worker did not pass one. Log it with the handler's lines
// about the call (Logger does).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// Logger returns the plugin's logger (hclog's default, which Serve sets:
// JSON on stderr, forwarded into the worker's log) with the call's
// request_id, for a handler's lines about one call.
func Logger(ctx context.Context) hclog.Logger {
	l := hclog.Default()
	if id := RequestID(ctx); id != "" {
		l = l.With(LogRequestID, id)
	}
	return l
}

// outgoingRequestIDs puts ids in ctx's outgoing gRPC metadata, unless all
// are empty.
func outgoingRequestIDs(ctx context.Context, ids ...string) context.Context {
	for _, id := range ids {
		if id != "" {
			kv := make([]string, 0, 2*len(ids))
			for _, id := range ids {
				kv = append(kv, MetadataRequestID, id)
			}
			return metadata.AppendToOutgoingContext(ctx, kv...)
		}
	}
	return ctx
}

// incomingRequestIDs returns the request ids of ctx's incoming gRPC
// metadata.
func incomingRequestIDs(ctx context.Context) []string {
	// ValueFromIncomingContext copies only this key's values, not the
	// whole metadata map as FromIncomingContext does.
	return metadata.ValueFromIncomingContext(ctx, MetadataRequestID)
}
