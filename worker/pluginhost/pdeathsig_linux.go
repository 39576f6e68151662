package pluginhost

import (
	"os/exec"
	"syscall"
)

// setPdeathsig has the kernel SIGKILL the plugin when the thread that
// started it dies: with the host SIGKILLed, its plugins die with it.
func setPdeathsig(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
