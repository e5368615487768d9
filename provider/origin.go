package provider

import (
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// hostGuard rejects requests whose Host or Origin shows a browser was
// tricked into calling the broker (DNS rebinding) or a foreign page is
// calling it cross-origin. Upstreams cannot check this themselves: the
// broker rewrites Host on the way to them.
type hostGuard struct {
	loopback       bool
	allowedHosts   map[string]bool
	allowedOrigins map[string]bool
}

func newHostGuard(listenAddress string, hosts, origins []string) *hostGuard {
	g := &hostGuard{allowedHosts: make(map[string]bool), allowedOrigins: make(map[string]bool)}
	host, _, err := net.SplitHostPort(listenAddress)
	if err != nil {
		host = listenAddress // no port
	}
	g.loopback = isLoopbackName(host)
	for _, h := range hosts {
		g.allowedHosts[strings.ToLower(h)] = true
	}
	for _, o := range origins {
		g.allowedOrigins[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
	}
	return g
}

func isLoopbackName(host string) bool {
	return oauth.IsLoopbackHost(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
}

func splitHost(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// hostAllowed checks the Host header.
func (g *hostGuard) hostAllowed(host string) bool {
	host = strings.ToLower(host)
	if len(g.allowedHosts) > 0 {
		return g.allowedHosts[host] || g.allowedHosts[splitHost(host)]
	}
	if g.loopback {
		return isLoopbackName(splitHost(host))
	}
	return true
}

// originAllowed checks the Origin header; requests without one (non-browser
// clients) pass.
func (g *hostGuard) originAllowed(origin, host string) bool {
	if origin == "" {
		return true
	}
	origin = strings.ToLower(origin)
	if len(g.allowedOrigins) > 0 {
		return g.allowedOrigins[origin] // the list is exclusive
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	if strings.EqualFold(u.Host, host) {
		return true // same origin; Host itself was checked before
	}
	return g.loopback && isLoopbackName(splitHost(u.Host)) && isLoopbackName(splitHost(host))
}

func (g *hostGuard) check(r *http.Request) *HTTPError {
	if !g.hostAllowed(r.Host) {
		return &HTTPError{Status: http.StatusForbidden, Code: -32000, Message: "forbidden: host not allowed"}
	}
	if !g.originAllowed(r.Header.Get("Origin"), r.Host) {
		return &HTTPError{Status: http.StatusForbidden, Code: -32000, Message: "forbidden: origin not allowed"}
	}
	return nil
}
