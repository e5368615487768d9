package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpbroker/mcpbroker/apps/sample"
	"github.com/mcpbroker/mcpbroker/broker/limit"
	"github.com/urfave/cli/v2"
)

// upstreamShutdownGrace bounds how long in-flight calls may finish after a
// signal; open SSE streams never finish on their own, so the rest are cut.
const upstreamShutdownGrace = 5 * time.Second

// sampleReadBodyTimeout is how long a request body to the sample upstream
// may take to arrive, as http.readBodyTimeout's default for the broker.
const sampleReadBodyTimeout = 30 * time.Second

func upstreamCommand() *cli.Command {
	return &cli.Command{
		Name:  "upstream",
		Usage: "run upstream MCP servers for trying out and testing the broker",
		Subcommands: []*cli.Command{
			{
				Name:  "sample",
				Usage: "serve the sample ledger MCP server over Streamable HTTP",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "listen", Value: "127.0.0.1:9000", Usage: "address to listen on; port 0 picks a free port"},
					&cli.BoolFlag{Name: "stdio", Usage: "speak MCP on standard input and output instead of listening (a stdio app); " +
						"logs go to standard error"},
					&cli.BoolFlag{Name: "stateless", Usage: "serve without sessions: MCP 2026-07-28, and older clients each request on its own"},
					&cli.StringFlag{Name: "name", Value: "ledger", Usage: "server name reported in initialize"},
					&cli.StringFlag{Name: "path", Value: "/mcp", Usage: "URL path of the MCP endpoint"},
					&cli.StringFlag{Name: "issuer", Usage: "accept only requests with a valid JWT access token from this authorization server " +
						"(found through its RFC 8414 metadata); needs --audience"},
					&cli.StringFlag{Name: "audience", Usage: "the audience access tokens must name (with --issuer)"},
					&cli.StringFlag{Name: "descriptions", Usage: "a JSON file of tool name to description, read again at every new session: " +
						"the named tools change what they say (to try out tool pinning)"},
					&cli.BoolFlag{Name: "records-tool", Usage: "add customer_record, whose results carry fake credentials and personal data " +
						"(to try out redaction)"},
					&cli.BoolFlag{Name: "allow-private-networks", Usage: "let the issuer's metadata and keys be fetched from private addresses " +
						"(a loopback issuer needs no flag)"},
				},
				Action: runSampleUpstream,
			},
			{
				Name: "rest-sample",
				Usage: "serve the REST services of Kong's recipe (orders, inventory, customers), as testdata/openapi/kong describes them, " +
					"for mcpBridge apps",
				Flags: []cli.Flag{&cli.StringFlag{Name: "listen", Value: "127.0.0.1:9200", Usage: "address to listen on; port 0 picks a free port"}},
				Action: func(c *cli.Context) error {
					logger := slog.New(slog.NewTextHandler(c.App.ErrWriter, nil))
					listener, err := net.Listen("tcp", c.String("listen"))
					if err != nil {
						return fmt.Errorf("upstream rest-sample: %w", err)
					}
					logger.Info(fmt.Sprintf("sample REST services listening on http://%s (/orders-api, /inventory-api, /customers-api)", listener.Addr()))
					server := sampleServer(sample.RESTHandler(), sampleReadBodyTimeout)
					ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
					defer stop()
					go func() {
						<-ctx.Done()
						_ = server.Close()
					}()
					if err := server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
						return fmt.Errorf("upstream rest-sample: %w", err)
					}
					return nil
				},
			},
		},
	}
}

func runSampleUpstream(c *cli.Context) error {
	path := c.String("path")
	if !strings.HasPrefix(path, "/") {
		return cli.Exit("--path: must start with /", 2)
	}
	logger := slog.New(slog.NewTextHandler(c.App.ErrWriter, nil))

	opts := &sample.Options{Name: c.String("name"), Logger: logger, DescriptionsFile: c.String("descriptions"), RecordsTool: c.Bool("records-tool"), Stateless: c.Bool("stateless")}
	if c.Bool("stdio") {
		if c.String("issuer") != "" || c.String("audience") != "" {
			return cli.Exit("--stdio: a server on standard streams has no HTTP requests to carry tokens; leave out --issuer and --audience", 2)
		}
		ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := sample.NewServer(opts).Run(ctx, &mcp.StdioTransport{}); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("upstream sample: %w", err)
		}
		return nil
	}
	mcpHandler := sample.Handler(opts)
	switch issuer, audience := c.String("issuer"), c.String("audience"); {
	case issuer != "" && audience != "":
		var err error
		mcpHandler, err = sample.ProtectedHandler(opts, sample.TokenOptions{
			Issuer: issuer, Audience: audience, AllowPrivateNetworks: c.Bool("allow-private-networks"),
		})
		if err != nil {
			return cli.Exit(err.Error(), 2)
		}
	case issuer != "" || audience != "":
		return cli.Exit("--issuer and --audience go together", 2)
	}
	// An exact match, not a ServeMux pattern, so any --path value is served
	// literally.
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		mcpHandler.ServeHTTP(w, r)
	})
	server := sampleServer(handler, sampleReadBodyTimeout)

	// Listen before logging, so that with port 0 the log names the real port.
	listener, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return fmt.Errorf("upstream sample: %w", err)
	}
	logger.Info(fmt.Sprintf("sample upstream listening on http://%s%s", listener.Addr(), path))
	if issuer := c.String("issuer"); issuer != "" {
		logger.Info("every request needs an access token", "issuer", issuer, "audience", c.String("audience"))
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()

	select {
	case err := <-served:
		return fmt.Errorf("upstream sample: %w", err)
	case <-ctx.Done():
	}
	logger.Info("sample upstream shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), upstreamShutdownGrace)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		// Streams still open after the grace period are cut.
		if err := server.Close(); err != nil {
			return fmt.Errorf("upstream sample: close: %w", err)
		}
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("upstream sample: %w", err)
	}
	return nil
}

// sampleServer serves the sample upstream with the broker's bounds on slow
// bodies and idle connections: a body must arrive within readBodyTimeout,
// idle connections are closed, and event streams (no body) run on.
func sampleServer(handler http.Handler, readBodyTimeout time.Duration) *http.Server {
	return &http.Server{
		Handler:           limit.BodyDeadline(handler, readBodyTimeout),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
}
