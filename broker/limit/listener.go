package limit

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Listener admits connections within two bounds: in all, and per client
// address. A connection beyond either is closed as soon as it is accepted,
// before a byte of it is read, so clients that hold connections open
// (slowly sending, or not at all) cannot take every file descriptor or
// crowd out other clients.
type Listener struct {
	net.Listener
	max, perAddress int
	log             *slog.Logger

	mu     sync.Mutex
	open   int
	byAddr map[string]int

	// refused counts the connections closed unserved; lastLog rate-limits
	// the warning about them.
	refused atomic.Int64
	lastLog atomic.Int64
}

// NewListener bounds ln to max open connections, perAddress of them from
// one address.
func NewListener(ln net.Listener, max, perAddress int, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{Listener: ln, max: max, perAddress: perAddress, log: log, byAddr: make(map[string]int)}
}

// Accept returns the next connection within the bounds.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		address := hostOf(conn.RemoteAddr())
		if l.admit(address) {
			return &limitedConn{Conn: conn, release: func() { l.leave(address) }}, nil
		}
		l.noteRefusal(address) // counted before the client can see the close
		conn.Close()
	}
}

// Refused is the number of connections closed unserved so far.
func (l *Listener) Refused() int64 { return l.refused.Load() }

func (l *Listener) admit(address string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.max || l.byAddr[address] >= l.perAddress {
		return false
	}
	l.open++
	l.byAddr[address]++
	return true
}

func (l *Listener) leave(address string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byAddr[address]--; l.byAddr[address] <= 0 {
		delete(l.byAddr, address)
	}
}

// noteRefusal logs refusals at most once a minute, with the count so far.
func (l *Listener) noteRefusal(address string) {
	n := l.refused.Add(1)
	now := time.Now().Unix()
	last := l.lastLog.Load()
	if now-last < 60 || !l.lastLog.CompareAndSwap(last, now) {
		return
	}
	l.log.Warn("connections refused: too many open", "address", address, "refused_total", n,
		"max_connections", l.max, "max_connections_per_address", l.perAddress)
}

func hostOf(addr net.Addr) string {
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return host
}

// limitedConn gives its slot back once, when closed.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
