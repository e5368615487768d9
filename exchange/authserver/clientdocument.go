package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// Bounds on client ID metadata documents
// (draft-ietf-oauth-client-id-metadata-document).
const (
	// maxClientDocumentBytes is the draft's recommended size limit.
	maxClientDocumentBytes = 5 << 10
	// clientDocumentTimeout bounds one fetch, waiting for a turn included:
	// the user's browser waits meanwhile.
	clientDocumentTimeout = 5 * time.Second
	// A document is kept for its Cache-Control max-age within these
	// bounds; the lower one carries a document through one sign-in and the
	// token request that follows, the upper one bounds how long a changed
	// or withdrawn document goes unnoticed.
	minClientDocumentTTL     = time.Minute
	maxClientDocumentTTL     = 24 * time.Hour
	defaultClientDocumentTTL = 10 * time.Minute
	clientDocumentCacheSize  = 1000
	// maxClientDocumentFetches bounds the fetches in flight, since anyone
	// can make the server fetch by sending a client_id.
	maxClientDocumentFetches = 16
	maxClientIDURLBytes      = 2000
)

// errClientDocument: a client_id is an https URL but its document cannot
// be fetched or is not acceptable. The cause is logged, never shown: it
// would tell a caller what answers at an address.
var errClientDocument = errors.New("authserver: client metadata document refused")

// clientDocuments resolves client IDs that are https URLs to the client
// their metadata document describes, and caches what it resolved. Such
// clients are public, and are never stored.
type clientDocuments struct {
	fetcher       *oauth.Fetcher
	allowLoopback bool
	cache         *lru.Cache[string, cachedClient]
	turns         chan struct{} // one token per fetch in flight
	scopes        []string
	audiences     []string
	logger        *slog.Logger
	now           func() time.Time
}

type cachedClient struct {
	client  *client
	expires time.Time
}

// newClientDocuments builds the resolver. fetch's size and time bounds are
// lowered to the server's own when larger.
func newClientDocuments(fetch oauth.FetcherOptions, scopes, audiences []string, logger *slog.Logger, now func() time.Time) *clientDocuments {
	if fetch.MaxBodySize <= 0 || fetch.MaxBodySize > maxClientDocumentBytes {
		fetch.MaxBodySize = maxClientDocumentBytes
	}
	if fetch.Timeout <= 0 || fetch.Timeout > clientDocumentTimeout {
		fetch.Timeout = clientDocumentTimeout
	}
	cache, _ := lru.New[string, cachedClient](clientDocumentCacheSize) // the size is positive
	return &clientDocuments{
		fetcher:       oauth.NewFetcher(fetch),
		allowLoopback: fetch.AllowLoopback,
		cache:         cache,
		turns:         make(chan struct{}, maxClientDocumentFetches),
		scopes:        scopes,
		audiences:     audiences,
		logger:        logger,
		now:           now,
	}
}

// isClientIDURL tells client IDs meant as metadata document URLs from the
// others; whether the URL is acceptable is checkClientIDURL's business.
func isClientIDURL(id string) bool { return strings.HasPrefix(id, "https://") }

// client returns the client whose metadata document is at id, from the
// cache or fetched now. Failures wrap errClientDocument.
func (d *clientDocuments) client(ctx context.Context, id string) (*client, error) {
	if cached, ok := d.cache.Get(id); ok && d.now().Before(cached.expires) {
		c := *cached.client
		return &c, nil
	}
	c, ttl, err := d.fetch(ctx, id)
	if err != nil {
		d.logger.Info("authserver: client metadata document refused", slog.String("client_id", id), slog.Any("error", err))
		return nil, fmt.Errorf("%w: %q: %w", errClientDocument, id, err)
	}
	d.cache.Add(id, cachedClient{client: c, expires: d.now().Add(ttl)})
	copied := *c
	return &copied, nil
}

// placeholder stands for the client at id in stored codes and tokens. They
// need only its identity: every token request resolves the client itself.
func (d *clientDocuments) placeholder(id string) *client {
	return &client{
		ID:               id,
		GrantTypes:       slices.Clone(defaultGrantTypes),
		AuthMethod:       authMethodNone,
		documentHost:     clientIDHost(id),
		defaultScopes:    d.scopes,
		defaultAudiences: d.audiences,
	}
}

// fetch gets and checks the document at id, and says how long it may be
// kept.
func (d *clientDocuments) fetch(ctx context.Context, id string) (*client, time.Duration, error) {
	if err := checkClientIDURL(id, d.allowLoopback); err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, clientDocumentTimeout)
	defer cancel()
	select {
	case d.turns <- struct{}{}:
		defer func() { <-d.turns }()
	case <-ctx.Done():
		return nil, 0, errors.New("too many client metadata documents are being fetched")
	}
	body, header, err := d.fetcher.GetWithHeader(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	if len(body) > maxClientDocumentBytes {
		return nil, 0, fmt.Errorf("the document is larger than %d bytes", maxClientDocumentBytes)
	}
	if !isJSONMediaType(header.Get("Content-Type")) {
		return nil, 0, fmt.Errorf("the document's content type %q is not JSON", header.Get("Content-Type"))
	}
	var document clientDocument
	if err := decodeJSONObject(body, &document); err != nil {
		return nil, 0, err
	}
	c, err := document.client(id)
	if err != nil {
		return nil, 0, err
	}
	c.defaultScopes, c.defaultAudiences = d.scopes, d.audiences
	return c, documentTTL(header.Values("Cache-Control")), nil
}

// checkClientIDURL applies the draft's rules to a client_id URL: https,
// a host and a path, no fragment, no user information, no dot segments.
// It also refuses, unless allowLoopback, a host that names the loopback
// interface: the URL is the caller's choice, and the server's own
// loopback services are not theirs to probe. Other addresses are judged
// by the fetcher when it connects.
func checkClientIDURL(id string, allowLoopback bool) error {
	if len(id) > maxClientIDURLBytes {
		return fmt.Errorf("the client_id is longer than %d bytes", maxClientIDURLBytes)
	}
	if strings.ContainsFunc(id, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return errors.New("the client_id must be printable ASCII without spaces")
	}
	u, err := url.Parse(id)
	switch {
	case err != nil:
		return errors.New("the client_id is not a URL")
	case u.Scheme != "https" || u.Host == "" || u.Opaque != "":
		return errors.New("the client_id must be an https URL with a host")
	case u.User != nil:
		return errors.New("the client_id must have no user information")
	case u.Fragment != "" || strings.Contains(id, "#"):
		return errors.New("the client_id must have no fragment")
	case u.Hostname() == "":
		return errors.New("the client_id must name a host")
	}
	path := u.EscapedPath()
	if path == "" || path == "/" {
		return errors.New("the client_id must have a path")
	}
	for _, segment := range strings.Split(path, "/") {
		if unescaped, err := url.PathUnescape(segment); err != nil || unescaped == "." || unescaped == ".." {
			return errors.New("the client_id's path must have no dot segments or bad escapes")
		}
	}
	if !allowLoopback && oauth.IsLoopbackHost(u.Hostname()) {
		return errors.New("the client_id names a loopback host")
	}
	return nil
}

// clientIDHost is the host (and port) of a client_id URL, which the pages
// show: it is what the user can trust about such a client.
func clientIDHost(id string) string {
	u, err := url.Parse(id)
	if err != nil {
		return ""
	}
	return u.Host
}

// clientDocument is the client metadata (RFC 7591 §2) this server reads
// from a document; other metadata is ignored. The scope a document names
// is not a limit here: the user consents to the scopes each request asks
// for, within the server's.
type clientDocument struct {
	ClientID                string          `json:"client_id"`
	ClientName              string          `json:"client_name"`
	RedirectURIs            []string        `json:"redirect_uris"`
	GrantTypes              []string        `json:"grant_types"`
	ResponseTypes           []string        `json:"response_types"`
	TokenEndpointAuthMethod *string         `json:"token_endpoint_auth_method"`
	ClientSecret            json.RawMessage `json:"client_secret"`
	ClientSecretExpiresAt   json.RawMessage `json:"client_secret_expires_at"`
}

// client checks the document found at id and builds the public client it
// describes. The rules are those of dynamic registration, except that no
// secret can be shared: the client authenticates with none.
func (document *clientDocument) client(id string) (*client, error) {
	if document.ClientID != id {
		return nil, fmt.Errorf("the document's client_id %q is not its URL", document.ClientID)
	}
	if document.ClientSecret != nil || document.ClientSecretExpiresAt != nil {
		return nil, errors.New("the document must not hold client_secret or client_secret_expires_at")
	}
	// No symmetric secret can exist, so an absent method can only mean
	// none; private_key_jwt is not offered.
	if method := document.TokenEndpointAuthMethod; method != nil && *method != authMethodNone {
		return nil, fmt.Errorf("token_endpoint_auth_method %q is not supported; use %s", *method, authMethodNone)
	}

	if len(document.RedirectURIs) == 0 {
		return nil, errors.New("redirect_uris is required")
	}
	if len(document.RedirectURIs) > maxRedirectURIs {
		return nil, fmt.Errorf("at most %d redirect_uris", maxRedirectURIs)
	}
	for _, redirect := range document.RedirectURIs {
		if len(redirect) > maxRedirectURIBytes {
			return nil, fmt.Errorf("a redirect URI is longer than %d bytes", maxRedirectURIBytes)
		}
		if err := checkRedirectURI(redirect); err != nil {
			return nil, err
		}
	}

	grants := document.GrantTypes
	if len(grants) == 0 {
		grants = defaultGrantTypes
	}
	for _, grant := range grants {
		if grant != GrantAuthorizationCode && grant != GrantRefreshToken {
			return nil, fmt.Errorf("grant_types may hold %s and %s only", GrantAuthorizationCode, GrantRefreshToken)
		}
	}
	if !slices.Contains(grants, GrantAuthorizationCode) {
		return nil, errors.New("grant_types must include " + GrantAuthorizationCode)
	}
	for _, responseType := range document.ResponseTypes {
		if responseType != responseTypeCode {
			return nil, errors.New(`response_types may hold "code" only`)
		}
	}

	if utf8.RuneCountInString(document.ClientName) > maxClientNameRunes {
		return nil, fmt.Errorf("client_name is longer than %d characters", maxClientNameRunes)
	}
	if strings.ContainsFunc(document.ClientName, isControl) {
		return nil, errors.New("client_name contains control characters")
	}

	return &client{
		ID:           id,
		Name:         strings.TrimSpace(document.ClientName),
		RedirectURIs: slices.Clone(document.RedirectURIs),
		GrantTypes:   dedupe(grants),
		AuthMethod:   authMethodNone,
		documentHost: clientIDHost(id),
	}, nil
}

// isJSONMediaType: application/json, or a more specific application/*+json.
func isJSONMediaType(contentType string) bool {
	mediaType, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mediaType == "application/json" || strings.HasPrefix(mediaType, "application/") && strings.HasSuffix(mediaType, "+json")
}

// documentTTL is how long a document may be kept: its Cache-Control
// max-age, within the server's bounds. no-cache and no-store get the
// lower bound, which a sign-in needs to complete.
func documentTTL(cacheControl []string) time.Duration {
	ttl := defaultClientDocumentTTL
	for _, header := range cacheControl {
		for _, directive := range strings.Split(header, ",") {
			name, value, _ := strings.Cut(strings.TrimSpace(directive), "=")
			switch strings.ToLower(name) {
			case "no-cache", "no-store":
				return minClientDocumentTTL
			case "max-age":
				seconds, err := strconv.ParseInt(strings.Trim(value, `"`), 10, 64)
				if err != nil || seconds < 0 {
					continue
				}
				ttl = time.Duration(min(seconds, int64(maxClientDocumentTTL/time.Second))) * time.Second
			}
		}
	}
	return min(max(ttl, minClientDocumentTTL), maxClientDocumentTTL)
}
