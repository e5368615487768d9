package limit

import (
	"io"
	"net"
	"testing"
	"time"
)

// accepted dials l and reports whether the connection was admitted (kept
// open) rather than closed on arrival.
func accepted(t *testing.T, l net.Listener, source string) (net.Conn, bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	conn, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetReadDeadline(time.Now().Add(time.Second)) // a refused one is closed well before
	_, err = conn.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return conn, true
	}
	if err != io.EOF {
		t.Logf("read: %v", err)
	}
	return conn, false
}

// Connections are admitted within the total and per-address bounds, and a
// closed connection gives its slot back.
func TestListenerBounds(t *testing.T) {
	if ln, err := net.Listen("tcp", "127.0.0.2:0"); err != nil {
		t.Skipf("no second loopback address: %v", err)
	} else {
		ln.Close()
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(raw, 3, 2, nil)
	defer l.Close()
	server := make(chan net.Conn, 10) // held open, as a slow client's would be
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			server <- c
		}
	}()
	a1, ok1 := accepted(t, l, "127.0.0.2")
	_, ok2 := accepted(t, l, "127.0.0.2")
	_, ok3 := accepted(t, l, "127.0.0.2")
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("from one address: %v %v %v, want the third refused", ok1, ok2, ok3)
	}
	_, ok4 := accepted(t, l, "127.0.0.3")
	_, ok5 := accepted(t, l, "127.0.0.4")
	if !ok4 || ok5 {
		t.Fatalf("in all: %v %v, want the fourth refused", ok4, ok5)
	}
	if l.Refused() != 2 {
		t.Errorf("Refused() = %d, want 2", l.Refused())
	}
	a1.Close()
	time.Sleep(100 * time.Millisecond) // the server side notices
	for range 3 {
		c := <-server
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			c.Close()
		} else {
			server <- c
		}
	}
	if _, ok := accepted(t, l, "127.0.0.2"); !ok {
		t.Error("a closed connection did not give its slot back")
	}
}
