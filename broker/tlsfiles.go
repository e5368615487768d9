package broker

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"

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
	}
	return c, nil
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
