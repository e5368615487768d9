package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"syscall"
	"time"
)

// hopProcessAttributes has the kernel kill the hop when the benchmark's
// process dies without running its cleanups (a timeout, os.Exit,
// SIGKILL). The kernel watches the thread that started the hop; Go keeps
// its threads for the life of the process unless a goroutine that locked
// one exits.
func hopProcessAttributes() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// cpuMeasurable: processCPU reads the kernel's accounting.
const cpuMeasurable = true

// processCPU returns the CPU time process pid has used, user and system:
// the sum over its threads of the first field of
// /proc/<pid>/task/<tid>/schedstat, the kernel's sum_exec_runtime, in
// nanoseconds.
//
// Not utime+stime of /proc/<pid>/stat: those are clock ticks, 10 ms at
// 100 Hz. Over a 3 s benchmark that keeps the hop about one core busy,
// ticks would do (about 300 of them), but a test's few calls take the hop
// a few milliseconds, often less than one tick, and read as 0.
//
// What the sum misses: a thread that exits between two readings takes
// its time with it (neither hop locks a goroutine to a thread, the only
// way a Go thread exits), and a thread on a CPU as it is read has its
// current slice counted only up to the scheduler's last update. The
// benchmark reads before and after its load, while the hop is idle.
func processCPU(pid int) (time.Duration, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	threads, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, t := range threads {
		data, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread exited since the directory was read
		}
		if err != nil {
			return 0, err
		}
		field, _, _ := bytes.Cut(data, []byte(" "))
		ns, err := strconv.ParseInt(string(field), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s/%s/schedstat: %w", dir, t.Name(), err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}
