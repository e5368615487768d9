package apps

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"
)

// ErrUnavailable means an app failed recently and is not being tried until
// its back-off ends, so callers get an error at once instead of waiting out
// the timeout again.
var ErrUnavailable = errors.New("apps: upstream unavailable")

// Back-off after transport failures: doubling from the first to the last.
const (
	firstBackoff = 500 * time.Millisecond
	maxBackoff   = 30 * time.Second
)

// health tracks whether an app's upstream answers at the transport level.
type health struct {
	mu       sync.Mutex
	failures int
	until    time.Time
	last     error
}

// check reports ErrUnavailable while the app is backing off.
func (h *health) check(now time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Before(h.until) {
		return fmt.Errorf("%w (last error: %w)", ErrUnavailable, h.last)
	}
	return nil
}

// observe records the outcome of a request to the upstream. Only failures
// to reach it count; JSON-RPC errors are answers.
func (h *health) observe(err error, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.failures, h.until, h.last = 0, time.Time{}, nil
		return
	}
	if !unreachable(err) {
		return
	}
	h.failures++
	backoff := firstBackoff << min(h.failures-1, 8)
	if backoff > maxBackoff {
		backoff = maxBackoff
	}
	h.until, h.last = now.Add(backoff), err
}

// unreachable says whether err means the upstream could not be reached or
// did not answer in time.
func unreachable(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr)
}

// Available reports ErrUnavailable while the app is backing off after
// failing to answer, without trying it.
func (a *App) Available() error { return a.health.check(time.Now()) }

// Reachable reports whether the app's upstream can be reached now: it is
// not backing off after failures, and its address accepts a connection.
// It sends nothing over the connection, so checking readiness costs the
// upstream no MCP session.
func (a *App) Reachable(ctx context.Context) error {
	if err := a.health.check(time.Now()); err != nil {
		return err
	}
	u, err := url.Parse(a.URL)
	if err != nil {
		return err
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return fmt.Errorf("apps: %s: %w", a.Name, err)
	}
	return conn.Close()
}
