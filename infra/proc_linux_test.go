package infra_test

import (
	"os/exec"
	"syscall"
)

// dieWithTest kills cmd when the test binary dies, even by a panic that skips the cleanups.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
