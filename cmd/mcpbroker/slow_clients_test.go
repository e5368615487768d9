package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/apps/sample"
)

// The servers the CLI runs beside the broker (the sample upstream, the
// login's redirect listener) cut a body that trickles in, as the broker
// does: a client sending a byte now and then does not hold a connection.
func TestCLIServersCutSlowBodies(t *testing.T) {
	flow := &codeFlow{metadata: &loginMetadata{Issuer: "https://as.example"}, state: "the-state"}
	tests := []struct {
		name   string
		server *http.Server
		path   string
	}{
		{"sample upstream", sampleServer(sample.Handler(&sample.Options{}), time.Second), "/mcp"},
		{"login redirect", callbackServer(flow.callbackHandler(make(chan callbackResult, 1)), time.Second), callbackPath},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = test.server.Serve(ln) }()
			t.Cleanup(func() { test.server.Close() })

			conn, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 1000\r\n\r\n{",
				test.path, ln.Addr())
			stop := make(chan struct{})
			trickled := make(chan struct{})
			go func() { // a byte every 200 ms, for up to 20 s
				defer close(trickled)
				for range 100 {
					select {
					case <-stop:
						return
					case <-time.After(200 * time.Millisecond):
					}
					if _, err := conn.Write([]byte(" ")); err != nil {
						return
					}
				}
			}()
			defer func() { close(stop); <-trickled }()

			_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
			_, err = io.Copy(io.Discard, conn)
			var timeout net.Error
			if errors.As(err, &timeout) && timeout.Timeout() {
				t.Error("a body trickling in held the connection")
			}
		})
	}
}
