package broker

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpbroker/mcpbroker/broker/config"
)

// Forwarded addresses are believed from trusted proxies only, and then
// only the hops those proxies wrote: the nearest hop that is not itself a
// trusted proxy is the client.
func TestForwardedFromTrustedProxiesOnly(t *testing.T) {
	tests := []struct {
		name       string
		trusted    []string
		host       bool
		remote     string
		header     http.Header
		wantRemote string
		wantHost   string
		wantScheme string
		wantKept   bool // the forwarded headers reach what follows
	}{
		{name: "untrusted peer: headers ignored and removed", trusted: []string{"10.0.0.0/8"}, remote: "192.0.2.1:5000",
			header: http.Header{"X-Forwarded-For": {"203.0.113.7"}, "Forwarded": {"for=203.0.113.8"}}, wantRemote: "192.0.2.1:5000"},
		{name: "no trusted proxies at all", remote: "127.0.0.1:5000",
			header: http.Header{"X-Forwarded-For": {"203.0.113.7"}}, wantRemote: "127.0.0.1:5000"},
		{name: "trusted peer: the nearest untrusted hop", trusted: []string{"127.0.0.1"}, remote: "127.0.0.1:5000",
			header: http.Header{"X-Forwarded-For": {"198.51.100.9, 203.0.113.7"}}, wantRemote: "203.0.113.7:0", wantKept: true},
		{name: "a chain of trusted proxies is skipped", trusted: []string{"127.0.0.0/8", "10.0.0.0/8"}, remote: "127.0.0.1:5000",
			header: http.Header{"X-Forwarded-For": {"198.51.100.9, 203.0.113.7", "10.1.2.3"}}, wantRemote: "203.0.113.7:0", wantKept: true},
		{name: "a client's own X-Forwarded-For entry is not believed", trusted: []string{"127.0.0.1"}, remote: "127.0.0.1:5000",
			header: http.Header{"X-Forwarded-For": {"10.9.9.9, 203.0.113.7"}}, wantRemote: "203.0.113.7:0", wantKept: true},
		{name: "Forwarded wins, IPv6 with port", trusted: []string{"::1"}, remote: "[::1]:5000",
			header:     http.Header{"Forwarded": {`for="[2001:db8::1]:4711";proto=https;host=mcp.example`}, "X-Forwarded-For": {"203.0.113.7"}},
			wantRemote: "[2001:db8::1]:0", wantKept: true},
		{name: "host and scheme only when asked", trusted: []string{"127.0.0.1"}, host: true, remote: "127.0.0.1:5000",
			header:     http.Header{"X-Forwarded-For": {"203.0.113.7"}, "X-Forwarded-Host": {"mcp.example"}, "X-Forwarded-Proto": {"https"}},
			wantRemote: "203.0.113.7:0", wantHost: "mcp.example", wantScheme: "https", wantKept: true},
		{name: "an obfuscated hop leaves the proxy's address", trusted: []string{"127.0.0.1"}, remote: "127.0.0.1:5000",
			header: http.Header{"Forwarded": {"for=_hidden"}}, wantRemote: "127.0.0.1:5000", wantKept: true},
		{name: "hops beyond the bound: the nearest count", trusted: []string{"127.0.0.1"}, remote: "127.0.0.1:5000",
			header: http.Header{"X-Forwarded-For": {strings.Repeat("198.51.100.1, ", 1000) + "203.0.113.7"}}, wantRemote: "203.0.113.7:0", wantKept: true},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			f := newForwarding(&config.HTTP{TrustedProxies: test.trusted, ForwardedHost: test.host})
			var got *http.Request
			h := f.handler(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r }))
			r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
			r.RemoteAddr, r.Header = test.remote, test.header.Clone()
			h.ServeHTTP(httptest.NewRecorder(), r)
			wantHost := test.wantHost
			if wantHost == "" {
				wantHost = "example.com"
			}
			if got.RemoteAddr != test.wantRemote || got.Host != wantHost || got.URL.Scheme != test.wantScheme {
				t.Errorf("remote %q host %q scheme %q, want %q %q %q", got.RemoteAddr, got.Host, got.URL.Scheme, test.wantRemote, wantHost, test.wantScheme)
			}
			kept := got.Header.Get("X-Forwarded-For") != "" || got.Header.Get("Forwarded") != ""
			if kept != test.wantKept {
				t.Errorf("forwarded headers kept: %v, want %v", kept, test.wantKept)
			}
		})
	}
}
