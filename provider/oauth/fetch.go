package oauth

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// FetcherOptions configures a Fetcher; the zero value is a safe default.
type FetcherOptions struct {
	// Timeout bounds a whole exchange: dial, TLS, request and reading the
	// body. Default 10s.
	Timeout time.Duration
	// MaxBodySize caps a response body in bytes. Default 1 MiB.
	MaxBodySize int64
	// AllowPrivateNetworks lets the fetcher reach RFC 1918, RFC 4193 (ULA)
	// and RFC 6598 (CGNAT) addresses, for on-premises identity providers.
	// Link-local (cloud metadata services), multicast and unspecified
	// addresses stay blocked regardless.
	AllowPrivateNetworks bool
	// AllowLoopback lets a URL whose host is a DNS name (or a non-loopback
	// address) end up on a loopback address. URLs that name a loopback host
	// themselves (localhost, 127.0.0.0/8, ::1) may always reach loopback;
	// without this option a public name that resolves to 127.0.0.1 (DNS
	// rebinding) cannot.
	AllowLoopback bool
	// RootCAs verifies the server certificates; nil means the system pool.
	RootCAs *x509.CertPool
	// TLS, when set, is the whole client TLS configuration instead (an
	// identity provider on the enterprise's own PKI, with a client
	// certificate); RootCAs is then ignored.
	TLS *tls.Config
}

// Fetcher is the hardened HTTP client used for everything this package
// fetches: authorization server metadata, JWKS and introspection. It
// refuses non-https URLs (except for loopback hosts), URLs with userinfo,
// redirects, oversized bodies, and connections to addresses an attacker
// could use for SSRF: the address check runs on the resolved IP at dial
// time, so DNS rebinding cannot get around it. It never uses a proxy from
// the environment, because the check would then apply to the proxy.
type Fetcher struct {
	client      *http.Client
	maxBodySize int64
	options     FetcherOptions
}

const (
	defaultFetchTimeout = 10 * time.Second
	defaultMaxBodySize  = 1 << 20
)

// NewFetcher builds a Fetcher; it does no I/O.
func NewFetcher(o FetcherOptions) *Fetcher {
	if o.Timeout <= 0 {
		o.Timeout = defaultFetchTimeout
	}
	if o.MaxBodySize <= 0 {
		o.MaxBodySize = defaultMaxBodySize
	}
	f := &Fetcher{maxBodySize: o.MaxBodySize, options: o}
	transport := &http.Transport{
		Proxy:                  nil,
		DialContext:            f.dial,
		TLSClientConfig:        cmp.Or(o.TLS, &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: o.RootCAs}),
		TLSHandshakeTimeout:    o.Timeout,
		ResponseHeaderTimeout:  o.Timeout,
		MaxResponseHeaderBytes: 64 << 10,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           16,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
	}
	f.client = &http.Client{
		Transport: transport,
		Timeout:   o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return ErrRedirect
		},
	}
	return f
}

// Get fetches url and returns its body. Anything but 200 is an error
// wrapping ErrHTTPStatus.
func (f *Fetcher) Get(ctx context.Context, rawURL string) ([]byte, error) {
	body, _, err := f.GetWithHeader(ctx, rawURL)
	return body, err
}

// GetWithHeader is Get that also returns the response header, for callers
// that judge the Content-Type or honour Cache-Control.
func (f *Fetcher) GetWithHeader(ctx context.Context, rawURL string) ([]byte, http.Header, error) {
	if err := CheckURL(rawURL); err != nil {
		return nil, nil, err
	}
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("oauth: get %s: %w", rawURL, err)
	}
	request.Header.Set("Accept", "application/json")
	body, status, header, err := f.do(request)
	if err != nil {
		return nil, nil, err
	}
	if status != http.StatusOK {
		return nil, nil, fmt.Errorf("oauth: get %s: %w %d", rawURL, ErrHTTPStatus, status)
	}
	return body, header, nil
}

// PostForm posts form to url, authenticating with HTTP Basic as
// client_secret_basic requires (RFC 6749 §2.3.1: both parts
// form-urlencoded first). It returns the body and status of any complete
// response; the caller decides what a status means.
func (f *Fetcher) PostForm(ctx context.Context, rawURL string, form url.Values, basicUser, basicPass string) ([]byte, int, error) {
	if err := CheckURL(rawURL); err != nil {
		return nil, 0, err
	}
	request, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, 0, fmt.Errorf("oauth: post %s: %w", rawURL, err)
	}
	request.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	request.Header.Set("Accept", "application/json")
	if basicUser != "" {
		request.SetBasicAuth(url.QueryEscape(basicUser), url.QueryEscape(basicPass))
	}
	body, status, _, err := f.do(request)
	return body, status, err
}

// do sends request and reads the whole response: body, status and header.
func (f *Fetcher) do(request *http.Request) ([]byte, int, http.Header, error) {
	response, err := f.client.Do(request)
	if err != nil {
		// *url.Error names the method and URL; neither is secret (the form
		// body, which holds the token for introspection, is never included).
		return nil, 0, nil, fmt.Errorf("oauth: %w", err)
	}
	defer response.Body.Close()
	if response.ContentLength > f.maxBodySize {
		return nil, response.StatusCode, nil, fmt.Errorf("oauth: %s %s: %w", request.Method, request.URL, ErrResponseTooLarge)
	}
	var buffer bytes.Buffer
	n, err := buffer.ReadFrom(io.LimitReader(response.Body, f.maxBodySize+1))
	if err != nil {
		return nil, response.StatusCode, nil, fmt.Errorf("oauth: %s %s: read body: %w", request.Method, request.URL, err)
	}
	if n > f.maxBodySize {
		return nil, response.StatusCode, nil, fmt.Errorf("oauth: %s %s: %w", request.Method, request.URL, ErrResponseTooLarge)
	}
	return buffer.Bytes(), response.StatusCode, response.Header, nil
}

// CheckURL enforces the URL policy for every server the broker talks to
// about tokens: absolute https URL, or http for a loopback host; no
// userinfo, no fragment. Errors wrap ErrInsecureURL.
func CheckURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInsecureURL, err)
	}
	if u.Opaque != "" || u.Host == "" || u.User != nil || u.Fragment != "" || strings.Contains(rawURL, "#") {
		return fmt.Errorf("%w: %s", ErrInsecureURL, redactURL(u))
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !IsLoopbackHost(u.Hostname()) {
			return fmt.Errorf("%w: %s", ErrInsecureURL, redactURL(u))
		}
	default:
		return fmt.Errorf("%w: %s", ErrInsecureURL, redactURL(u))
	}
	return nil
}

// CheckRedirectURI enforces the redirect URI policy (OAuth 2.1 §2.3.1,
// RFC 8252 §7.3): an absolute https URI, or http on a loopback host, with
// no fragment and no user information. Redirect URIs are then matched byte
// for byte, port included. The error quotes the URI: redirect URIs are
// public client metadata, never secrets.
func CheckRedirectURI(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a URL", raw)
	case !u.IsAbs() || u.Host == "" || u.Opaque != "":
		return fmt.Errorf("%q is not an absolute URL with a host", raw)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Errorf("%q must have no fragment", raw)
	case u.User != nil:
		return fmt.Errorf("%q must have no user information", raw)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && IsLoopbackHost(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("%q: http is only allowed for loopback hosts; use https", raw)
	}
	return fmt.Errorf("%q must be an https URL or http on a loopback host", raw)
}

// redactURL drops userinfo so that a password typed into a URL never
// reaches an error message or a log.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// IsLoopbackHost reports whether a URL's host (url.URL.Hostname) is
// "localhost" or a loopback IP literal, ignoring case and a final dot.
// Names under .localhost are not included: whether they resolve to
// loopback depends on the resolver.
func IsLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" {
		return true
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		return addr.Unmap().IsLoopback()
	}
	return false
}

func (f *Fetcher) dial(ctx context.Context, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	allowLoopback := f.options.AllowLoopback || IsLoopbackHost(host)
	dialer := &net.Dialer{
		Timeout:   f.options.Timeout,
		KeepAlive: 30 * time.Second,
		ControlContext: func(_ context.Context, _, resolved string, _ syscall.RawConn) error {
			return checkAddress(resolved, allowLoopback, f.options.AllowPrivateNetworks)
		},
	}
	return dialer.DialContext(ctx, network, address)
}

// checkAddress decides whether the fetcher may connect to a resolved
// ip:port.
func checkAddress(addressPort string, allowLoopback, allowPrivate bool) error {
	ap, err := netip.ParseAddrPort(addressPort)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrBlockedAddress, addressPort)
	}
	if !addressAllowed(ap.Addr(), allowLoopback, allowPrivate) {
		return fmt.Errorf("%w: %s", ErrBlockedAddress, ap.Addr())
	}
	return nil
}

func addressAllowed(addr netip.Addr, allowLoopback, allowPrivate bool) bool {
	addr = addr.Unmap().WithZone("")
	// IPv6 forms that embed an IPv4 address are judged by that address.
	if addr.Is6() && !addr.IsLoopback() && !addr.IsUnspecified() {
		if embedded, ok := embeddedIPv4(addr); ok {
			addr = embedded
		} else if teredo.Contains(addr) {
			return false
		}
	}
	switch {
	case !addr.IsValid(),
		addr.IsUnspecified(),
		addr.IsMulticast(),
		addr.IsLinkLocalUnicast(),
		addr.IsLinkLocalMulticast(),
		addr.IsInterfaceLocalMulticast():
		return false
	case addr.IsLoopback():
		return allowLoopback
	case addr.IsPrivate() || inAny(addr, privateExtra):
		return allowPrivate
	case inAny(addr, reserved):
		return false
	}
	return true
}

// embeddedIPv4 extracts the IPv4 address of NAT64 (64:ff9b::/96,
// 64:ff9b:1::/48), 6to4 (2002::/16) and IPv4-compatible (::/96) addresses.
func embeddedIPv4(addr netip.Addr) (netip.Addr, bool) {
	b := addr.As16()
	switch {
	case nat64.Contains(addr), nat64Local.Contains(addr), ipv4Compatible.Contains(addr):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case sixToFour.Contains(addr):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	}
	return netip.Addr{}, false
}

func inAny(addr netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

var (
	nat64          = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local     = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour      = netip.MustParsePrefix("2002::/16")
	ipv4Compatible = netip.MustParsePrefix("::/96")
	teredo         = netip.MustParsePrefix("2001::/32")

	// Not covered by netip's IsPrivate but private in practice.
	privateExtra = []netip.Prefix{
		netip.MustParsePrefix("100.64.0.0/10"), // RFC 6598 shared address space (CGNAT)
		netip.MustParsePrefix("fec0::/10"),     // deprecated site-local
	}
	// Never a legitimate identity provider.
	reserved = []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),
		netip.MustParsePrefix("192.0.0.0/24"),
		netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("198.18.0.0/15"),
		netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.0/24"),
		netip.MustParsePrefix("240.0.0.0/4"), // includes 255.255.255.255
		netip.MustParsePrefix("100::/64"),    // discard-only
		netip.MustParsePrefix("2001:db8::/32"),
	}
)
