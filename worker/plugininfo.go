package worker

import "github.com/rideshare-dbaas/rideshare/internal/wire"

// checksummer is implemented by registries that know each handler's
// binary checksum (pluginhost.Host, from its manifest).
type checksummer interface {
	Checksum(handler string) string
}

// pluginInfos lists the registry's handlers for the worker's znode.
func pluginInfos(reg Registry) []wire.PluginInfo {
	if reg == nil {
		return nil
	}
	infos := reg.Infos()
	if len(infos) == 0 {
		return nil
	}
	sums, _ := reg.(checksummer)
	out := make([]wire.PluginInfo, 0, len(infos))
	for _, in := range infos {
		p := wire.PluginInfo{Name: in.Name, Version: in.Version}
		if sums != nil {
			p.SHA256 = sums.Checksum(in.Name)
		}
		out = append(out, p)
	}
	return out
}
