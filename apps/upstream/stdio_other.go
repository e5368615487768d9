//go:build unix && !linux

package upstream

import "syscall"

// processAttributes puts a server in a process group of its own, so that
// stopping it stops its children.
func processAttributes() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
