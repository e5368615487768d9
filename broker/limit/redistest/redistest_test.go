package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The server answers, loses its data on Restart by default and keeps it
// with AppendOnly, stays on one address across restarts, and refuses
// connections once stopped.
func TestRestart(t *testing.T) {
	tests := []struct {
		name     string
		opts     []Option
		wantKept bool
	}{
		{"no persistence", nil, false},
		{"append-only file", []Option{AppendOnly()}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			srv := Start(t, tt.opts...)
			client := srv.Client()
			if err := client.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			addr := srv.Addr()

			srv.Stop()
			srv.Stop() // a second stop does nothing
			if conn, err := net.Dial("tcp", addr); err == nil {
				conn.Close()
				t.Fatal("a stopped server still accepts connections")
			}

			srv.Restart()
			if srv.Addr() != addr {
				t.Errorf("address after restart %s, want %s", srv.Addr(), addr)
			}
			got, err := client.Get(ctx, "k").Result()
			switch {
			case tt.wantKept && got != "v":
				t.Errorf("after restart GET k = %q, %v; want v", got, err)
			case !tt.wantKept && !errors.Is(err, redis.Nil):
				t.Errorf("after restart GET k = %q, %v; want no key", got, err)
			}
		})
	}
}

// Directives given with Args reach the server.
func TestArgs(t *testing.T) {
	srv := Start(t, Args("--maxmemory-policy", "allkeys-lru"))
	got, err := srv.Client().ConfigGet(context.Background(), "maxmemory-policy").Result()
	if err != nil {
		t.Fatal(err)
	}
	if got["maxmemory-policy"] != "allkeys-lru" {
		t.Errorf("maxmemory-policy = %q, want allkeys-lru", got["maxmemory-policy"])
	}
}

// However the test that started it ends, the server process ends with it:
// a failed test's cleanup stops it, and when the test binary dies (a panic,
// os.Exit) the kernel kills it. Each way is run in a child copy of this
// test binary.
func TestNoProcessLeftBehind(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not on PATH")
	}
	for _, ending := range []string{"fail", "panic", "exit"} {
		t.Run(ending, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperEnding$", "-test.v")
			cmd.Env = append(os.Environ(), "REDISTEST_HELPER_ENDING="+ending)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the child test passed; want it to end by %s:\n%s", ending, out)
			}
			pid, addr := 0, ""
			sc := bufio.NewScanner(strings.NewReader(string(out)))
			for sc.Scan() {
				if _, err := fmt.Sscanf(sc.Text(), "redis-server pid %d addr %s", &pid, &addr); err == nil {
					break
				}
			}
			if pid == 0 {
				t.Fatalf("the child test did not start a server:\n%s", out)
			}
			if ending == "fail" && !strings.Contains(string(out), "after the failed test, the server runs: false") {
				t.Errorf("the failed test's cleanup did not stop the server:\n%s", out)
			}
			// The kernel's signal and the exit of every thread of the
			// server take a moment; the port closes with the last thread.
			deadline := time.Now().Add(10 * time.Second)
			for alive(pid) || accepts(addr) {
				if time.Now().After(deadline) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					t.Fatalf("redis-server %d (%s) still runs after its test ended by %s", pid, addr, ending)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestHelperEnding runs only as the child of TestNoProcessLeftBehind.
func TestHelperEnding(t *testing.T) {
	ending := os.Getenv("REDISTEST_HELPER_ENDING")
	if ending == "" {
		t.Skip("runs as a child of TestNoProcessLeftBehind")
	}
	if ending == "fail" {
		// The binary lives on after the failed test, so only the test's
		// cleanup can have stopped the server.
		pid := 0
		t.Run("failing", func(t *testing.T) {
			srv := Start(t)
			pid = srv.cmd.Process.Pid
			fmt.Printf("redis-server pid %d addr %s\n", pid, srv.Addr())
			t.Fatal("failing on purpose")
		})
		fmt.Printf("after the failed test, the server runs: %v\n", alive(pid))
		return
	}
	srv := Start(t)
	fmt.Printf("redis-server pid %d addr %s\n", srv.cmd.Process.Pid, srv.Addr())
	switch ending {
	case "panic":
		panic("panicking on purpose")
	case "exit":
		os.Exit(3) // no cleanups run
	}
}

// alive reports whether pid is a process that has not exited (a zombie
// awaiting its reaper has exited).
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may contain spaces, so look after ')'.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

func accepts(addr string) bool {
	conn, err := net.Dial("tcp", addr)
	if err == nil {
		conn.Close()
	}
	return err == nil
}
