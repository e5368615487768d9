package broker_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// dialFrom opens a connection to addr from the loopback address source.
func dialFrom(t *testing.T, source, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", source, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// closedByServer reports whether the server closes conn within limit,
// draining whatever it answers first.
func closedByServer(conn net.Conn, limit time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, conn)
	var timeout net.Error
	return !(errors.As(err, &timeout) && timeout.Timeout())
}

// Clients that hold connections open cannot hold the broker: a body that
// trickles in is cut once http.readBodyTimeout has passed, connections
// from one address beyond http.maxConnectionsPerAddress are closed on
// arrival, and meanwhile other clients are served, long responses and
// event streams included.
func TestSlowClientsAreCut(t *testing.T) {
	if _, err := net.Listen("tcp", "127.0.0.2:0"); err != nil {
		t.Skipf("no second loopback address: %v", err)
	}
	brokerURL, _, _ := sampleBrokerWith(t, scenario(t, "slow-clients"))
	addr := strings.TrimPrefix(brokerURL, "http://")

	t.Run("slow bodies", func(t *testing.T) {
		const n = 6
		var wg sync.WaitGroup
		cut := make([]bool, n)
		for i := range n {
			conn := dialFrom(t, "127.0.0.2", addr)
			fmt.Fprintf(conn, "POST /mcp HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: 1000\r\n\r\n{", addr)
			wg.Add(1)
			go func() {
				defer wg.Done()
				stop := make(chan struct{})
				defer close(stop)
				go func() { // a byte every 200 ms, for up to 20 s
					for range 100 {
						select {
						case <-stop:
							return
						case <-time.After(200 * time.Millisecond):
						}
						if _, err := conn.Write([]byte(" ")); err != nil {
							return
						}
					}
				}()
				cut[i] = closedByServer(conn, 20*time.Second)
			}()
		}
		served := brokerServes(t, brokerURL)
		wg.Wait()
		for i, c := range cut {
			if !c {
				t.Errorf("slow body %d was not cut", i)
			}
		}
		if !served {
			t.Error("a legitimate request was not served beside the slow bodies")
		}
	})

	t.Run("connections per address", func(t *testing.T) {
		var held []net.Conn
		for range 8 {
			held = append(held, dialFrom(t, "127.0.0.3", addr))
		}
		extra := dialFrom(t, "127.0.0.3", addr)
		if !closedByServer(extra, 5*time.Second) {
			t.Error("a connection beyond the address's limit was kept open")
		}
		if !brokerServes(t, brokerURL) {
			t.Error("another address was not served while one address was at its limit")
		}
		for _, c := range held {
			c.Close()
		}
	})

	t.Run("long answers and streams outlive the body timeout", func(t *testing.T) {
		c := newWireClient(t, brokerURL+"/mcp")
		c.initialize(`{}`)
		resp := c.post(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"ledger_slow_count","arguments":{"n":20,"delay_ms":150},"_meta":{"progressToken":1}}}`)
		msgs := readMessages(t, resp)
		if len(msgs) == 0 || msgs[len(msgs)-1]["result"] == nil {
			t.Fatalf("a call answered over 3 s: %v", msgs)
		}

		req, _ := http.NewRequest(http.MethodGet, brokerURL+"/mcp", nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Mcp-Session-Id", c.session)
		req.Header.Set("MCP-Protocol-Version", c.version)
		get, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer get.Body.Close()
		if get.StatusCode != http.StatusOK {
			t.Fatalf("GET stream: %d", get.StatusCode)
		}
		ended := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, bufio.NewReader(get.Body))
			ended <- err
		}()
		select {
		case err := <-ended:
			t.Errorf("the GET stream ended after less than 3 s: %v", err)
		case <-time.After(3 * time.Second):
		}
	})
}

// sampleBrokerWith runs the sample upstream and a broker in front of it
// from config, whose one placeholder is the upstream's address.
func sampleBrokerWith(t *testing.T, config string) (brokerURL string, upstream *exec.Cmd, upstreamAddr string) {
	t.Helper()
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	upstreamAddr = freeAddress(t)
	upstream = startProcess(t, upstreamAddr, bin, "upstream", "sample", "--listen", upstreamAddr)
	return startBroker(t, config, upstreamAddr), upstream, upstreamAddr
}

// brokerServes reports whether the broker answers a plain request.
func brokerServes(t *testing.T, brokerURL string) bool {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(brokerURL + "/.well-known/oauth-protected-resource/mcp")
	if err != nil {
		t.Logf("legitimate request: %v", err)
		return false
	}
	resp.Body.Close()
	return resp.StatusCode < 500
}
