package redistest

import "syscall"

// processAttributes has the kernel kill the server when the test binary
// dies without running its cleanups (a timeout, os.Exit, SIGKILL). The
// kernel watches the thread that started the server; Go keeps its threads
// for the life of the process unless a goroutine that locked one exits.
func processAttributes() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
