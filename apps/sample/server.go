package sample

import (
	"log/slog"
	"net/http"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// Options configures the sample server. A nil *Options means all defaults.
type Options struct {
	// Name is the server name reported in initialize; "ledger" if empty.
	Name string
	// Logger receives the server's and the SDK's logs; nil discards them.
	Logger *slog.Logger
	// DescriptionsFile names a JSON object of tool name to description,
	// read again at every initialize: a tool it names is served with that
	// description from then on. It plays an upstream that changes what its
	// tools say after they were reviewed.
	DescriptionsFile string
	// RecordsTool adds customer_record, whose results carry credentials
	// and personal data (all of them fake), for trying out redaction.
	RecordsTool bool
	// Stateless serves without sessions: protocol version 2026-07-28, and
	// older clients each request on its own.
	Stateless bool
}

const (
	defaultName    = "ledger"
	serverVersion  = "0.1.0"
	instructions   = "A sample ledger with a few accounts. Transfers above 1000 ask the user to confirm."
	accountsURI    = "ledger://accounts"
	accountURIBase = accountsURI + "/"
)

func (o *Options) name() string {
	if o == nil || o.Name == "" {
		return defaultName
	}
	return o.Name
}

func (o *Options) logger() *slog.Logger {
	if o == nil || o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// ledgerServer joins one ledger to the MCP server that exposes it.
type ledgerServer struct {
	ledger *ledger
	server *mcp.Server
	logger *slog.Logger
	// describe registers a tool again with another description, by name.
	describe map[string]func(description string)
	// descriptionsFile is Options.DescriptionsFile; described what it
	// last said, per tool.
	descriptionsFile string
	describeMu       sync.Mutex
	described        map[string]string
	// verifier checks the access tokens of a ProtectedHandler; nil when
	// the server accepts every request.
	verifier *oauth.Verifier
}

// NewServer returns an MCP server with its own, freshly seeded ledger and all
// tools, resources and prompts registered.
func NewServer(opts *Options) *mcp.Server {
	return newLedgerServer(opts, nil).server
}

func newLedgerServer(opts *Options, verifier *oauth.Verifier) *ledgerServer {
	s := &ledgerServer{ledger: newLedger(), logger: opts.logger(), verifier: verifier, describe: map[string]func(string){}}
	if opts != nil {
		s.descriptionsFile = opts.DescriptionsFile
	}
	s.server = mcp.NewServer(&mcp.Implementation{
		Name:    opts.name(),
		Title:   "Sample ledger",
		Version: serverVersion,
	}, &mcp.ServerOptions{
		Instructions:       instructions,
		Logger:             s.logger,
		SubscribeHandler:   s.subscribe,
		UnsubscribeHandler: s.unsubscribe,
	})
	s.addTools()
	if opts != nil && opts.RecordsTool {
		s.addRecordsTool()
	}
	s.addResources()
	s.addPrompts()
	return s
}

// Handler serves one NewServer over Streamable HTTP with stateful sessions,
// so every client of the handler shares the same ledger. It accepts every
// request; see ProtectedHandler for one that checks access tokens.
func Handler(opts *Options) http.Handler {
	return streamableHandler(newLedgerServer(opts, nil), opts)
}

func streamableHandler(s *ledgerServer, opts *Options) http.Handler {
	handler := mcp.NewStreamableHTTPHandler(
		func(*http.Request) *mcp.Server { return s.server },
		&mcp.StreamableHTTPOptions{Logger: opts.logger(), Stateless: opts != nil && opts.Stateless},
	)
	if s.descriptionsFile == "" {
		return handler
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.Header.Get("Mcp-Session-Id") == "" {
			// A request without a session opens one: the descriptions are
			// read again for it.
			if err := s.applyDescriptions(); err != nil {
				s.logger.Warn("descriptions file", "error", err)
			}
		}
		handler.ServeHTTP(w, r)
	})
}
