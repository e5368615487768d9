//go:build !linux

package bench

import (
	"errors"
	"syscall"
	"time"
)

// hopProcessAttributes: without Linux's parent-death signal, a hop
// outlives a benchmark that dies without running its cleanups.
func hopProcessAttributes() *syscall.SysProcAttr { return nil }

// cpuMeasurable: the hops' CPU time is not reported, and not checked.
const cpuMeasurable = false

func processCPU(int) (time.Duration, error) {
	return 0, errors.New("reading another process's CPU time needs Linux's /proc")
}
