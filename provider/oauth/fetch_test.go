package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

func TestCheckURL(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://idp.example/.well-known/openid-configuration", true},
		{"https://idp.example:8443/x", true},
		{"http://127.0.0.1:8080/x", true},
		{"http://127.9.9.9/x", true},
		{"http://[::1]:8080/x", true},
		{"http://localhost:8080/x", true},
		{"http://LOCALHOST./x", true},
		{"http://idp.example/x", false},
		{"http://10.0.0.1/x", false},
		{"http://localhost.evil.example/x", false},
		{"http://127.0.0.1.nip.io/x", false},
		{"https://user:pass@idp.example/x", false},
		{"https://user@idp.example/x", false},
		{"https://idp.example/x#fragment", false},
		{"ftp://idp.example/x", false},
		{"file:///etc/passwd", false},
		{"https:opaque", false},
		{"/relative", false},
		{"", false},
		{"https://", false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			err := CheckURL(tt.url)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckURL(%q) = %v, want ok=%v", tt.url, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInsecureURL) {
				t.Fatalf("error %v is not ErrInsecureURL", err)
			}
			if err != nil && strings.Contains(err.Error(), "user:pass") {
				t.Fatalf("error %q shows the password", err)
			}
		})
	}
}

func TestAddressAllowed(t *testing.T) {
	tests := []struct {
		address                  string
		plain, loopback, private bool // allowed: by default, with loopback allowed, with private allowed
	}{
		{"93.184.216.34", true, true, true},
		{"2606:2800:220:1:248:1893:25c8:1946", true, true, true},
		{"127.0.0.1", false, true, false},
		{"127.1.2.3", false, true, false},
		{"::1", false, true, false},
		{"::ffff:127.0.0.1", false, true, false},
		{"10.1.2.3", false, false, true},
		{"172.16.0.1", false, false, true},
		{"192.168.1.1", false, false, true},
		{"100.64.0.1", false, false, true},
		{"fd00::1", false, false, true},
		{"::ffff:10.0.0.1", false, false, true},
		{"64:ff9b::10.0.0.1", false, false, true},
		{"2002:a00:1::1", false, false, true}, // 6to4 of 10.0.0.1
		{"169.254.169.254", false, false, false},
		{"::ffff:169.254.169.254", false, false, false},
		{"64:ff9b::169.254.169.254", false, false, false},
		{"fe80::1", false, false, false},
		{"fe80::1%eth0", false, false, false},
		{"0.0.0.0", false, false, false},
		{"0.1.2.3", false, false, false},
		{"::", false, false, false},
		{"224.0.0.1", false, false, false},
		{"ff02::1", false, false, false},
		{"255.255.255.255", false, false, false},
		{"240.0.0.1", false, false, false},
		{"198.18.0.1", false, false, false},
		{"2001::1", false, false, false}, // Teredo
		{"64:ff9b::8.8.8.8", true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.address, func(t *testing.T) {
			addr := netip.MustParseAddr(tt.address)
			for _, c := range []struct {
				loopback, private, want bool
			}{{false, false, tt.plain}, {true, false, tt.loopback}, {false, true, tt.private}} {
				if got := addressAllowed(addr, c.loopback, c.private); got != c.want {
					t.Errorf("addressAllowed(%s, loopback=%v, private=%v) = %v, want %v", tt.address, c.loopback, c.private, got, c.want)
				}
			}
		})
	}
}

func TestFetcherBlocksAtDialTime(t *testing.T) {
	fetcher := NewFetcher(FetcherOptions{Timeout: 2 * time.Second})
	for _, target := range []string{
		"https://169.254.169.254/latest/meta-data/",
		"https://[fe80::1]/",
		"https://10.255.255.1/",
		"https://0.0.0.0/",
		"https://[::ffff:169.254.169.254]/",
	} {
		t.Run(target, func(t *testing.T) {
			_, err := fetcher.Get(context.Background(), target)
			if !errors.Is(err, ErrBlockedAddress) {
				t.Fatalf("Get(%s) = %v, want ErrBlockedAddress", target, err)
			}
		})
	}
}

func TestFetcherLoopbackOnlyForLoopbackURLs(t *testing.T) {
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{}`)) }))
	defer server.Close()
	port := server.URL[strings.LastIndexByte(server.URL, ':'):]
	// "localhost" is a loopback URL host; the address check lets it dial.
	if _, err := NewFetcher(FetcherOptions{}).Get(context.Background(), "http://localhost"+port+"/"); err != nil {
		t.Fatalf("loopback URL: %v", err)
	}
	// The dialer of a non-loopback host name refuses loopback addresses
	// (what a DNS-rebound name would resolve to).
	f := NewFetcher(FetcherOptions{})
	if _, err := f.dial(context.Background(), "tcp", "127.0.0.1"+port); err != nil {
		t.Fatalf("dial of a loopback literal: %v", err)
	}
	if err := checkAddress("127.0.0.1"+port, IsLoopbackHost("idp.example"), false); !errors.Is(err, ErrBlockedAddress) {
		t.Fatalf("loopback address for a public name: %v", err)
	}
	if err := checkAddress("127.0.0.1"+port, true, false); err != nil {
		t.Fatalf("with AllowLoopback: %v", err)
	}
}

func TestFetcherRefusesRedirects(t *testing.T) {
	var targetHits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		targetHits.Add(1)
		w.Write([]byte(`{}`))
	}))
	defer target.Close()
	redirector := httptest.NewServer(http.RedirectHandler(target.URL+"/jwks", http.StatusFound))
	defer redirector.Close()

	fetcher := NewFetcher(FetcherOptions{})
	if _, err := fetcher.Get(context.Background(), redirector.URL); !errors.Is(err, ErrRedirect) {
		t.Fatalf("Get = %v, want ErrRedirect", err)
	}
	if _, _, err := fetcher.PostForm(context.Background(), redirector.URL, url.Values{"token": {"t"}}, "id", "secret"); !errors.Is(err, ErrRedirect) {
		t.Fatalf("PostForm = %v, want ErrRedirect", err)
	}
	if targetHits.Load() != 0 {
		t.Fatal("redirect was followed")
	}
}

func TestFetcherSizeCap(t *testing.T) {
	body := strings.Repeat("x", 2048)
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"with content-length", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) }},
		{"chunked", func(w http.ResponseWriter, r *http.Request) {
			for range 4 {
				w.Write([]byte(body[:512]))
				w.(http.Flusher).Flush()
			}
			w.Write([]byte("!"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := httptest.NewServer(tt.handler)
			defer server.Close()
			_, err := NewFetcher(FetcherOptions{MaxBodySize: 2047}).Get(context.Background(), server.URL)
			if !errors.Is(err, ErrResponseTooLarge) {
				t.Fatalf("Get = %v, want ErrResponseTooLarge", err)
			}
			if _, err := NewFetcher(FetcherOptions{MaxBodySize: 2049}).Get(context.Background(), server.URL); err != nil {
				t.Fatalf("within the cap: %v", err)
			}
		})
	}
}

func TestFetcherTimeoutAndStatus(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	start := time.Now()
	if _, err := NewFetcher(FetcherOptions{Timeout: 100 * time.Millisecond}).Get(context.Background(), slow.URL); err == nil {
		t.Fatal("slow server did not time out")
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("timeout took %s", elapsed)
	}

	missing := httptest.NewServer(http.NotFoundHandler())
	defer missing.Close()
	if _, err := NewFetcher(FetcherOptions{}).Get(context.Background(), missing.URL); !errors.Is(err, ErrHTTPStatus) {
		t.Fatalf("404: %v", err)
	}
}

func TestOversizedJWKSRefused(t *testing.T) {
	f := newFixture(t, nil)
	f.as.SetJWKS([]byte(`{"keys":[],"pad":"` + strings.Repeat("x", 1<<20) + `"}`))
	_, err := f.verify(f.token(f.as.EC, nil))
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("error = %v, want ErrUnavailable wrapping ErrResponseTooLarge", err)
	}
}

func TestMetadataRedirectRefused(t *testing.T) {
	as := oauthtest.NewIssuer(t, nil)
	redirector := httptest.NewServer(http.RedirectHandler(as.MetadataURL(), http.StatusMovedPermanently))
	defer redirector.Close()
	clock := newClock()
	v, err := NewVerifier([]ServerConfig{{
		MetadataURL:       redirector.URL + "/.well-known/oauth-authorization-server",
		ExpectedAudiences: []string{oauthtest.Audience},
	}}, Options{Logger: discardLogger(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	claims := as.Claims(clock.Now())
	claims["iss"] = redirector.URL
	_, err = v.Verify(context.Background(), as.Mint(t, claims))
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrRedirect) {
		t.Fatalf("error = %v, want ErrUnavailable wrapping ErrRedirect", err)
	}
	if as.Hits(oauthtest.MetadataPath) != 0 {
		t.Fatal("redirect was followed")
	}
}
