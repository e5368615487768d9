package exchange

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

const (
	// DefaultClientTimeout bounds one exchange at an identity provider
	// when ClientOptions names no timeout.
	DefaultClientTimeout = 10 * time.Second
	// maxTokenResponseSize caps what is read from a token endpoint: a
	// token response is a few kilobytes at most.
	maxTokenResponseSize = 64 << 10
	// maxErrorDescription caps the provider's error_description kept in
	// an *OAuthError.
	maxErrorDescription = 512
)

// ClientOptions configure a [Client].
type ClientOptions struct {
	// TokenEndpoint of the identity provider: https, or http for a
	// loopback host. Required; see [Discover] to find it.
	TokenEndpoint string
	// ClientID and ClientSecret authenticate the broker with
	// client_secret_basic (RFC 6749 §2.3.1). ClientID is required; without
	// a secret the client_id is sent in the form instead.
	ClientID     string
	ClientSecret string
	// Fetcher sends the requests; nil means a new oauth.Fetcher with the
	// default options (no private networks, no redirects, no proxy).
	Fetcher *oauth.Fetcher
	// HTTPClient, when set, is used instead of Fetcher, for transports the
	// fetcher does not offer (mutual TLS, a proxy). Redirects are never
	// followed either way.
	HTTPClient *http.Client
	// Timeout bounds one exchange. Default DefaultClientTimeout.
	Timeout time.Duration
}

// ClientRequest is one token-exchange request (RFC 8693 §2.1).
type ClientRequest struct {
	SubjectToken     string
	SubjectTokenType string // default TokenTypeAccessToken
	ActorToken       string
	ActorTokenType   string // default TokenTypeAccessToken when ActorToken is set
	// RequestedTokenType is sent when set.
	RequestedTokenType string
	Audience           string
	Resource           string
	Scopes             []string
	// Lifetime, when set, is sent as requested_lifetime (whole seconds):
	// an extension parameter asking for a token no longer-lived than that,
	// which the broker's Auth Provider honours and other servers ignore.
	Lifetime time.Duration
}

// ParamRequestedLifetime is the extension parameter of a token-exchange
// request that bounds the issued token's lifetime, in seconds.
const ParamRequestedLifetime = "requested_lifetime"

// IssuedToken is a successful token-exchange response (RFC 8693 §2.2.1).
type IssuedToken struct {
	AccessToken     string
	IssuedTokenType string
	TokenType       string        // "Bearer" or "N_A", as RFC 8693 spells them
	ExpiresIn       time.Duration // zero when the provider did not say
	// Scope is the granted scope; when the response leaves it out, it is
	// the requested one (RFC 6749 §5.1).
	Scope []string
}

// Client performs token exchanges at an external identity provider's
// token endpoint (RFC 8693), for connectors. It is safe for concurrent use.
type Client struct {
	endpoint     string
	clientID     string
	clientSecret string
	timeout      time.Duration
	post         func(ctx context.Context, endpoint string, form url.Values, user, password string) ([]byte, int, error)
}

// NewClient checks opts and returns a Client; it does no I/O.
func NewClient(opts ClientOptions) (*Client, error) {
	if err := oauth.CheckURL(opts.TokenEndpoint); err != nil {
		return nil, fmt.Errorf("exchange: client token endpoint: %w", err)
	}
	if opts.ClientID == "" {
		return nil, errors.New("exchange: client needs a client id")
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultClientTimeout
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("exchange: client timeout %s is negative", opts.Timeout)
	}
	c := &Client{
		endpoint:     opts.TokenEndpoint,
		clientID:     opts.ClientID,
		clientSecret: opts.ClientSecret,
		timeout:      opts.Timeout,
	}
	switch {
	case opts.HTTPClient != nil:
		c.post = postWith(opts.HTTPClient)
	case opts.Fetcher != nil:
		c.post = opts.Fetcher.PostForm
	default:
		c.post = oauth.NewFetcher(oauth.FetcherOptions{Timeout: opts.Timeout, MaxBodySize: maxTokenResponseSize}).PostForm
	}
	return c, nil
}

// Exchange sends req and returns the issued token. An OAuth error response
// is an *OAuthError carrying the HTTP status; any other unusable answer
// wraps ErrTokenResponse. No error contains a token or the client secret.
func (c *Client) Exchange(ctx context.Context, req ClientRequest) (*IssuedToken, error) {
	form, err := c.form(&req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	user, password := c.clientID, c.clientSecret
	if password == "" {
		user = "" // sent as client_id in the form instead
	}
	body, status, err := c.post(ctx, c.endpoint, form, user, password)
	if errors.Is(err, oauth.ErrResponseTooLarge) {
		return nil, fmt.Errorf("exchange: token exchange at %s: %w: %w", c.endpoint, ErrTokenResponse, err)
	}
	if err != nil {
		return nil, fmt.Errorf("exchange: token exchange at %s: %w", c.endpoint, err)
	}
	if len(body) > maxTokenResponseSize {
		return nil, fmt.Errorf("exchange: token exchange at %s: %w: body larger than %d bytes", c.endpoint, ErrTokenResponse, maxTokenResponseSize)
	}
	if status != http.StatusOK {
		return nil, c.errorResponse(body, status, &req)
	}
	issued, err := parseTokenResponse(body, req.Scopes)
	if err != nil {
		return nil, fmt.Errorf("exchange: token exchange at %s: %w: %w", c.endpoint, ErrTokenResponse, err)
	}
	return issued, nil
}

func (c *Client) form(req *ClientRequest) (url.Values, error) {
	switch {
	case req.SubjectToken == "":
		return nil, fmt.Errorf("exchange: %w: subject token is required", ErrClientRequest)
	case req.ActorToken == "" && req.ActorTokenType != "":
		return nil, fmt.Errorf("exchange: %w: actor token type without an actor token", ErrClientRequest)
	case req.Audience == "" && req.Resource == "":
		return nil, fmt.Errorf("exchange: %w: audience or resource is required", ErrClientRequest)
	}
	for _, scope := range req.Scopes {
		if !IsScopeToken(scope) {
			return nil, fmt.Errorf("exchange: %w: %q is not a scope token (RFC 6749 §3.3)", ErrClientRequest, scope)
		}
	}
	form := url.Values{
		"grant_type":         {GrantTypeTokenExchange},
		"subject_token":      {req.SubjectToken},
		"subject_token_type": {cmp.Or(req.SubjectTokenType, TokenTypeAccessToken)},
	}
	if req.ActorToken != "" {
		form.Set("actor_token", req.ActorToken)
		form.Set("actor_token_type", cmp.Or(req.ActorTokenType, TokenTypeAccessToken))
	}
	if req.RequestedTokenType != "" {
		form.Set("requested_token_type", req.RequestedTokenType)
	}
	if req.Audience != "" {
		form.Set("audience", req.Audience)
	}
	if req.Resource != "" {
		form.Set("resource", req.Resource)
	}
	if len(req.Scopes) > 0 {
		form.Set("scope", strings.Join(req.Scopes, " "))
	}
	if seconds := int64((req.Lifetime + time.Second - 1) / time.Second); seconds > 0 {
		form.Set(ParamRequestedLifetime, strconv.FormatInt(seconds, 10))
	}
	if c.clientSecret == "" {
		form.Set("client_id", c.clientID)
	}
	return form, nil
}

// errorResponse turns a non-200 answer into an *OAuthError when it is an
// RFC 6749 §5.2 error response, and into ErrTokenResponse otherwise.
func (c *Client) errorResponse(body []byte, status int, req *ClientRequest) error {
	if document, err := oauth.DecodeObject(body); err == nil {
		if code, ok := document["error"].(string); ok && isErrorCode(code) {
			description, _ := document["error_description"].(string)
			return &OAuthError{ErrorField: code, DescriptionField: c.sanitize(description, req), CodeField: status}
		}
	}
	return fmt.Errorf("exchange: token exchange at %s: %w: http status %d without an oauth error", c.endpoint, ErrTokenResponse, status)
}

// sanitize makes a provider's error_description safe to log: the
// request's tokens and the client secret are cut out (a provider may echo
// them), characters outside RFC 6749's set are replaced, and the length
// is capped.
func (c *Client) sanitize(description string, req *ClientRequest) string {
	for _, secret := range [...]string{req.SubjectToken, req.ActorToken, c.clientSecret} {
		if len(secret) >= 4 {
			description = strings.ReplaceAll(description, secret, "[redacted]")
		}
	}
	if len(description) > maxErrorDescription {
		description = description[:maxErrorDescription]
	}
	clean := []byte(description)
	for i, ch := range clean {
		if !errorChar(ch) {
			clean[i] = '?'
		}
	}
	return string(clean)
}

// errorChar: %x20-21 / %x23-5B / %x5D-7E (RFC 6749 §5.2).
func errorChar(ch byte) bool {
	return ch >= 0x20 && ch <= 0x7e && ch != '"' && ch != '\\'
}

func isErrorCode(code string) bool {
	if code == "" || len(code) > 64 {
		return false
	}
	for i := 0; i < len(code); i++ {
		if !errorChar(code[i]) {
			return false
		}
	}
	return true
}

// parseTokenResponse checks a 200 answer (RFC 8693 §2.2.1). requested is
// the scope asked for, which an answer without scope grants.
func parseTokenResponse(body []byte, requested []string) (*IssuedToken, error) {
	issued, err := parseAccessTokenResponse(body, requested)
	if err != nil {
		return nil, err
	}
	if issued.IssuedTokenType == "" {
		return nil, errors.New("issued_token_type missing")
	}
	return issued, nil
}

// parseAccessTokenResponse reads an RFC 6749 §5.1 response, which an
// RFC 8693 one extends with issued_token_type.
func parseAccessTokenResponse(body []byte, requested []string) (*IssuedToken, error) {
	document, err := oauth.DecodeObject(body)
	if err != nil {
		return nil, errors.New("body is not a json object")
	}
	issued := &IssuedToken{}
	var ok bool
	if issued.AccessToken, ok = document["access_token"].(string); !ok || issued.AccessToken == "" {
		return nil, errors.New("access_token missing")
	}
	issued.IssuedTokenType, _ = document["issued_token_type"].(string)
	tokenType, _ := document["token_type"].(string)
	switch {
	case strings.EqualFold(tokenType, "Bearer"):
		issued.TokenType = "Bearer"
	case strings.EqualFold(tokenType, "N_A"):
		issued.TokenType = "N_A"
	case tokenType == "":
		return nil, errors.New("token_type missing")
	default:
		return nil, errors.New("token_type is neither Bearer nor N_A")
	}
	if raw, present := document["expires_in"]; present {
		seconds, err := expiresIn(raw)
		if err != nil {
			return nil, err
		}
		issued.ExpiresIn = time.Duration(seconds) * time.Second
	}
	if raw, present := document["scope"]; present {
		scope, ok := raw.(string)
		if !ok {
			return nil, errors.New("scope is not a string")
		}
		issued.Scope = strings.Fields(scope)
	} else if len(requested) > 0 {
		issued.Scope = append([]string(nil), requested...)
	}
	return issued, nil
}

// maxExpiresIn bounds expires_in to something a Duration holds.
const maxExpiresIn = 100 * 365 * 24 * 3600

// expiresIn reads expires_in: a non-negative whole number of seconds. Some
// providers send it as a string of digits.
func expiresIn(raw any) (int64, error) {
	switch v := raw.(type) {
	case float64:
		if v < 0 || v > maxExpiresIn || v != math.Trunc(v) {
			return 0, errors.New("expires_in is not a whole number of seconds")
		}
		return int64(v), nil
	case string:
		seconds, err := strconv.ParseInt(v, 10, 64)
		if err != nil || seconds < 0 || seconds > maxExpiresIn {
			return 0, errors.New("expires_in is not a whole number of seconds")
		}
		return seconds, nil
	}
	return 0, errors.New("expires_in is not a number")
}

// postWith posts through a caller's http.Client without following
// redirects, with the same body cap and client authentication as the
// fetcher.
func postWith(client *http.Client) func(context.Context, string, url.Values, string, string) ([]byte, int, error) {
	noRedirects := *client
	noRedirects.CheckRedirect = func(*http.Request, []*http.Request) error { return oauth.ErrRedirect }
	return func(ctx context.Context, endpoint string, form url.Values, user, password string) ([]byte, int, error) {
		request, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
		if err != nil {
			return nil, 0, err
		}
		request.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		request.Header.Set("Accept", "application/json")
		if user != "" {
			request.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(password))
		}
		response, err := noRedirects.Do(request)
		if err != nil {
			return nil, 0, err // a *url.Error: method and URL, never the body
		}
		defer response.Body.Close()
		var body bytes.Buffer
		n, err := body.ReadFrom(io.LimitReader(response.Body, maxTokenResponseSize+1))
		if err != nil {
			return nil, response.StatusCode, fmt.Errorf("read body: %w", err)
		}
		if n > maxTokenResponseSize {
			return nil, response.StatusCode, oauth.ErrResponseTooLarge
		}
		return body.Bytes(), response.StatusCode, nil
	}
}

// ServerMetadata is what the broker reads from an authorization server's
// metadata document (RFC 8414, OpenID Connect Discovery).
type ServerMetadata struct {
	Issuer                string
	TokenEndpoint         string // empty when the document names none
	JWKSURI               string // empty when the document names none
	AuthorizationEndpoint string // empty when the document names none
	GrantTypesSupported   []string
	// CodeChallengeMethodsSupported lists the PKCE methods (RFC 8414).
	CodeChallengeMethodsSupported []string
	// IssParameterSupported: the server puts iss in every authorization
	// response (RFC 9207).
	IssParameterSupported bool
}

// SupportsTokenExchange reports whether the server lists the
// token-exchange grant; a server that lists no grant types may still
// support it.
func (m *ServerMetadata) SupportsTokenExchange() bool {
	return len(m.GrantTypesSupported) == 0 || slices.Contains(m.GrantTypesSupported, GrantTypeTokenExchange)
}

const (
	wellKnownOAuth = "/.well-known/oauth-authorization-server"
	wellKnownOIDC  = "/.well-known/openid-configuration"
)

// Discover fetches the metadata document at metadataURL (an RFC 8414 or
// OpenID Connect well-known URL) through fetcher (nil: a default
// oauth.Fetcher, which allows https and loopback http only, follows no
// redirects and bounds size and time), and checks that the document's
// issuer is the one the URL was built from (RFC 8414 §3.3).
func Discover(ctx context.Context, fetcher *oauth.Fetcher, metadataURL string) (*ServerMetadata, error) {
	issuer, err := oauth.IssuerFromMetadataURL(metadataURL)
	if err != nil {
		return nil, fmt.Errorf("exchange: discover %s: %w: %w", metadataURL, ErrMetadata, err)
	}
	if fetcher == nil {
		fetcher = oauth.NewFetcher(oauth.FetcherOptions{})
	}
	body, err := fetcher.Get(ctx, metadataURL)
	if err != nil {
		return nil, fmt.Errorf("exchange: discover %s: %w", metadataURL, err)
	}
	metadata, err := parseMetadata(body, issuer)
	if err != nil {
		return nil, fmt.Errorf("exchange: discover %s: %w: %w", metadataURL, ErrMetadata, err)
	}
	return metadata, nil
}

// DiscoverIssuer finds an issuer's metadata: first at its RFC 8414 URL
// (/.well-known/oauth-authorization-server inserted before the issuer's
// path), then at its OpenID Connect URL (/.well-known/openid-configuration
// appended).
func DiscoverIssuer(ctx context.Context, fetcher *oauth.Fetcher, issuer string) (*ServerMetadata, error) {
	u, err := url.Parse(issuer)
	if err != nil || u.RawQuery != "" || u.Fragment != "" || u.Host == "" {
		return nil, fmt.Errorf("exchange: discover issuer %q: %w: not an issuer url", issuer, ErrMetadata)
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	base := u.Scheme + "://" + u.Host
	metadata, err := Discover(ctx, fetcher, base+wellKnownOAuth+path)
	if err == nil {
		return metadata, nil
	}
	metadata, oidcErr := Discover(ctx, fetcher, base+path+wellKnownOIDC)
	if oidcErr == nil {
		return metadata, nil
	}
	return nil, errors.Join(err, oidcErr)
}

func parseMetadata(body []byte, derivedIssuer string) (*ServerMetadata, error) {
	document, err := oauth.DecodeObject(body)
	if err != nil {
		return nil, errors.New("not a json object")
	}
	m := &ServerMetadata{}
	var ok bool
	if m.Issuer, ok = document["issuer"].(string); !ok || m.Issuer == "" {
		return nil, errors.New("issuer missing")
	}
	// Both specifications strip a trailing "/" from the issuer before
	// building the URL.
	if m.Issuer != derivedIssuer && m.Issuer != derivedIssuer+"/" {
		return nil, fmt.Errorf("issuer %q is not %q, the one the url was built from", m.Issuer, derivedIssuer)
	}
	for name, into := range map[string]*string{"token_endpoint": &m.TokenEndpoint, "jwks_uri": &m.JWKSURI, "authorization_endpoint": &m.AuthorizationEndpoint} {
		raw, present := document[name]
		if !present {
			continue
		}
		value, ok := raw.(string)
		if !ok {
			return nil, fmt.Errorf("%s is not a string", name)
		}
		if err := oauth.CheckURL(value); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		*into = value
	}
	for name, into := range map[string]*[]string{"grant_types_supported": &m.GrantTypesSupported, "code_challenge_methods_supported": &m.CodeChallengeMethodsSupported} {
		raw, present := document[name]
		if !present {
			continue
		}
		values, _, ok := oauth.StringOrStrings(raw)
		if _, isString := raw.(string); isString || !ok {
			return nil, fmt.Errorf("%s is not an array of strings", name)
		}
		*into = values
	}
	if raw, present := document["authorization_response_iss_parameter_supported"]; present {
		if m.IssParameterSupported, ok = raw.(bool); !ok {
			return nil, errors.New("authorization_response_iss_parameter_supported is not a boolean")
		}
	}
	return m, nil
}
