// Package pluginpb is the generated gRPC code of handler.proto, the wire
// contract between the worker and handler plugins. Do not use it directly:
// package pluginapi wraps it (GRPCClient, GRPCServer, Serve). Regenerate it
// with scripts/protoc.sh.
package pluginpb
