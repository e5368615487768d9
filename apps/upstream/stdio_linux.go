package upstream

import "syscall"

// processAttributes puts a server in a process group of its own, so that
// stopping it stops its children, and has the kernel kill it if the
// broker dies without stopping it.
func processAttributes() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
