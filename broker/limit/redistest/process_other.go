//go:build !linux

package redistest

import "syscall"

// processAttributes: without Linux's parent-death signal, a server
// outlives a test binary that dies without running its cleanups.
func processAttributes() *syscall.SysProcAttr { return nil }
