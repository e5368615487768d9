package upstream

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Defaults of NewHTTPClient for zero options.
const (
	DefaultDialTimeout         = 10 * time.Second
	DefaultKeepAlive           = 30 * time.Second
	DefaultMaxIdleConns        = 100
	DefaultMaxIdleConnsPerHost = 32

	idleConnTimeout      = 90 * time.Second
	maxResponseHeaderLen = 64 << 10
)

// HTTPOptions shape the connections to one upstream. Zero values take the
// defaults above; a negative KeepAlive turns TCP keep-alive probes off.
type HTTPOptions struct {
	DialTimeout, KeepAlive       time.Duration
	MaxIdleConns, MaxIdlePerHost int
	// TLS is how https endpoints are reached: roots, client certificate,
	// server name, minimum version. Nil: the system's roots, TLS 1.2 or
	// later.
	TLS *tls.Config
	// Proxy picks the proxy a request goes through (http.ProxyURL,
	// http.ProxyFromEnvironment); nil: none, whatever the environment
	// says.
	Proxy func(*http.Request) (*url.URL, error)
}

// NewHTTPClient builds the pooled client for one upstream app. Requests
// are bounded by their context only: there is no client timeout, since an
// SSE response legitimately lasts as long as its tool runs.
//
// The client never follows redirects (a 3xx comes back as a *StatusError):
// following one would send the per-call Authorization header to wherever
// the upstream points. It goes through a proxy only when told to, speaks
// HTTP/1.1 with keep-alive, and does not ask for compression, which
// intermediaries tend to apply by buffering, and buffering stalls SSE.
func NewHTTPClient(o HTTPOptions) *http.Client {
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = DefaultKeepAlive
	}
	if o.MaxIdleConns == 0 {
		o.MaxIdleConns = DefaultMaxIdleConns
	}
	if o.MaxIdlePerHost == 0 {
		o.MaxIdlePerHost = DefaultMaxIdleConnsPerHost
	}
	tlsConfig := o.TLS
	if tlsConfig == nil {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	dialer := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: o.KeepAlive}
	transport := &http.Transport{
		Proxy:                  o.Proxy,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        tlsConfig,
		TLSHandshakeTimeout:    o.DialTimeout,
		MaxIdleConns:           o.MaxIdleConns,
		MaxIdleConnsPerHost:    o.MaxIdlePerHost,
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
