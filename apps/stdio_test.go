package apps

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/apps/upstream"
)

// sleeper is a stdio app whose program only waits: these tests are about
// the processes, not what they say.
func sleeper(t *testing.T, o StdioOptions) (*stdioPool, *eventLog) {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	if o.Command == "" {
		o.Command, o.Args = sh, []string{"-c", "exec sleep 300"}
	}
	o.Env = append(o.Env, "PATH="+os.Getenv("PATH"))
	events := &eventLog{}
	o.Events = events.add
	sp := newStdioPool(o, nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sp.close(ctx)
	})
	return sp, events
}

type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) count(e string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, got := range l.events {
		if got == e {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dial(t *testing.T, sp *stdioPool, subject string, token upstream.TokenSource) *upstream.StdioSession {
	t.Helper()
	tr, err := sp.dial(context.Background(), InitParams{Subject: subject}, token)
	if err != nil {
		t.Fatal(err)
	}
	return tr.(*upstream.StdioSession)
}

// perSession: a process per session, stopped when the session closes.
func TestStdioPerSession(t *testing.T) {
	sp, events := sleeper(t, StdioOptions{Isolation: PerSession})
	a, b := dial(t, sp, "alice", nil), dial(t, sp, "alice", nil)
	if a.Process() == b.Process() || sp.running() != 2 {
		t.Fatalf("two sessions share a perSession process (running %d)", sp.running())
	}
	_ = a.Close(context.Background(), nil)
	waitFor(t, "the closed session's process to stop", func() bool { return events.count("stopped") == 1 })
	if sp.running() != 1 || a.Process().Err() == nil || b.Process().Err() != nil {
		t.Errorf("after one close: running %d", sp.running())
	}
}

// perSubject: one process per user; shared: one for all.
func TestStdioPerSubjectAndShared(t *testing.T) {
	sp, _ := sleeper(t, StdioOptions{Isolation: PerSubject})
	a1, a2, b := dial(t, sp, "alice", nil), dial(t, sp, "alice", nil), dial(t, sp, "bob", nil)
	if a1.Process() != a2.Process() || a1.Process() == b.Process() {
		t.Error("perSubject: want alice's sessions on one process and bob's on another")
	}
	_ = a1.Close(context.Background(), nil)
	_ = a2.Close(context.Background(), nil)
	if a1.Process().Err() != nil {
		t.Error("perSubject: the process stopped with its last session; it waits for its idle timeout")
	}
	shared, _ := sleeper(t, StdioOptions{Isolation: Shared})
	if dial(t, shared, "alice", nil).Process() != dial(t, shared, "bob", nil).Process() || shared.running() != 1 {
		t.Error("shared: want one process")
	}
}

// maxProcesses refuses a start beyond the bound, unless a process no
// session uses can make room.
func TestStdioMaxProcesses(t *testing.T) {
	sp, events := sleeper(t, StdioOptions{Isolation: PerSubject, MaxProcesses: 2})
	dial(t, sp, "a", nil)
	b := dial(t, sp, "b", nil)
	_, err := sp.dial(context.Background(), InitParams{Subject: "c"}, nil)
	if !errors.Is(err, ErrTooManyProcesses) || events.count("refused") != 1 {
		t.Fatalf("third process: want ErrTooManyProcesses, got %v", err)
	}
	_ = b.Close(context.Background(), nil)
	c := dial(t, sp, "c", nil)
	if sp.running() != 2 {
		t.Errorf("running %d, want 2", sp.running())
	}
	waitFor(t, "b's idle process to make room", func() bool { return b.Process().Err() != nil })
	_ = c
}

// A process no request used for its idle timeout stops; the next call
// of its session finds it gone and a new one starts.
func TestStdioIdleTimeout(t *testing.T) {
	sp, events := sleeper(t, StdioOptions{Isolation: PerSession, IdleTimeout: 50 * time.Millisecond})
	s := dial(t, sp, "", nil)
	// The stop is counted just after the process is reaped.
	waitFor(t, "the idle process to stop", func() bool { return s.Process().Err() != nil && events.count("stopped") == 1 && sp.running() == 0 })
	if events.count("stopped") != 1 || events.count("crashed") != 0 || sp.running() != 0 {
		t.Errorf("events %v, running %d", events.events, sp.running())
	}
}

// Crashes are restarted at once the first time, then with growing waits.
func TestStdioCrashBackoff(t *testing.T) {
	sp, events := sleeper(t, StdioOptions{Isolation: Shared, Command: "/bin/sh", Args: []string{"-c", "exit 7"}})
	for i := range 3 {
		s := dial(t, sp, "", nil)
		waitFor(t, "the crash", func() bool { return events.count("crashed") == i+1 })
		if !strings.Contains(s.Process().Err().Error(), "exit status 7") {
			t.Errorf("crash %d: %v", i, s.Process().Err())
		}
	}
	sp.mu.Lock()
	wait := sp.backoffLocked()
	sp.mu.Unlock()
	if wait <= 0 {
		t.Errorf("after three crashes in a row the next start does not wait")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := sp.dial(ctx, InitParams{}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a start during the back-off with a short deadline: %v", err)
	}
}

// tokenEnv: a perSubject process gets its user's token in the variable
// named, asked for when it starts.
func TestStdioTokenEnv(t *testing.T) {
	out := filepath.Join(t.TempDir(), "token")
	sp, _ := sleeper(t, StdioOptions{Isolation: PerSubject, TokenEnv: "MCP_TOKEN",
		Command: "/bin/sh", Args: []string{"-c", `printf %s "$MCP_TOKEN" > ` + out + `; exec sleep 300`}})
	dial(t, sp, "alice", func(context.Context) (string, error) { return "alice-token", nil })
	waitFor(t, "the token file", func() bool { b, _ := os.ReadFile(out); return string(b) == "alice-token" })
	failing := func(context.Context) (string, error) { return "", errors.New("exchange refused") }
	if _, err := sp.dial(context.Background(), InitParams{Subject: "bob"}, failing); !errors.Is(err, upstream.ErrCredentials) {
		t.Errorf("a token that cannot be had: %v", err)
	}
}

// close stops every process and waits until they are reaped.
func TestStdioPoolClose(t *testing.T) {
	sp, _ := sleeper(t, StdioOptions{Isolation: PerSubject})
	var procs []*upstream.Process
	for _, who := range []string{"a", "b", "c"} {
		procs = append(procs, dial(t, sp, who, nil).Process())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sp.close(ctx)
	for i, p := range procs {
		if p.Err() == nil {
			t.Errorf("process %d still running after close", i)
		}
	}
	if _, err := sp.dial(context.Background(), InitParams{Subject: "d"}, nil); err == nil {
		t.Error("a closed pool started a process")
	}
}
