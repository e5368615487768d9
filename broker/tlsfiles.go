package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"weak"

	"github.com/mcpbroker/mcpbroker/broker/config"
)

// pemFiles reads the PEM files a configuration names, relative to its
// folder, and says which key named a file that could not be used.
type pemFiles struct{ baseDir string }

func (f pemFiles) path(name string) string {
	if name == "" || filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(f.baseDir, name)
}

// roots reads the CA certificates in the file at key.
func (f pemFiles) roots(key, name string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(f.path(name))
	if err != nil {
		return nil, fmt.Errorf("broker: %s: %w", key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("broker: %s: no PEM certificate in %s", key, f.path(name))
	}
	return pool, nil
}

// keyPair reads a certificate and its key; key names the setting.
func (f pemFiles) keyPair(key, certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(f.path(certFile), f.path(keyFile))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("broker: %s: %w", key, err)
	}
	return cert, nil
}

// upstreamTLS is the client side of an app's upstream.tls; nil when it
// has none.
func (f pemFiles) upstreamTLS(key string, t *config.UpstreamTLS) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.MinVersion == "1.3" {
		c.MinVersion = tls.VersionTLS13
	}
	if t.CAFile != "" {
		roots, err := f.roots(key+".caFile", t.CAFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = roots
	}
	if t.CertFile != "" {
		cert, err := f.keyPair(key+".certFile", t.CertFile, t.KeyFile)
		if err != nil {
			return nil, err
		}
		c.Certificates = []tls.Certificate{cert}
	} else {
		// Without a certificate, note when a server asks for one: under
		// TLS 1.3 a server that requires it refuses only after the
		// handshake, often by resetting the connection, which says
		// nothing of why (clientCertFailure).
		requested := &atomic.Int64{}
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			requested.Store(time.Now().UnixNano())
			return &tls.Certificate{}, nil
		}
		key := weak.Make(c)
		certRequests.Store(key, requested)
		runtime.AddCleanup(c, func(key weak.Pointer[tls.Config]) { certRequests.Delete(key) }, key)
	}
	return c, nil
}

// certRequests holds, per TLS configuration without a client certificate,
// when a server last asked for one.
// A configuration a reload dropped takes its entry with it.
var certRequests sync.Map // weak.Pointer[tls.Config] -> *atomic.Int64

// errClientCertRequested marks a failure that followed a server's request
// for a client certificate the broker has none of.
var errClientCertRequested = errors.New("the upstream asked for a client certificate")

// clientCertFailure marks err when the connection failed shortly after the
// upstream asked for a client certificate, which the app has none of.
func clientCertFailure(c *tls.Config, err error) error {
	if c == nil {
		return err
	}
	v, ok := certRequests.Load(weak.Make(c))
	if !ok {
		return err
	}
	at := v.(*atomic.Int64).Load()
	if at == 0 || time.Since(time.Unix(0, at)) > 10*time.Second {
		return err
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%w: %w", errClientCertRequested, err)
	}
	return err
}

// listenerTLS is the server side of http.tls: the broker's certificate
// and, with clientCA, the client certificates it asks for.
func (f pemFiles) listenerTLS(t *config.TLS) (*tls.Config, error) {
	cert, err := f.keyPair("http.tls.certFile", t.CertFile, t.KeyFile)
	if err != nil {
		return nil, err
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCA != "" {
		if c.ClientCAs, err = f.roots("http.tls.clientCA", t.ClientCA); err != nil {
			return nil, err
		}
		c.ClientAuth = tls.RequireAndVerifyClientCert
		if t.ClientAuth == "verifyIfGiven" {
			c.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	return c, nil
}
