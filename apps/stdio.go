package apps

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpbroker/mcpbroker/apps/upstream"
)

// Isolation says which client sessions share a stdio app's process.
type Isolation string

const (
	// PerSession: a process for each client session.
	PerSession Isolation = "perSession"
	// PerSubject: a process for each user (token subject), shared by
	// that user's sessions.
	PerSubject Isolation = "perSubject"
	// Shared: one process for everyone.
	Shared Isolation = "shared"
)

// ErrTooManyProcesses means a stdio app runs as many processes as it may
// and none of them is idle.
var ErrTooManyProcesses = errors.New("the app runs as many server processes as it may (stdio.maxProcesses)")

// Back-off of restarts after crashes: the first restart is immediate, the
// next ones wait twice as long each time, up to the maximum; a process
// that ran a minute resets it.
const (
	restartBackoffStart = 250 * time.Millisecond
	restartBackoffMax   = 30 * time.Second
	stableRun           = time.Minute
)

// StdioOptions describe an app whose upstream is a local program speaking
// MCP on its standard streams.
type StdioOptions struct {
	Command string
	Args    []string
	// Env is the process's whole environment (KEY=value each).
	Env        []string
	WorkingDir string
	Isolation  Isolation
	// IdleTimeout stops a process no request used for that long (5m).
	IdleTimeout time.Duration
	// MaxProcesses bounds the app's running processes (default 100 for
	// perSession and perSubject, 1 for shared).
	MaxProcesses int
	// TokenEnv, when set, names the environment variable that carries a
	// token exchanged for the process's session or subject at start.
	TokenEnv string
	// MaxMessageBytes caps one message from the server.
	MaxMessageBytes int64
	// Events, when set, hears of each process started, crashed (ended
	// without being asked), stopped, and of each start refused by
	// MaxProcesses.
	Events func(event string)
}

// stdioPool runs a stdio app's processes, one per isolation key.
type stdioPool struct {
	opts StdioOptions
	log  *slog.Logger
	seq  atomic.Uint64 // perSession keys

	mu       sync.Mutex
	procs    map[string]*stdioProc
	starting int // processes being started, counted against the cap
	failures int // crashes in a row
	crashed  time.Time
	closed   bool
	janitor  bool

	wg sync.WaitGroup // one per running process, until reaped
}

// stdioProc is one running process and the sessions attached to it.
type stdioProc struct {
	key     string
	p       *upstream.Process
	refs    int
	started time.Time
}

func newStdioPool(o StdioOptions, log *slog.Logger) *stdioPool {
	if o.Isolation == "" {
		o.Isolation = PerSession
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	if o.MaxProcesses <= 0 {
		o.MaxProcesses = 100
		if o.Isolation == Shared {
			o.MaxProcesses = 1
		}
	}
	if o.Events == nil {
		o.Events = func(string) {}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &stdioPool{opts: o, log: log, procs: make(map[string]*stdioProc)}
}

// key picks the process a client session speaks to.
func (sp *stdioPool) key(p InitParams) string {
	switch sp.opts.Isolation {
	case Shared:
		return "shared"
	case PerSubject:
		return "subject " + p.Subject
	}
	if p.Stateless {
		// A request without a session: its subject's process, kept
		// until idle, rather than a process per request.
		return "subject " + p.Subject
	}
	return "session " + strconv.FormatUint(sp.seq.Add(1), 10)
}

// dial attaches a new upstream session to the process of the client
// session's key, starting it if none runs.
func (sp *stdioPool) dial(ctx context.Context, p InitParams, token upstream.TokenSource) (upstream.Transport, error) {
	key := sp.key(p)
	for {
		sp.mu.Lock()
		if sp.closed {
			sp.mu.Unlock()
			return nil, errors.New("the app was removed or the broker is stopping")
		}
		if pr, ok := sp.procs[key]; ok {
			select {
			case <-pr.p.Done():
				// Exited; its reaper removes it. Start another.
				delete(sp.procs, key)
			default:
				pr.refs++
				sp.mu.Unlock()
				return pr.p.NewSession(sp.releaser(pr)), nil
			}
		}
		if len(sp.procs)+sp.starting >= sp.opts.MaxProcesses && !sp.evictIdleLocked() {
			sp.mu.Unlock()
			sp.opts.Events("refused")
			return nil, fmt.Errorf("%w (%d)", ErrTooManyProcesses, sp.opts.MaxProcesses)
		}
		wait := sp.backoffLocked()
		if wait > 0 {
			sp.mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("restarting the server after %d crashes: %w", sp.failures, ctx.Err())
			case <-t.C:
			}
			continue
		}
		sp.starting++
		sp.mu.Unlock()
		proc, err := sp.start(ctx, key, token)
		sp.mu.Lock()
		sp.starting--
		if err != nil {
			sp.mu.Unlock()
			return nil, err
		}
		if _, ok := sp.procs[key]; ok || sp.closed {
			// Another session of the key started one meanwhile, or the app
			// is going: this one is not needed.
			sp.mu.Unlock()
			go proc.p.Stop(context.Background())
			continue
		}
		sp.procs[key] = proc
		proc.refs++
		sp.startJanitorLocked()
		sp.mu.Unlock()
		return proc.p.NewSession(sp.releaser(proc)), nil
	}
}

// start runs a new process for key; token, for the per-session and
// per-subject kinds with TokenEnv set, is asked for the token it gets.
func (sp *stdioPool) start(ctx context.Context, key string, token upstream.TokenSource) (*stdioProc, error) {
	env := sp.opts.Env
	if sp.opts.TokenEnv != "" && sp.opts.Isolation != Shared && token != nil {
		t, err := token(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", upstream.ErrCredentials, err)
		}
		env = append(env[:len(env):len(env)], sp.opts.TokenEnv+"="+t)
	}
	p, err := upstream.StartProcess(upstream.StdioOptions{
		Command: sp.opts.Command, Args: sp.opts.Args, Env: env, Dir: sp.opts.WorkingDir,
		MaxMessageBytes: sp.opts.MaxMessageBytes, Logger: sp.log,
	})
	if err != nil {
		return nil, err
	}
	sp.opts.Events("started")
	proc := &stdioProc{key: key, p: p, started: time.Now()}
	sp.wg.Add(1)
	go sp.reap(proc)
	return proc, nil
}

// reap forgets a process once it ended and counts a crash.
func (sp *stdioPool) reap(proc *stdioProc) {
	defer sp.wg.Done()
	<-proc.p.Done()
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.procs[proc.key] == proc {
		delete(sp.procs, proc.key)
	}
	if proc.p.Stopped() {
		sp.opts.Events("stopped")
		return
	}
	sp.opts.Events("crashed")
	if time.Since(proc.started) >= stableRun {
		sp.failures = 0
	}
	sp.failures++
	sp.crashed = time.Now()
}

// backoffLocked is how long a start must still wait after the latest
// crash.
func (sp *stdioPool) backoffLocked() time.Duration {
	if sp.failures <= 1 {
		return 0
	}
	d := restartBackoffStart << min(sp.failures-2, 10)
	d = min(d, restartBackoffMax)
	return time.Until(sp.crashed.Add(d))
}

// releaser is called when an upstream session on proc closes: a
// per-session process stops with its session; the others wait for their
// idle timeout.
func (sp *stdioPool) releaser(proc *stdioProc) func() {
	return func() {
		sp.mu.Lock()
		proc.refs--
		stop := proc.refs <= 0 && sp.opts.Isolation == PerSession && strings.HasPrefix(proc.key, "session ")
		if stop && sp.procs[proc.key] == proc {
			delete(sp.procs, proc.key)
		}
		sp.mu.Unlock()
		if stop {
			go proc.p.Stop(context.Background())
		}
	}
}

// evictIdleLocked stops one process no session uses, to make room.
func (sp *stdioPool) evictIdleLocked() bool {
	for key, pr := range sp.procs {
		if pr.refs <= 0 {
			delete(sp.procs, key)
			go pr.p.Stop(context.Background())
			return true
		}
	}
	return false
}

// startJanitorLocked starts the loop that stops idle processes.
func (sp *stdioPool) startJanitorLocked() {
	if sp.janitor {
		return
	}
	sp.janitor = true
	every := min(max(sp.opts.IdleTimeout/4, 10*time.Millisecond), 30*time.Second)
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for range t.C {
			sp.mu.Lock()
			if sp.closed {
				sp.mu.Unlock()
				return
			}
			var idle []*stdioProc
			for key, pr := range sp.procs {
				if d, quiet := pr.p.Idle(); quiet && d >= sp.opts.IdleTimeout {
					delete(sp.procs, key)
					idle = append(idle, pr)
				}
			}
			sp.mu.Unlock()
			for _, pr := range idle {
				sp.log.Info("stdio server idle; stopping it", "idle_timeout", sp.opts.IdleTimeout.String(), "sessions", pr.refs)
				go pr.p.Stop(context.Background())
			}
		}
	}()
}

// Running counts the app's live processes.
func (sp *stdioPool) running() int {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return len(sp.procs)
}

// close stops every process and waits for them to be reaped.
func (sp *stdioPool) close(ctx context.Context) {
	sp.mu.Lock()
	sp.closed = true
	procs := make([]*stdioProc, 0, len(sp.procs))
	for _, pr := range sp.procs {
		procs = append(procs, pr)
	}
	clear(sp.procs)
	sp.mu.Unlock()
	for _, pr := range procs {
		go pr.p.Stop(ctx)
	}
	done := make(chan struct{})
	go func() { sp.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
