package upstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// ErrProcessExited means the upstream's process ended while a request
// waited for its answer, or before one was sent.
var ErrProcessExited = errors.New("the server process exited")

// Stopping a process: its standard input is closed (a well-behaved server
// exits then), then its process group gets SIGTERM, then SIGKILL.
const (
	stdinGrace = 500 * time.Millisecond
	termGrace  = 2 * time.Second
	// maxStderrLine bounds one logged line of a server's standard error.
	maxStderrLine = 4 << 10
)

// StdioOptions start one upstream server process.
type StdioOptions struct {
	// Command is the program; Args its arguments. Nothing goes through a
	// shell.
	Command string
	Args    []string
	// Env is the process's whole environment, KEY=value each; nothing of
	// the broker's own is passed unless it is here.
	Env []string
	// Dir is the working directory; "" the broker's.
	Dir string
	// MaxMessageBytes caps one line the server writes; a longer one ends
	// the process (a stream of newline-delimited JSON cannot be resynced
	// safely). Zero means DefaultMaxMessageBytes.
	MaxMessageBytes int64
	// Logger receives the server's standard error, line by line, and the
	// process's start and exit.
	Logger *slog.Logger
}

// Process is one running upstream server that speaks MCP on its standard
// streams (newline-delimited JSON-RPC). Several StdioSessions may share
// it: it hands out the request ids of all of them, so that answers and
// progress find their way back, and it initializes the server once. It
// runs in a process group of its own, so that stopping it stops whatever
// it started.
type Process struct {
	cmd      *exec.Cmd
	stdin    *os.File
	maxBytes int
	log      *slog.Logger

	ids atomic.Int64
	wmu sync.Mutex // one line at a time on stdin

	mu        sync.Mutex
	pending   map[string]*stdioCall
	sessions  map[*StdioSession]struct{}
	lastUsed  time.Time
	stopping  bool
	initMu    sync.Mutex // the first initialize; the others wait for it
	initReply *jsonrpc.Message
	initSent  bool // notifications/initialized went to the server

	done    chan struct{}
	exitErr error // why it ended; read after done
}

// stdioCall is a request waiting for its answer.
type stdioCall struct {
	onMessage func(*jsonrpc.Message)
	reply     chan *jsonrpc.Message
}

// StartProcess starts the server. It sends nothing: the first session's
// initialize goes to the server, the later sessions' are answered with
// its result.
func StartProcess(opts StdioOptions) (*Process, error) {
	if opts.Command == "" {
		return nil, errors.New("upstream: stdio: no command")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Process{
		maxBytes: DefaultMaxMessageBytes,
		log:      log,
		pending:  make(map[string]*stdioCall),
		sessions: make(map[*StdioSession]struct{}),
		lastUsed: time.Now(),
		done:     make(chan struct{}),
	}
	if opts.MaxMessageBytes > 0 {
		p.maxBytes = int(min(opts.MaxMessageBytes, 1<<30))
	}
	// Pipes of our own, not exec's: Wait then does not wait for the
	// readers, so a grandchild that keeps stdout open cannot hide the
	// server's exit.
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("upstream: stdio: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		closeAll(inR, inW)
		return nil, fmt.Errorf("upstream: stdio: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(inR, inW, outR, outW)
		return nil, fmt.Errorf("upstream: stdio: %w", err)
	}
	cmd := exec.Command(opts.Command, opts.Args...)
	cmd.Env = opts.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Dir = opts.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = processAttributes()
	if err := cmd.Start(); err != nil {
		closeAll(inR, inW, outR, outW, errR, errW)
		return nil, fmt.Errorf("upstream: stdio: start %s: %w", opts.Command, err)
	}
	closeAll(inR, outW, errW)
	p.cmd, p.stdin = cmd, inW
	log.Info("stdio server started", "pid", cmd.Process.Pid, "command", opts.Command)

	go p.readErrors(errR)
	go p.read(outR)
	go p.wait()
	return p, nil
}

func closeAll(files ...*os.File) {
	for _, f := range files {
		_ = f.Close()
	}
}

// Pid is the server's process id (and that of its process group).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has ended and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is why the process ended; nil before Done.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.exitErr
	default:
		return nil
	}
}

// Stopped reports whether Stop was called (an exit then is no crash).
func (p *Process) Stopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopping
}

// Idle reports how long no request was sent, and whether none waits.
func (p *Process) Idle() (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Since(p.lastUsed), len(p.pending) == 0
}

// NextID hands out request ids unique across the process's sessions.
func (p *Process) NextID() int64 { return p.ids.Add(1) }

// wait reaps the process, then its group's stragglers, then fails what
// still waits.
func (p *Process) wait() {
	err := p.cmd.Wait()
	// Whatever the server started dies with it.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	p.mu.Lock()
	stopping := p.stopping
	pending := p.pending
	p.pending = make(map[string]*stdioCall)
	p.mu.Unlock()
	switch {
	case stopping:
		p.exitErr = fmt.Errorf("%w: stopped by the broker", ErrProcessExited)
	case err != nil:
		p.exitErr = fmt.Errorf("%w: %v", ErrProcessExited, err)
	default:
		p.exitErr = fmt.Errorf("%w: exit status 0", ErrProcessExited)
	}
	if !stopping {
		p.log.Error("stdio server exited", "pid", p.cmd.Process.Pid, "error", p.exitErr, "calls_failed", len(pending))
	} else {
		p.log.Info("stdio server stopped", "pid", p.cmd.Process.Pid)
	}
	_ = p.stdin.Close()
	close(p.done)
}

// Stop ends the process: standard input closed, then SIGTERM to its
// group, then SIGKILL. It returns once the process is reaped or ctx ends.
func (p *Process) Stop(ctx context.Context) {
	p.mu.Lock()
	already := p.stopping
	p.stopping = true
	p.mu.Unlock()
	if !already {
		go p.terminate()
	}
	select {
	case <-p.done:
	case <-ctx.Done():
	}
}

func (p *Process) terminate() {
	p.wmu.Lock()
	_ = p.stdin.Close()
	p.wmu.Unlock()
	pid := p.cmd.Process.Pid
	for _, step := range []struct {
		grace time.Duration
		sig   syscall.Signal
	}{{stdinGrace, syscall.SIGTERM}, {termGrace, syscall.SIGKILL}} {
		select {
		case <-p.done:
			return
		case <-time.After(step.grace):
		}
		_ = syscall.Kill(-pid, step.sig)
	}
}

// readErrors logs the server's standard error, one bounded line each.
func (p *Process) readErrors(r *os.File) {
	defer r.Close()
	br := bufio.NewReaderSize(r, maxStderrLine)
	for {
		line, isPrefix, err := br.ReadLine()
		if len(line) > 0 {
			p.log.Info("stdio server stderr", "line", sanitize(string(line), maxStderrLine))
		}
		for isPrefix && err == nil {
			// The rest of an overlong line is dropped.
			_, isPrefix, err = br.ReadLine()
		}
		if err != nil {
			return
		}
	}
}

// read decodes the server's standard output and routes each message.
func (p *Process) read(r *os.File) {
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			return
		}
		line = append(line[:0], chunk...)
		for isPrefix {
			if len(line) > p.maxBytes {
				p.log.Error("stdio server wrote a message over the size limit; stopping it", "limit", p.maxBytes)
				p.Stop(context.Background())
				return
			}
			chunk, isPrefix, err = br.ReadLine()
			if err != nil {
				return
			}
			line = append(line, chunk...)
		}
		if len(line) > p.maxBytes {
			p.log.Error("stdio server wrote a message over the size limit; stopping it", "limit", p.maxBytes)
			p.Stop(context.Background())
			return
		}
		trimmed := bytes.TrimSpace(line)
		if len(trimmed) == 0 {
			continue
		}
		m, err := jsonrpc.Decode(trimmed)
		if err != nil {
			// Servers must write nothing else on stdout; some log there.
			p.log.Warn("stdio server wrote a line that is not a JSON-RPC message", "line", sanitize(string(trimmed), 256))
			continue
		}
		p.route(m)
	}
}

// route delivers one message from the server: an answer to its request;
// progress to the request whose id is its token; what else concerns a
// request to the one request waiting, if only one does; the rest to the
// sessions listening.
func (p *Process) route(m *jsonrpc.Message) {
	switch m.Kind() {
	case jsonrpc.KindResponse:
		p.mu.Lock()
		c, ok := p.pending[m.ID.Raw()]
		if ok {
			delete(p.pending, m.ID.Raw())
		}
		p.mu.Unlock()
		if ok {
			c.reply <- m
		} else {
			p.log.Debug("stdio server answered a request nobody waits for", "id", m.ID.Raw())
		}
		return
	case jsonrpc.KindInvalid:
		return
	}
	if m.Method == "notifications/progress" {
		if c := p.callOfProgress(m.Params); c != nil {
			c.onMessage(m)
			return
		}
	}
	p.mu.Lock()
	var only *stdioCall
	if len(p.pending) == 1 {
		for _, c := range p.pending {
			only = c
		}
	}
	var listeners []func(*jsonrpc.Message)
	if only == nil {
		for s := range p.sessions {
			if l := s.listener(); l != nil {
				listeners = append(listeners, l)
			}
		}
	}
	p.mu.Unlock()
	switch {
	case only != nil && only.onMessage != nil:
		only.onMessage(m)
	case m.Kind() == jsonrpc.KindRequest && len(listeners) != 1:
		// A request to the client that no one session can be told to
		// answer is refused, so the server does not wait for ever.
		resp := jsonrpc.NewErrorResponse(m.ID, jsonrpc.NewError(-32601, "no client can answer this request now"))
		_ = p.write(context.Background(), resp)
	default:
		for _, l := range listeners {
			l(m)
		}
	}
}

func (p *Process) callOfProgress(params json.RawMessage) *stdioCall {
	var v struct {
		ProgressToken json.RawMessage `json:"progressToken"`
	}
	if json.Unmarshal(params, &v) != nil || len(v.ProgressToken) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pending[string(bytes.TrimSpace(v.ProgressToken))]
}

// write sends one message as one line, giving up when ctx ends (a server
// that stops reading its input cannot block the broker).
func (p *Process) write(ctx context.Context, m *jsonrpc.Message) error {
	line := m.Append(make([]byte, 0, 64+len(m.Params)+len(m.Result)))
	line = append(line, '\n')
	p.wmu.Lock()
	defer p.wmu.Unlock()
	select {
	case <-p.done:
		return p.exitErr
	default:
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = p.stdin.SetWriteDeadline(deadline)
	} else {
		_ = p.stdin.SetWriteDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = p.stdin.SetWriteDeadline(time.Now()) })
	defer stop()
	n, err := p.stdin.Write(line)
	if err == nil {
		return nil
	}
	if n > 0 {
		// Half a line is on its way: the stream cannot carry another
		// message, so the process goes.
		p.log.Error("stdio server did not read a whole message in time; stopping it", "written", n, "of", len(line))
		go p.Stop(context.Background())
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return context.DeadlineExceeded
	}
	return fmt.Errorf("%w: writing its input: %v", ErrProcessExited, err)
}

// StdioSession is one client session's MCP session with a Process. The
// first session of a process initializes the server; the others are told
// its answer. Closing a session calls the release function it was made
// with, which decides whether the process goes on.
type StdioSession struct {
	p       *Process
	release func()
	closed  atomic.Bool
	version atomic.Pointer[string]

	mu     sync.Mutex
	listen func(*jsonrpc.Message)
}

var _ Transport = (*StdioSession)(nil)
var _ IDSource = (*StdioSession)(nil)

// NewSession attaches a session to the process; release is called once,
// at Close.
func (p *Process) NewSession(release func()) *StdioSession {
	s := &StdioSession{p: p, release: release}
	p.mu.Lock()
	p.sessions[s] = struct{}{}
	p.mu.Unlock()
	return s
}

// Process is the process the session speaks to.
func (s *StdioSession) Process() *Process { return s.p }

// NextID implements IDSource.
func (s *StdioSession) NextID() int64 { return s.p.NextID() }

func (s *StdioSession) listener() func(*jsonrpc.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listen
}

// dead is the error of a session whose process is gone: the caller opens
// a new one, as for an HTTP upstream that forgot its session.
func (s *StdioSession) dead() error {
	if s.closed.Load() {
		return fmt.Errorf("%w: the session was closed", ErrSessionNotFound)
	}
	select {
	case <-s.p.done:
		return fmt.Errorf("%w: %w", ErrSessionNotFound, s.p.exitErr)
	default:
		return nil
	}
}

// Call sends a request and waits for its answer. A second session's
// initialize is answered from the first's.
func (s *StdioSession) Call(ctx context.Context, msg *jsonrpc.Message, _ http.Header, onMessage func(*jsonrpc.Message)) (*jsonrpc.Message, error) {
	if err := s.dead(); err != nil {
		return nil, err
	}
	if msg.Method == methodInitialize {
		return s.initialize(ctx, msg, onMessage)
	}
	return s.call(ctx, msg, onMessage)
}

func (s *StdioSession) call(ctx context.Context, msg *jsonrpc.Message, onMessage func(*jsonrpc.Message)) (*jsonrpc.Message, error) {
	p := s.p
	c := &stdioCall{onMessage: onMessage, reply: make(chan *jsonrpc.Message, 1)}
	key := msg.ID.Raw()
	p.mu.Lock()
	if _, taken := p.pending[key]; taken {
		p.mu.Unlock()
		return nil, fmt.Errorf("upstream: call %s: request id %s already in flight", msg.Method, key)
	}
	p.pending[key] = c
	p.lastUsed = time.Now()
	p.mu.Unlock()
	forget := func() {
		p.mu.Lock()
		if p.pending[key] == c {
			delete(p.pending, key)
		}
		p.mu.Unlock()
	}
	if err := p.write(ctx, msg); err != nil {
		forget()
		return nil, fmt.Errorf("upstream: call %s: %w", msg.Method, err)
	}
	select {
	case m := <-c.reply:
		return m, nil
	case <-ctx.Done():
		forget()
		return nil, fmt.Errorf("upstream: call %s: %w", msg.Method, ctx.Err())
	case <-p.done:
		forget()
		select {
		case m := <-c.reply: // answered just before the end
			return m, nil
		default:
		}
		return nil, fmt.Errorf("upstream: call %s: %w", msg.Method, p.exitErr)
	}
}

// initialize sends the process's first initialize and tells the later
// sessions its result.
func (s *StdioSession) initialize(ctx context.Context, msg *jsonrpc.Message, onMessage func(*jsonrpc.Message)) (*jsonrpc.Message, error) {
	p := s.p
	p.initMu.Lock()
	defer p.initMu.Unlock()
	if p.initReply == nil {
		resp, err := s.call(ctx, msg, onMessage)
		if err != nil {
			return nil, err
		}
		if resp.Error != nil {
			return resp, nil
		}
		p.initReply = resp
	}
	return &jsonrpc.Message{ID: msg.ID, Result: p.initReply.Result}, nil
}

// Send delivers a notification or a response; the process hears
// notifications/initialized once.
func (s *StdioSession) Send(ctx context.Context, msg *jsonrpc.Message, _ http.Header) error {
	if err := s.dead(); err != nil {
		return err
	}
	p := s.p
	if msg.Method == "notifications/initialized" {
		p.initMu.Lock()
		defer p.initMu.Unlock()
		if p.initSent {
			return nil
		}
		p.initSent = true
	}
	return sendError(msg, p.write(ctx, msg))
}

// Listen receives what the server sends outside any request until ctx
// ends or the process does.
func (s *StdioSession) Listen(ctx context.Context, _ http.Header, onMessage func(*jsonrpc.Message)) error {
	if err := s.dead(); err != nil {
		return err
	}
	s.mu.Lock()
	s.listen = onMessage
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.listen = nil
		s.mu.Unlock()
	}()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.p.done:
		return fmt.Errorf("%w: %w", ErrStreamEnded, s.p.exitErr)
	}
}

// Close detaches the session from its process and releases it.
func (s *StdioSession) Close(context.Context, http.Header) error {
	if s.closed.Swap(true) {
		return nil
	}
	s.p.mu.Lock()
	delete(s.p.sessions, s)
	s.p.mu.Unlock()
	if s.release != nil {
		s.release()
	}
	return nil
}

// ID is empty: a process lives in this broker and cannot be reached from
// another.
func (s *StdioSession) ID() string { return "" }

// SetID does nothing (see ID).
func (s *StdioSession) SetID(string) {}

// ProtocolVersion is the version the server answered initialize with.
func (s *StdioSession) ProtocolVersion() string {
	if v := s.version.Load(); v != nil {
		return *v
	}
	return ""
}

// SetProtocolVersion records the negotiated version.
func (s *StdioSession) SetProtocolVersion(v string) { s.version.Store(&v) }
