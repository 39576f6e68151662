package pluginapi

import (
	"context"
	"errors"

	plugin "github.com/hashicorp/go-plugin"
	"github.com/rideshare-dbaas/rideshare/worker/pluginapi/pluginpb"
	"google.golang.org/grpc"
)

// Handshake is shared by the worker and every handler plugin. It is a UX
// check, not security (that is the manifest's SHA-256 and AutoMTLS): it
// makes a plugin binary run by hand say so instead of waiting silently.
var Handshake = plugin.HandshakeConfig{
	// ProtocolVersion is the default; VersionedPlugins is what negotiates.
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "RIDESHARE_HANDLER_PLUGIN",
	MagicCookieValue: "5b1e3c0a-handler",
}

// ProtocolVersion is the version of handler.proto. Bump it (and add an
// entry to VersionedPlugins, keeping the old one while old plugins must
// still load) on every breaking change of the wire contract.
const ProtocolVersion = 1

// PluginName is the name a handler is dispensed under.
const PluginName = "handler"

// VersionedPlugins is the host's plugin set per protocol version: go-plugin
// picks the highest version both sides have.
var VersionedPlugins = map[int]plugin.PluginSet{
	1: {PluginName: &HandlerPlugin{}},
}

// HandlerPlugin is the go-plugin glue for a Handler: Impl on the plugin
// side, nothing on the host side. gRPC only.
type HandlerPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Handler
}

var _ plugin.GRPCPlugin = (*HandlerPlugin)(nil)

// GRPCServer registers the Handler service (plugin side).
func (p *HandlerPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("pluginapi: HandlerPlugin without Impl")
	}
	pluginpb.RegisterHandlerServer(s, NewGRPCServer(p.Impl, broker))
	return nil
}

// GRPCClient returns the host-side Handler (a *GRPCClient) and opens the
// DB service the plugin calls back.
func (p *HandlerPlugin) GRPCClient(ctx context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return NewGRPCClient(ctx, broker, c)
}
