package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpbroker/mcpbroker/exchange"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
	"github.com/urfave/cli/v2"
)

const (
	// defaultCallbackPort is the port of http://127.0.0.1:53682/callback,
	// the redirect URI a client registers for logins from a terminal.
	defaultCallbackPort = 53682
	callbackPath        = "/callback"
	// defaultLoginTimeout is how long a login waits for the browser.
	defaultLoginTimeout = 5 * time.Minute
	// callbackReadTimeout bounds each request to the redirect listener.
	callbackReadTimeout = 10 * time.Second
)

func tokenLoginCommand() *cli.Command {
	return &cli.Command{
		Name:  "login",
		Usage: "obtain an access token with the authorization code flow and PKCE",
		Description: "Discovers the issuer's metadata, listens on http://127.0.0.1:PORT/callback (the redirect URI\n" +
			"the client must have registered), prints the authorization URL on standard error and opens\n" +
			"it in a browser, waits for the redirect, redeems the code and prints the token response as\n" +
			"JSON on standard output:\n\n" +
			"   mcpbroker token login --issuer URL --client-id ID | jq -r .access_token\n\n" +
			"With --username and --password-stdin no browser is needed: the embedded authorization\n" +
			"server's login and consent forms are filled in here, and consent is given. --port 0 takes\n" +
			"any free port, for servers that accept any loopback port (RFC 8252 §7.3).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "issuer", Usage: "the authorization server's issuer `URL`", Required: true},
			&cli.StringFlag{Name: "client-id", Usage: "the client `ID`", Required: true},
			&cli.StringFlag{Name: "client-secret", Usage: "the client `SECRET` of a confidential client (sent with HTTP Basic)", EnvVars: []string{"MCPBROKER_CLIENT_SECRET"}},
			&cli.StringSliceFlag{Name: "scope", Usage: "a `SCOPE` to request; repeat for several"},
			&cli.StringFlag{Name: "resource", Usage: "the resource `URI` the token is for (RFC 8707)"},
			&cli.IntFlag{Name: "port", Value: defaultCallbackPort, Usage: "listen for the redirect on 127.0.0.1:`PORT`"},
			&cli.BoolFlag{Name: "no-browser", Usage: "only print the authorization URL"},
			&cli.StringFlag{Name: "username", Usage: "sign in as `USER` at the embedded authorization server's login form"},
			&cli.BoolFlag{Name: "password-stdin", Usage: "read the password for --username from standard input"},
			&cli.DurationFlag{Name: "timeout", Value: defaultLoginTimeout, Usage: "give up after `DURATION`"},
			allowPrivateNetworksFlag(),
		},
		Action: func(c *cli.Context) error {
			opts := loginOptions{
				issuer:       c.String("issuer"),
				clientID:     c.String("client-id"),
				clientSecret: c.String("client-secret"),
				scopes:       c.StringSlice("scope"),
				resource:     c.String("resource"),
				port:         c.Int("port"),
				openBrowser:  !c.Bool("no-browser"),
				username:     c.String("username"),
				timeout:      c.Duration("timeout"),
				fetcher:      newFetcher(c),
			}
			switch {
			case (opts.username != "") != c.Bool("password-stdin"):
				return cli.Exit("token login: --username and --password-stdin go together", 2)
			case opts.port < 0 || opts.port > 65535:
				return cli.Exit(fmt.Sprintf("token login: --port %d is not a port", opts.port), 2)
			case opts.timeout <= 0:
				return cli.Exit("token login: --timeout must be positive", 2)
			}
			if opts.username != "" {
				password, err := readBounded(c.App.Reader)
				if err != nil {
					return cli.Exit("token login: "+err.Error(), 1)
				}
				line, _, _ := strings.Cut(string(password), "\n")
				if opts.password = strings.TrimSuffix(line, "\r"); opts.password == "" {
					return cli.Exit("token login: the password on standard input is empty", 1)
				}
			}
			response, err := login(c.Context, c.App.ErrWriter, opts)
			if err != nil {
				return cli.Exit("token login: "+err.Error(), 1)
			}
			encoder := json.NewEncoder(c.App.Writer)
			encoder.SetIndent("", "  ")
			return encoder.Encode(response)
		},
	}
}

type loginOptions struct {
	issuer       string
	clientID     string
	clientSecret string
	scopes       []string
	resource     string
	port         int
	openBrowser  bool
	username     string // set: fill in the login and consent forms
	password     string
	timeout      time.Duration
	fetcher      *oauth.Fetcher
}

// tokenResponse is what login prints: the token endpoint's answer
// (RFC 6749 §5.1).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in,omitempty"`
	Scope        string `json:"scope,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
}

// login runs the authorization code flow with PKCE from start to finish.
func login(ctx context.Context, stderr io.Writer, opts loginOptions) (*tokenResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	metadata, err := discoverLogin(ctx, opts.fetcher, opts.issuer)
	if err != nil {
		return nil, err
	}
	listener, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.port)))
	if err != nil {
		return nil, fmt.Errorf("listen for the redirect: %w (choose another --port and register its redirect URI)", err)
	}
	flow := newCodeFlow(metadata, opts, "http://"+listener.Addr().String()+callbackPath)
	results := make(chan callbackResult, 1)
	server := callbackServer(flow.callbackHandler(results), callbackReadTimeout)
	go func() { _ = server.Serve(listener) }() // Close ends it with ErrServerClosed
	defer server.Close()

	authorizationURL := flow.authorizationURL()
	fmt.Fprintf(stderr, "Authorization URL:\n\n  %s\n\n", authorizationURL)
	if opts.username != "" {
		// The password goes to the issuer's own sign-in page only, whatever
		// the metadata names as the authorization endpoint.
		if !sameOrigin(metadata.AuthorizationEndpoint, opts.issuer) {
			return nil, fmt.Errorf("authorization endpoint %s is not at the issuer's origin; --username signs in only at the issuer itself", metadata.AuthorizationEndpoint)
		}
		signer := newFormSigner(metadata.AuthorizationEndpoint, flow.redirectURI, opts.username, opts.password)
		if err := signer.signIn(ctx, authorizationURL); err != nil {
			// A redirect the callback took but refused says best why.
			select {
			case result := <-results:
				if result.err != nil {
					return nil, result.err
				}
			default:
			}
			return nil, err
		}
	} else {
		if opts.openBrowser {
			if err := openBrowser(authorizationURL); err != nil {
				fmt.Fprintf(stderr, "Could not open a browser (%v); open the URL yourself.\n", err)
			}
		}
		fmt.Fprintf(stderr, "Waiting up to %s for the redirect to %s\n", opts.timeout, flow.redirectURI)
	}
	select {
	case result := <-results:
		if result.err != nil {
			return nil, result.err
		}
		return flow.redeem(ctx, result.code)
	case <-ctx.Done():
		return nil, fmt.Errorf("no redirect to %s within %s", flow.redirectURI, opts.timeout)
	}
}

// loginMetadata is what the code flow needs of the issuer's metadata.
type loginMetadata struct {
	Issuer                string
	AuthorizationEndpoint string
	TokenEndpoint         string
	// IssParameterSupported: the server puts iss in every authorization
	// response (RFC 9207), so one without it did not come from the server.
	IssParameterSupported bool
}

// discoverLogin finds the issuer's metadata with exchange.DiscoverIssuer,
// which checks the issuer and the token endpoint, then reads what only the
// code flow needs from the same document.
func discoverLogin(ctx context.Context, fetcher *oauth.Fetcher, issuer string) (*loginMetadata, error) {
	metadata, err := exchange.DiscoverIssuer(ctx, fetcher, issuer)
	if err != nil {
		return nil, err
	}
	if metadata.TokenEndpoint == "" {
		return nil, fmt.Errorf("%s's metadata names no token_endpoint", metadata.Issuer)
	}
	if metadata.AuthorizationEndpoint == "" {
		return nil, fmt.Errorf("%s's metadata names no authorization_endpoint", metadata.Issuer)
	}
	if !slices.Contains(metadata.CodeChallengeMethodsSupported, "S256") {
		return nil, fmt.Errorf("%s does not support PKCE with S256 (code_challenge_methods_supported: %q)", metadata.Issuer, metadata.CodeChallengeMethodsSupported)
	}
	return &loginMetadata{
		Issuer:                metadata.Issuer,
		AuthorizationEndpoint: metadata.AuthorizationEndpoint,
		TokenEndpoint:         metadata.TokenEndpoint,
		IssParameterSupported: metadata.IssParameterSupported,
	}, nil
}

// codeFlow is one authorization request and what its answer must match.
type codeFlow struct {
	metadata     *loginMetadata
	clientID     string
	clientSecret string
	scopes       []string
	resource     string
	redirectURI  string
	state        string
	verifier     string // the PKCE code_verifier (RFC 7636)
	fetcher      *oauth.Fetcher
}

func newCodeFlow(metadata *loginMetadata, opts loginOptions, redirectURI string) *codeFlow {
	return &codeFlow{
		metadata:     metadata,
		clientID:     opts.clientID,
		clientSecret: opts.clientSecret,
		scopes:       opts.scopes,
		resource:     opts.resource,
		redirectURI:  redirectURI,
		state:        randomString(16),
		verifier:     randomString(32), // 43 characters, the least RFC 7636 allows
		fetcher:      opts.fetcher,
	}
}

// randomString is n random bytes, base64url.
func randomString(n int) string {
	data := make([]byte, n)
	_, _ = rand.Read(data) // crypto/rand.Read never fails; it crashes the program instead
	return base64.RawURLEncoding.EncodeToString(data)
}

func (f *codeFlow) authorizationURL() string {
	u, _ := url.Parse(f.metadata.AuthorizationEndpoint) // checked by discoverLogin
	challenge := sha256.Sum256([]byte(f.verifier))
	query := u.Query()
	query.Set("response_type", "code")
	query.Set("client_id", f.clientID)
	query.Set("redirect_uri", f.redirectURI)
	query.Set("state", f.state)
	query.Set("code_challenge", base64.RawURLEncoding.EncodeToString(challenge[:]))
	query.Set("code_challenge_method", "S256")
	if len(f.scopes) > 0 {
		query.Set("scope", strings.Join(f.scopes, " "))
	}
	if f.resource != "" {
		query.Set("resource", f.resource)
	}
	u.RawQuery = query.Encode()
	return u.String()
}

type callbackResult struct {
	code string
	err  error
}

// callbackHandler takes the first redirect to the callback path that
// carries this flow's state, sends what it says on results and tells the
// browser the outcome. Later redirects are refused: a code is redeemed
// once.
func (f *codeFlow) callbackHandler(results chan<- callbackResult) http.Handler {
	var once sync.Once
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != callbackPath {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		// Any page the browser shows meanwhile can send it here; only the
		// authorization server knows the state, so a redirect without it
		// is turned away and the login goes on waiting.
		if subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("state")), []byte(f.state)) != 1 {
			http.Error(w, "mcpbroker: "+errForeignState.Error(), http.StatusBadRequest)
			return
		}
		answered := false
		once.Do(func() {
			answered = true
			code, err := f.checkCallback(r.URL.Query())
			results <- callbackResult{code: code, err: err}
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprintf(w, "mcpbroker: sign-in failed: %v\nSee the terminal.\n", err)
				return
			}
			fmt.Fprintln(w, "mcpbroker: signed in. You can close this window and return to the terminal.")
		})
		if !answered {
			http.Error(w, "mcpbroker: this login has already received its redirect", http.StatusConflict)
		}
	})
}

var errForeignState = errors.New("the redirect's state is not this login's: it answers another authorization request")

// checkCallback returns the code of an authorization response that answers
// this flow's request, or why it does not.
func (f *codeFlow) checkCallback(query url.Values) (string, error) {
	// RFC 9207: a response naming another issuer comes from a server this
	// request was not sent to (a mix-up attack), whatever else it says.
	issuers, hasIssuer := query["iss"]
	switch {
	case hasIssuer && (len(issuers) != 1 || issuers[0] != f.metadata.Issuer):
		return "", fmt.Errorf("the redirect's iss %q is not the issuer %q (RFC 9207)", printable(query.Get("iss")), f.metadata.Issuer)
	case !hasIssuer && f.metadata.IssParameterSupported:
		return "", fmt.Errorf("the redirect has no iss, which %s always sends (RFC 9207)", f.metadata.Issuer)
	}
	if subtle.ConstantTimeCompare([]byte(query.Get("state")), []byte(f.state)) != 1 {
		return "", errForeignState
	}
	if code := query.Get("error"); code != "" {
		return "", fmt.Errorf("the authorization server refused: %w", &oauthErrorResponse{Code: code, Description: query.Get("error_description")})
	}
	code := query.Get("code")
	if code == "" {
		return "", errors.New("the redirect carries neither code nor error")
	}
	return code, nil
}

// redeem exchanges the code at the token endpoint, authenticating with
// client_secret_basic when the client has a secret.
func (f *codeFlow) redeem(ctx context.Context, code string) (*tokenResponse, error) {
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {f.redirectURI},
		"code_verifier": {f.verifier},
	}
	if f.resource != "" {
		form.Set("resource", f.resource)
	}
	user := ""
	if f.clientSecret != "" {
		user = f.clientID
	} else {
		form.Set("client_id", f.clientID)
	}
	body, status, err := f.fetcher.PostForm(ctx, f.metadata.TokenEndpoint, form, user, f.clientSecret)
	if err != nil {
		return nil, fmt.Errorf("redeem the code: %w", err)
	}
	if status != http.StatusOK {
		var refusal oauthErrorResponse
		if json.Unmarshal(body, &refusal) != nil || refusal.Code == "" {
			return nil, fmt.Errorf("the token endpoint %s answered HTTP %d without an OAuth error", f.metadata.TokenEndpoint, status)
		}
		return nil, fmt.Errorf("the token endpoint refused the code: %w", &refusal)
	}
	var answer struct {
		tokenResponse
		// Some servers send expires_in as a string of digits.
		ExpiresIn json.Number `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return nil, fmt.Errorf("the token endpoint's answer is not a token response: %w", err)
	}
	response := answer.tokenResponse
	if response.AccessToken == "" || response.TokenType == "" {
		return nil, errors.New("the token endpoint's answer lacks access_token or token_type")
	}
	if answer.ExpiresIn != "" {
		if response.ExpiresIn, err = strconv.ParseInt(answer.ExpiresIn.String(), 10, 64); err != nil || response.ExpiresIn < 0 {
			return nil, fmt.Errorf("the token endpoint's expires_in %q is not a number of seconds", printable(answer.ExpiresIn.String()))
		}
	}
	return &response, nil
}

// oauthErrorResponse is an OAuth error (RFC 6749 §4.1.2.1, §5.2), from a
// redirect or a token endpoint.
type oauthErrorResponse struct {
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *oauthErrorResponse) Error() string {
	if e.Description == "" {
		return printable(e.Code)
	}
	return printable(e.Code) + ": " + printable(e.Description)
}

// printable keeps the characters RFC 6749 allows in error and
// error_description, and at most 300 of them: the text comes from a
// server or a redirect and goes to a terminal.
func printable(s string) string {
	const limit = 300
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < limit; i++ {
		if c := s[i]; c >= 0x20 && c <= 0x7e && c != '"' && c != '\\' {
			b.WriteByte(c)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}

// openBrowser asks the desktop to open target; it does not wait for the
// browser.
func openBrowser(target string) error {
	var command *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		command = exec.Command("open", target)
	case "windows":
		command = exec.Command("rundll32", "url.dll,FileProtocolHandler", target)
	default:
		command = exec.Command("xdg-open", target)
	}
	if err := command.Start(); err != nil {
		return err
	}
	// Reap the opener; its status says nothing about the browser.
	go func() { _ = command.Wait() }()
	return nil
}

// sameOrigin reports whether two URLs share scheme, host and port.
func sameOrigin(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	return errA == nil && errB == nil && ua.Scheme == ub.Scheme && strings.EqualFold(ua.Host, ub.Host)
}

// callbackServer serves the redirect listener. Its one answer is short and
// never streams, so a whole request (a body it does not read included) must
// arrive within readTimeout, and an idle connection is closed after as
// long: nothing another local client sends can hold it.
func callbackServer(handler http.Handler, readTimeout time.Duration) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: readTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      readTimeout,
		IdleTimeout:       readTimeout,
	}
}
