package broker

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/mcpbroker/mcpbroker/broker/config"
)

// Behind a proxy or load balancer every connection comes from the proxy.
// Only from the proxies listed in http.trustedProxies are X-Forwarded-For
// and Forwarded believed: the client's address then replaces the
// request's RemoteAddr, so that policies (input.source.ip), the sign-in
// throttle, limits and audit records see the client. From anyone else
// those headers are removed, so that no policy reading headers can be
// told a made-up address.

// forwarding believes forwarded headers from trusted proxies.
type forwarding struct {
	trusted []netip.Prefix
	host    bool // believe the forwarded host and scheme too
}

func newForwarding(cfg *config.HTTP) *forwarding {
	f := &forwarding{host: cfg.ForwardedHost}
	for _, entry := range cfg.TrustedProxies {
		if prefix, err := config.ParseNetwork(entry); err == nil { // validated
			f.trusted = append(f.trusted, prefix)
		}
	}
	return f
}

var forwardedHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// maxForwardedHops bounds the hops looked at, nearest the broker first.
const maxForwardedHops = 32

func (f *forwarding) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer, ok := addrOf(r.RemoteAddr)
		if !ok || !f.trusts(peer) {
			for _, name := range forwardedHeaders {
				r.Header.Del(name)
			}
			next.ServeHTTP(w, r)
			return
		}
		hops, host, proto := forwardedBy(r.Header)
		// The client is the nearest hop that is not a trusted proxy,
		// read from the right: hops further left were written by the
		// client itself and prove nothing.
		client := netip.Addr{}
		for i := len(hops) - 1; i >= 0; i-- {
			client = hops[i]
			if !f.trusts(hops[i]) {
				break
			}
		}
		if client.IsValid() {
			r = r.Clone(r.Context())
			r.RemoteAddr = net.JoinHostPort(client.String(), "0")
		}
		if f.host {
			if host != "" {
				r.Host = host
			}
			if proto == "https" || proto == "http" {
				r.URL.Scheme = proto
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (f *forwarding) trusts(addr netip.Addr) bool {
	for _, prefix := range f.trusted {
		if prefix.Contains(addr) {
			return true
		}
	}
	return false
}

func addrOf(remote string) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	addr, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return netip.Addr{}, false
	}
	return addr.Unmap(), true
}

// forwardedBy reads the hops, left to right, and the original host and
// scheme: from Forwarded (RFC 7239) when present, else from the
// X-Forwarded-* headers. Entries that are not IP addresses (obfuscated
// identifiers, "unknown") end the chain there.
func forwardedBy(h http.Header) (hops []netip.Addr, host, proto string) {
	if values := h.Values("Forwarded"); len(values) > 0 {
		for _, value := range values {
			for _, element := range strings.Split(value, ",") {
				for _, pair := range strings.Split(element, ";") {
					name, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
					if !ok {
						continue
					}
					val = strings.Trim(strings.TrimSpace(val), `"`)
					switch strings.ToLower(name) {
					case "for":
						if addr, ok := addrOf(val); ok {
							hops = append(hops, addr)
						} else {
							hops = append(hops, netip.Addr{})
						}
					case "host":
						if host == "" {
							host = val
						}
					case "proto":
						if proto == "" {
							proto = strings.ToLower(val)
						}
					}
				}
			}
		}
		return lastHops(hops), host, proto
	}
	for _, value := range h.Values("X-Forwarded-For") {
		for _, entry := range strings.Split(value, ",") {
			addr, _ := addrOf(strings.TrimSpace(entry))
			hops = append(hops, addr)
		}
	}
	host = strings.TrimSpace(strings.Split(h.Get("X-Forwarded-Host"), ",")[0])
	proto = strings.ToLower(strings.TrimSpace(strings.Split(h.Get("X-Forwarded-Proto"), ",")[0]))
	return lastHops(hops), host, proto
}

// lastHops keeps the hops nearest the broker: only those can have been
// written by trusted proxies.
func lastHops(hops []netip.Addr) []netip.Addr {
	if len(hops) > maxForwardedHops {
		return hops[len(hops)-maxForwardedHops:]
	}
	return hops
}
