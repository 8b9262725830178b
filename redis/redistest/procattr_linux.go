package redistest

import (
	"os/exec"
	"syscall"
)

// orphanGuard makes the kernel kill the server if the test binary dies without its cleanups (a
// -timeout panic, a kill), so no redis-server outlives the run.
func orphanGuard(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
