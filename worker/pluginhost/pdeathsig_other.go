//go:build !linux

package pluginhost

import "os/exec"

// setPdeathsig: only Linux has a parent-death signal; elsewhere the
// plugin's own parent watchdog (pluginapi.Serve) ends orphans.
func setPdeathsig(*exec.Cmd) {}
