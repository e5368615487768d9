package provider

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"
)

// guardEndpoints are every method and path the provider serves; each is
// tried with the Host and Origin of a case.
var guardEndpoints = []struct {
	name   string
	method string
	path   func(o Options) string
	body   string
}{
	{"POST stream", http.MethodPost, func(o Options) string { return o.StreamPath }, initializeBody(1, "2025-06-18", "")},
	{"GET stream", http.MethodGet, func(o Options) string { return o.StreamPath }, ""},
	{"DELETE stream", http.MethodDelete, func(o Options) string { return o.StreamPath }, ""},
	{"GET legacy stream", http.MethodGet, func(o Options) string { return o.SSEPath }, ""},
	{"POST legacy message", http.MethodPost, func(o Options) string { return o.MessagePath + "?sessionId=x" }, `{"jsonrpc":"2.0","method":"n"}`},
}

// guardStatus sends one request and returns its status, without waiting for
// a stream to end.
func guardStatus(t *testing.T, h *harness, method, path, body, host, origin string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	c := call{ctx: ctx, method: method, path: path, body: body, subject: "alice", host: host, origin: origin}
	resp := h.do(c)
	resp.Body.Close()
	return resp.StatusCode
}

func TestHostAndOriginGuard(t *testing.T) {
	type tc struct {
		name    string
		host    string // "" keeps the real one
		origin  string
		allowed bool
	}
	loopback := func(port string) []tc {
		return []tc{
			{"plain", "", "", true},
			{"localhost host", "localhost:" + port, "", true},
			{"LOCALHOST host", "LOCALHOST:" + port, "", true},
			{"127.0.0.1 host", "127.0.0.1:" + port, "", true},
			{"other loopback address", "127.0.0.2:" + port, "", true},
			{"ipv6 loopback host", "[::1]:" + port, "", true},
			{"localhost without port", "localhost", "", true},
			{"foreign host", "evil.example.com", "", false},
			{"foreign host with port", "evil.example.com:" + port, "", false},
			{"rebinding-style host", "localhost.evil.example.com:" + port, "", false},
			{"dotted loopback name", "127.0.0.1.nip.io:" + port, "", false},
			{"private address", "192.168.1.10:" + port, "", false},
			{"foreign origin", "", "http://evil.example.com", false},
			{"foreign origin on our port", "", "http://evil.example.com:" + port, false},
			{"localhost origin", "", "http://localhost:" + port, true},
			{"127.0.0.1 origin", "", "http://127.0.0.1:" + port, true},
			{"ipv6 loopback origin", "", "http://[::1]:" + port, true},
			{"https localhost origin", "", "https://localhost:" + port, true},
			{"null origin", "", "null", false},
			{"file origin", "", "file://", false},
			{"chrome extension origin", "", "chrome-extension://abcdef", false},
			{"rebinding-style origin", "", "http://localhost.evil.example.com:" + port, false},
			{"userinfo origin", "", "http://localhost:" + port + "@evil.example.com", false},
			{"foreign host and same origin", "evil.example.com:" + port, "http://evil.example.com:" + port, false},
		}
	}
	groups := []struct {
		name   string
		change func(o *Options)
		cases  func(port string) []tc
	}{
		{"loopback listener, no allow-lists", nil, loopback},
		{"allowed origins", func(o *Options) { o.AllowedOrigins = []string{"https://app.example.com/"} }, func(port string) []tc {
			return []tc{
				{"listed origin", "", "https://app.example.com", true},
				{"listed origin, other case", "", "https://APP.example.com", true},
				{"listed origin, other scheme", "", "http://app.example.com", false},
				{"listed origin, other port", "", "https://app.example.com:8443", false},
				{"loopback origin not listed", "", "http://localhost:" + port, false},
				{"foreign origin", "", "http://evil.example.com", false},
				{"no origin", "", "", true},
				{"foreign host", "evil.example.com", "https://app.example.com", false},
			}
		}},
		{"allowed hosts", func(o *Options) { o.AllowedHosts = []string{"mcp.example.com"} }, func(port string) []tc {
			return []tc{
				{"listed host", "mcp.example.com", "", true},
				{"listed host with port", "mcp.example.com:" + port, "", true},
				{"listed host, other case", "MCP.example.com", "", true},
				{"unlisted host", "evil.example.com", "", false},
				{"suffix of a listed host", "evil-mcp.example.com", "", false},
				{"same origin on a listed host", "mcp.example.com:" + port, "http://mcp.example.com:" + port, true},
				{"foreign origin on a listed host", "mcp.example.com", "http://evil.example.com", false},
			}
		}},
		{"public listener, no allow-lists", func(o *Options) { o.ListenAddress = "0.0.0.0:8080" }, func(port string) []tc {
			return []tc{
				{"any host", "mcp.example.com", "", true},
				{"foreign host", "evil.example.com", "", true},
				{"same origin", "mcp.example.com", "https://mcp.example.com", true},
				{"foreign origin", "mcp.example.com", "https://evil.example.com", false},
				{"null origin", "mcp.example.com", "null", false},
			}
		}},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			h := newHarness(t, g.change)
			_, port, _ := net.SplitHostPort(h.srv.Listener.Addr().String())
			for _, c := range g.cases(port) {
				for _, e := range guardEndpoints {
					t.Run(c.name+"/"+e.name, func(t *testing.T) {
						got := guardStatus(t, h, e.method, e.path(h.opts), e.body, c.host, c.origin)
						if c.allowed && got == http.StatusForbidden {
							t.Errorf("Host %q Origin %q refused", c.host, c.origin)
						}
						if !c.allowed && got != http.StatusForbidden {
							t.Errorf("Host %q Origin %q: %d, want 403", c.host, c.origin, got)
						}
					})
				}
			}
		})
	}
}

func TestGuardRunsBeforeAdmission(t *testing.T) {
	h := newHarness(t, nil)
	resp, body := h.doBody(call{host: "evil.example.com", body: initializeBody(1, "2025-06-18", ""), header: http.Header{"X-Test-Deny": {"1"}}})
	wantStatus(t, resp, body, http.StatusForbidden)
	wantRPCError(t, body, -32000)
	select {
	case s := <-h.d.closed:
		t.Errorf("a session was opened: %v", s.ID)
	case <-time.After(10 * time.Millisecond):
	}
}

// TestOriginAllowListIsExclusive: with AllowedOrigins configured, an
// origin not on the list is refused. The same-origin shortcut compares the
// Origin with the Host header, which a DNS-rebinding page controls when no
// host allow-list applies: the page at http://evil.example.com (resolving
// to the broker) sends Host evil.example.com and Origin
// http://evil.example.com.
func TestOriginAllowListIsExclusive(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.ListenAddress = "10.0.0.5:443"
		o.AllowedOrigins = []string{"https://app.example.com"}
	})
	for _, e := range guardEndpoints {
		t.Run(e.name, func(t *testing.T) {
			got := guardStatus(t, h, e.method, e.path(h.opts), e.body, "evil.example.com", "http://evil.example.com")
			if got != http.StatusForbidden {
				t.Errorf("rebinding page with an unlisted origin: %d, want 403", got)
			}
		})
	}
}

// TestLoopbackListenAddressWithoutPort: a loopback ListenAddress written
// without a port must not switch the DNS-rebinding protection off.
func TestLoopbackListenAddressWithoutPort(t *testing.T) {
	for _, addr := range []string{"127.0.0.1", "localhost", "[::1]"} {
		t.Run(addr, func(t *testing.T) {
			h := newHarness(t, func(o *Options) { o.ListenAddress = addr })
			resp, body := h.doBody(call{host: "evil.example.com", body: initializeBody(1, "2025-06-18", "")})
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("ListenAddress %q: Host evil.example.com got %d %q, want 403", addr, resp.StatusCode, body)
			}
		})
	}
}
