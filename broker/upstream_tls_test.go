package broker_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mcpbroker/mcpbroker/apps/sample"
	"github.com/mcpbroker/mcpbroker/broker/testpki"
)

// An upstream on the enterprise's own PKI: reached with its CA and a
// client certificate it requires, directly and through an egress proxy;
// with the wrong CA, or without the certificate, the call answers an
// error that says why.
func TestUpstreamOverPrivatePKI(t *testing.T) {
	ca, other := testpki.NewCA(t, "internal"), testpki.NewCA(t, "other")
	client := ca.Client(t, "broker")
	upstream := httptest.NewUnstartedServer(sample.Handler(nil))
	upstream.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.Server(t, "ledger").TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(), MinVersion: tls.VersionTLS12,
	}
	upstream.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes below
	upstream.StartTLS()
	t.Cleanup(upstream.Close)
	proxy, tunnels := connectProxy(t)

	call := func(t *testing.T, upstreamBlock string) answer {
		t.Helper()
		url := startBroker(t, scenario(t, "upstream-tls"), upstream.URL+"/mcp", upstreamBlock)
		c := newWireClient(t, url+"/mcp")
		c.header.Set("Accept", "application/json")
		c.initialize(`{}`)
		return c.send("call", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"}}}`)
	}
	good := fmt.Sprintf("      tls: {caFile: %q, certFile: %q, keyFile: %q}", ca.File, client.CertFile, client.KeyFile)

	t.Run("its CA and a client certificate", func(t *testing.T) {
		if a := call(t, good); a.status != http.StatusOK || a.rpcCode() != 0 || !strings.Contains(string(a.body), "alice") {
			t.Errorf("%d %s", a.status, a.body)
		}
	})
	t.Run("through an egress proxy", func(t *testing.T) {
		before := tunnels.Load()
		if a := call(t, good+"\n      proxy: {url: \""+proxy+"\"}"); a.status != http.StatusOK || a.rpcCode() != 0 {
			t.Errorf("%d %s", a.status, a.body)
		}
		if tunnels.Load() == before {
			t.Error("the proxy saw no CONNECT")
		}
	})
	for _, tt := range []struct{ name, block, want string }{
		{"the wrong CA", fmt.Sprintf("      tls: {caFile: %q, certFile: %q, keyFile: %q}", other.File, client.CertFile, client.KeyFile), "certificate"},
		{"no client certificate", fmt.Sprintf("      tls: {caFile: %q}", ca.File), "certificate"},
		{"the system's roots", "", "certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, tt.block)
			if a.status != http.StatusOK || a.rpcCode() == 0 || !strings.Contains(string(a.body), tt.want) {
				t.Errorf("want a JSON-RPC error naming the %s, got %d %s", tt.want, a.status, a.body)
			}
		})
	}
}

// connectProxy is an HTTP proxy that tunnels CONNECT requests and counts
// them.
func connectProxy(t *testing.T) (string, *atomic.Int64) {
	var tunnels atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		target, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer target.Close()
		tunnels.Add(1)
		w.WriteHeader(http.StatusOK)
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		done := make(chan struct{})
		go func() { _, _ = io.Copy(target, buf); close(done) }()
		_, _ = io.Copy(conn, target)
		<-done
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &tunnels
}

// A broker that asks clients for certificates serves those its CA issued
// and refuses the others at the handshake.
func TestListenerMutualTLS(t *testing.T) {
	ca, other := testpki.NewCA(t, "broker"), testpki.NewCA(t, "other")
	server := ca.Server(t, "broker")
	upstream, _ := countingUpstream(t)
	url := strings.Replace(startBroker(t, scenario(t, "listener-mtls"), server.CertFile, server.KeyFile, ca.File, upstream), "http://", "https://", 1)
	post := func(cert *testpki.Leaf) (*http.Response, error) {
		config := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
		if cert != nil {
			config.Certificates = []tls.Certificate{cert.TLS}
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: config}}
		defer client.CloseIdleConnections()
		return client.Post(url+"/mcp", "application/json", strings.NewReader(
			`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
	}
	resp, err := post(ca.Client(t, "agent"))
	if err != nil {
		t.Fatalf("with a certificate the CA issued: %v", err)
	}
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("with a certificate the CA issued: %d %s", resp.StatusCode, line)
	}
	for name, cert := range map[string]*testpki.Leaf{"no certificate": nil, "another CA's certificate": other.Client(t, "stranger")} {
		if resp, err := post(cert); err == nil {
			resp.Body.Close()
			t.Errorf("%s: served %d, want the handshake refused", name, resp.StatusCode)
		}
	}
}
