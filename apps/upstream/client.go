package upstream

import (
	"net"
	"net/http"
	"time"
)

// Defaults of NewHTTPClient for zero arguments.
const (
	DefaultDialTimeout         = 10 * time.Second
	DefaultKeepAlive           = 30 * time.Second
	DefaultMaxIdleConns        = 100
	DefaultMaxIdleConnsPerHost = 32

	idleConnTimeout      = 90 * time.Second
	maxResponseHeaderLen = 64 << 10
)

// NewHTTPClient builds the pooled client for one upstream app. Zero
// arguments take the defaults above; a negative keepAlive turns TCP
// keep-alive probes off. Requests are bounded by their context only: there
// is no client timeout, since an SSE response legitimately lasts as long as
// its tool runs.
//
// The client never follows redirects (a 3xx comes back as a *StatusError):
// following one would send the per-call Authorization header to wherever
// the upstream points. It ignores proxy environment variables, speaks
// HTTP/1.1 with keep-alive, and does not ask for compression, which
// intermediaries tend to apply by buffering, and buffering stalls SSE.
func NewHTTPClient(dialTimeout, keepAlive time.Duration, maxIdle, maxIdlePerHost int) *http.Client {
	if dialTimeout == 0 {
		dialTimeout = DefaultDialTimeout
	}
	if keepAlive == 0 {
		keepAlive = DefaultKeepAlive
	}
	if maxIdle == 0 {
		maxIdle = DefaultMaxIdleConns
	}
	if maxIdlePerHost == 0 {
		maxIdlePerHost = DefaultMaxIdleConnsPerHost
	}
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: keepAlive}
	transport := &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		TLSHandshakeTimeout:    dialTimeout,
		MaxIdleConns:           maxIdle,
		MaxIdleConnsPerHost:    maxIdlePerHost,
		IdleConnTimeout:        idleConnTimeout,
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxResponseHeaderLen,
		ForceAttemptHTTP2:      false,
	}
	return &http.Client{
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
