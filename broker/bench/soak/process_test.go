//go:build linux

package soak

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stopTimeout bounds a process's graceful stop, after SIGTERM: more than
// the broker's default http.shutdownTimeout (10s).
const stopTimeout = 20 * time.Second

// buildBinary builds cmd/mcpbroker into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "mcpbroker")
	cmd := exec.Command("go", "build", "-o", out, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, msg)
	}
	return out
}

// freeAddress returns a loopback address that was free a moment ago.
func freeAddress(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// A process is a server this test started: the sample upstream or a
// replica.
type process struct {
	name   string
	cmd    *exec.Cmd
	log    string        // its standard output and error
	exited chan struct{} // closed once cmd has been waited for
	err    error         // how it exited, once exited is closed
}

// startProcess runs binary with args, its output in a file of the test's
// temporary directory, and waits until it accepts connections at addr.
// The kernel kills it if the test binary dies without running its
// cleanups; otherwise it is stopped when the test ends, if it still runs.
func startProcess(t *testing.T, name, addr, binary string, args ...string) *process {
	t.Helper()
	p := &process{name: name, log: filepath.Join(t.TempDir(), name+".log"), exited: make(chan struct{})}
	logFile, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child has its own descriptor
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited: // stopped by the test, which reported how
		default:
			if err := p.stop(); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("%s exited on start (%v):\n%s", name, p.err, p.tail(20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: nothing listening at %s after 20 s:\n%s", name, addr, p.tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the process to exit, killing it after
// stopTimeout. It is an error unless the process then exits 0; a process
// that had exited already, before it was stopped, is one too.
func (p *process) stop() error {
	select {
	case <-p.exited:
		return fmt.Errorf("exited before it was stopped (%v):\n%s", p.cmd.ProcessState, p.tail(20))
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		var exit *exec.ExitError
		if errors.As(p.err, &exit) {
			return fmt.Errorf("exited with %v after SIGTERM:\n%s", exit.ProcessState, p.tail(20))
		}
		return p.err
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("still running %v after SIGTERM: killed", stopTimeout)
	}
}

// tail is the last n lines of the process's output.
func (p *process) tail(n int) string {
	data, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(string(bytes.TrimRight(data, "\n")), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
