package sample

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// TokenOptions make the server an OAuth 2.1 resource server, as an
// upstream behind the broker may be: every HTTP request must carry a valid
// JWT access token (RFC 9068) from Issuer for Audience.
type TokenOptions struct {
	// Issuer is the authorization server whose tokens are accepted. Its
	// keys are found through its RFC 8414 metadata, at
	// /.well-known/oauth-authorization-server inserted before the issuer's
	// path.
	Issuer string
	// Audience must be in every token's aud.
	Audience string
	// AllowPrivateNetworks lets metadata and JWKS requests reach private
	// addresses (an issuer on a container network). A loopback issuer is
	// reachable without it.
	AllowPrivateNetworks bool
}

// ProtectedHandler is Handler for a server that answers only requests
// carrying a valid access token, and whose whoami tool reports the
// verified identity. A request without one is answered 401 with a Bearer
// challenge (RFC 6750). The issuer's metadata is fetched on the first
// request, not here.
func ProtectedHandler(opts *Options, tokens TokenOptions) (http.Handler, error) {
	verifier, err := newVerifier(tokens)
	if err != nil {
		return nil, err
	}
	server := newLedgerServer(opts, verifier)
	return requireToken(verifier, streamableHandler(server, opts)), nil
}

func newVerifier(tokens TokenOptions) (*oauth.Verifier, error) {
	if tokens.Audience == "" {
		return nil, errors.New("sample: tokens need an audience")
	}
	metadataURL, err := metadataURL(tokens.Issuer)
	if err != nil {
		return nil, err
	}
	verifier, err := oauth.NewVerifier([]oauth.ServerConfig{{
		MetadataURL:       metadataURL,
		Method:            oauth.MethodJWT,
		ExpectedAudiences: []string{tokens.Audience},
	}}, oauth.Options{Fetcher: oauth.NewFetcher(oauth.FetcherOptions{AllowPrivateNetworks: tokens.AllowPrivateNetworks})})
	if err != nil {
		return nil, fmt.Errorf("sample: token verification: %w", err)
	}
	return verifier, nil
}

// metadataURL is the RFC 8414 metadata URL of an issuer (§3.1).
func metadataURL(issuer string) (string, error) {
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("sample: issuer %q: want an absolute http or https URL without query or fragment", issuer)
	}
	return u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + strings.TrimSuffix(u.EscapedPath(), "/"), nil
}

// requireToken answers a request without a valid access token with the
// resource server's challenge and passes the others on.
func requireToken(verifier *oauth.Verifier, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, err := oauth.BearerFromHeader(r.Header)
		if err == nil {
			_, err = verifier.Verify(r.Context(), token)
		}
		switch {
		case err == nil:
			next.ServeHTTP(w, r)
		case errors.Is(err, oauth.ErrNoToken):
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "unauthorized: an access token is required", http.StatusUnauthorized)
		case errors.Is(err, oauth.ErrMalformed):
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_request"`)
			http.Error(w, "bad request: malformed Authorization header", http.StatusBadRequest)
		case errors.Is(err, oauth.ErrUnavailable):
			http.Error(w, "the authorization server cannot be reached", http.StatusServiceUnavailable)
		default:
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="the access token is not valid"`)
			http.Error(w, "unauthorized: the access token is not valid", http.StatusUnauthorized)
		}
	})
}
