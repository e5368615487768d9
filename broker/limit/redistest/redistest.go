// Package redistest runs a real redis-server for tests: on a free port of
// 127.0.0.1, in the test's temporary directory, stopped (and waited for)
// when the test ends, whether it passed, failed or panicked. A test that
// cannot find redis-server on PATH is skipped; .ci/setup installs it.
//
//	srv := redistest.Start(t)
//	client := srv.Client()
//
// By default the server keeps nothing on disk (--save ""); with
// AppendOnly it writes every command to its append-only file, so Restart
// brings the data back, as a production Redis with AOF would.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

const (
	// startTimeout bounds the wait for a started server to answer PING.
	startTimeout = 10 * time.Second
	// stopTimeout bounds the wait for SIGTERM before SIGKILL.
	stopTimeout = 10 * time.Second
	logName     = "redis-server.log"
)

// Option changes how the server runs.
type Option func(*settings)

type settings struct {
	appendOnly bool
	args       []string
}

// AppendOnly makes the server log every write to its append-only file,
// flushed before the write is acknowledged (--appendonly yes
// --appendfsync always), so that Restart keeps the data.
func AppendOnly() Option {
	return func(s *settings) { s.appendOnly = true }
}

// Args adds redis-server command-line directives, such as
// Args("--maxmemory", "1mb").
func Args(args ...string) Option {
	return func(s *settings) { s.args = append(s.args, args...) }
}

// Server is one redis-server process.
type Server struct {
	tb     testing.TB
	binary string
	dir    string
	args   []string

	mu     sync.Mutex
	port   int
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has been waited for
}

// Start runs redis-server and returns once it answers PING. The server is
// stopped in tb.Cleanup.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	binary, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Skipf("redistest: redis-server is not on PATH (.ci/setup installs it): %v", err)
	}
	var set settings
	for _, opt := range opts {
		opt(&set)
	}
	// The directory is created before the stop is registered, so that
	// cleanups, which run last-in first-out, stop the server first.
	s := &Server{tb: tb, binary: binary, dir: tb.TempDir()}
	tb.Cleanup(s.Stop)

	s.args = []string{"--bind", "127.0.0.1", "--dir", s.dir, "--save", ""}
	if set.appendOnly {
		s.args = append(s.args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		s.args = append(s.args, "--appendonly", "no")
	}
	s.args = append(s.args, set.args...)

	// A free port can be taken by someone else before the server binds
	// it; then another is tried.
	for attempt := 1; ; attempt++ {
		s.port = freePort(tb)
		err := s.start()
		if err == nil {
			return s
		}
		if !errors.Is(err, errPortTaken) || attempt == 5 {
			tb.Fatalf("redistest: %v", err)
		}
	}
}

// Addr is the server's host:port.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Client returns a new client of the server, with a connection pool of its
// own (as a separate replica would have), closed in tb.Cleanup. It honours
// its contexts' deadlines (ContextTimeoutEnabled).
func (s *Server) Client() *redis.Client {
	client := redis.NewClient(&redis.Options{
		Addr:                  s.Addr(),
		ContextTimeoutEnabled: true,
		DialTimeout:           time.Second,
		DisableIdentity:       true, // CLIENT SETINFO needs Redis 7.2
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
	s.tb.Cleanup(func() { client.Close() })
	return client
}

// Stop stops the server (SIGTERM, then SIGKILL if it does not exit) and
// waits for it. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop()
}

// Restart stops the server if it runs and starts it again on the same
// port, with the same directory and options.
func (s *Server) Restart() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop()
	if err := s.startLocked(); err != nil {
		s.tb.Fatalf("redistest: restart: %v", err)
	}
}

var errPortTaken = errors.New("port taken")

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startLocked()
}

func (s *Server) startLocked() error {
	logFile, err := os.OpenFile(filepath.Join(s.dir, logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	logStart, _ := logFile.Seek(0, 2)

	cmd := exec.Command(s.binary, append([]string{"--port", strconv.Itoa(s.port)}, s.args...)...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = processAttributes()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.binary, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited

	address := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			s.cmd, s.exited = nil, nil
			output := s.logSince(logStart)
			if strings.Contains(output, "Address already in use") {
				return fmt.Errorf("%w: %d", errPortTaken, s.port)
			}
			return fmt.Errorf("redis-server exited on start (%v):\n%s", cmd.ProcessState, output)
		default:
		}
		if ping(address) == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("redis-server on %s did not answer PING within %v:\n%s", address, startTimeout, s.logSince(logStart))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Server) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd, s.exited = nil, nil
}

// logSince returns what the server logged from offset on.
func (s *Server) logSince(offset int64) string {
	data, err := os.ReadFile(filepath.Join(s.dir, logName))
	if err != nil || int64(len(data)) < offset {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(data[offset:])
}

// ping sends PING over a new connection and expects PONG.
func ping(address string) error {
	conn, err := net.DialTimeout("tcp", address, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.Equal(line, []byte("+PONG\r\n")) {
		return fmt.Errorf("PING answered %q", line) // still loading its data
	}
	return nil
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("redistest: find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
