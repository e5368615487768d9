package authserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	// maxRegistrationBytes caps a registration request.
	maxRegistrationBytes = 64 << 10
	maxRedirectURIs      = 20
	maxRedirectURIBytes  = 2000
	maxClientNameRunes   = 200

	// An address (an IPv6 /64) may register registrationBurst clients at
	// once and as many again every registrationWindow, so that no one
	// source reaches maxRegisteredClients; registrationAddresses bounds
	// the addresses remembered.
	registrationBurst     = 20
	registrationWindow    = time.Hour
	registrationAddresses = 10000
	// unusedClientTTL is how long a registered client is kept when no
	// token is issued to it.
	unusedClientTTL = 24 * time.Hour
)

// registrationRequest is the client metadata (RFC 7591 §2) this server
// reads; other metadata is ignored, as §2 asks.
type registrationRequest struct {
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod *string  `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	ClientName              string   `json:"client_name"`
	Scope                   *string  `json:"scope"`
}

// registrationResponse is the client information response (RFC 7591
// §3.2.1): the client's credentials and the metadata as registered.
type registrationResponse struct {
	ClientID                string   `json:"client_id"`
	ClientSecret            string   `json:"client_secret,omitempty"`
	ClientIDIssuedAt        int64    `json:"client_id_issued_at"`
	ClientSecretExpiresAt   *int64   `json:"client_secret_expires_at,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	ClientName              string   `json:"client_name,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
}

// registrationError is an RFC 7591 §3.2.2 error.
type registrationError struct {
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

// serveRegister is dynamic client registration (RFC 7591). Registered
// clients use the authorization code grant, with refresh tokens if they
// ask: public (token_endpoint_auth_method none) or confidential with a
// secret generated here. Their redirect URIs are https, or http on a
// loopback host, matched exactly; the scope they register must be the
// server's, and they may ask the user for any of the server's scopes
// (client.GetScopes). Registration is anonymous,
// so each address is rate limited, and a client that no token was issued
// to within unusedClientTTL is deleted.
func (s *Server) serveRegister(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	if contentType := r.Header.Get("Content-Type"); contentType != "" {
		if mediaType, _, err := mime.ParseMediaType(contentType); err != nil || mediaType != "application/json" {
			s.refuseRegistration(w, r, http.StatusBadRequest, "invalid_client_metadata", "the request must be application/json")
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRegistrationBytes))
	if err != nil {
		s.refuseRegistration(w, r, http.StatusBadRequest, "invalid_client_metadata", fmt.Sprintf("the request body must be at most %d bytes", maxRegistrationBytes))
		return
	}
	var metadata registrationRequest
	if err := decodeJSONObject(body, &metadata); err != nil {
		s.refuseRegistration(w, r, http.StatusBadRequest, "invalid_client_metadata", err.Error())
		return
	}
	registered, code, problem := s.newRegisteredClient(&metadata)
	if problem != "" {
		s.refuseRegistration(w, r, http.StatusBadRequest, code, problem)
		return
	}
	if retryAfter, ok := s.registrations.allow(clientIP(r), s.now()); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter.Seconds())+1))
		s.refuseRegistration(w, r, http.StatusTooManyRequests, "temporarily_unavailable", "too many registrations from this address; try again later")
		return
	}
	var secret string
	if registered.AuthMethod != authMethodNone {
		secret, registered.SecretHash = generateSecret()
	}
	if err := s.store.registerClient(registered, maxRegisteredClients); err != nil {
		switch {
		case errors.Is(err, errTooManyClients):
			s.refuseRegistration(w, r, http.StatusServiceUnavailable, "temporarily_unavailable", "no more clients can be registered")
			return
		case errors.Is(err, errStoreDown):
			s.logger.Error("authserver: register client", slog.Any("error", err))
			s.refuseRegistration(w, r, http.StatusServiceUnavailable, "temporarily_unavailable", "the client cannot be registered right now; try again later")
			return
		}
		s.logger.Error("authserver: register client", slog.Any("error", err))
		s.refuseRegistration(w, r, http.StatusInternalServerError, "server_error", "the client could not be registered")
		return
	}
	s.logger.Info("authserver: client registered", slog.String("client_id", registered.ID),
		slog.String("client_name", registered.Name), slog.String("token_endpoint_auth_method", registered.AuthMethod))

	response := registrationResponse{
		ClientID:                registered.ID,
		ClientSecret:            secret,
		ClientIDIssuedAt:        registered.IssuedAt.Unix(),
		RedirectURIs:            registered.RedirectURIs,
		TokenEndpointAuthMethod: registered.AuthMethod,
		GrantTypes:              registered.GrantTypes,
		ResponseTypes:           []string{responseTypeCode},
		ClientName:              registered.Name,
		Scope:                   strings.Join(registered.Scopes, " "),
	}
	if secret != "" {
		never := int64(0)
		response.ClientSecretExpiresAt = &never
	}
	_ = s.event(r.Context(), r, Event{Name: EventClientRegistered, Client: registered.ID, Status: http.StatusCreated, Scopes: registered.Scopes})
	writeJSON(w, http.StatusCreated, response)
}

// refuseRegistration answers a registration with an RFC 7591 error and
// records the refusal.
func (s *Server) refuseRegistration(w http.ResponseWriter, r *http.Request, status int, code, description string) {
	_ = s.event(r.Context(), r, Event{Name: EventRegistrationFailed, Status: status, Detail: code})
	writeJSON(w, status, registrationError{code, description})
}

// newRegisteredClient checks metadata and builds the client it describes.
// A problem comes with its RFC 7591 error code.
func (s *Server) newRegisteredClient(metadata *registrationRequest) (c *client, code, problem string) {
	const invalidMetadata, invalidRedirect = "invalid_client_metadata", "invalid_redirect_uri"
	if len(metadata.RedirectURIs) == 0 {
		return nil, invalidRedirect, "redirect_uris is required"
	}
	if len(metadata.RedirectURIs) > maxRedirectURIs {
		return nil, invalidRedirect, fmt.Sprintf("at most %d redirect_uris", maxRedirectURIs)
	}
	for _, redirect := range metadata.RedirectURIs {
		if len(redirect) > maxRedirectURIBytes {
			return nil, invalidRedirect, fmt.Sprintf("a redirect URI is longer than %d bytes", maxRedirectURIBytes)
		}
		if err := checkRedirectURI(redirect); err != nil {
			return nil, invalidRedirect, err.Error()
		}
	}

	method := authMethodBasic // RFC 7591 §2
	if metadata.TokenEndpointAuthMethod != nil {
		method = *metadata.TokenEndpointAuthMethod
	}
	if method != authMethodNone && method != authMethodBasic && method != authMethodPost {
		return nil, invalidMetadata, fmt.Sprintf("token_endpoint_auth_method must be %s, %s or %s", authMethodNone, authMethodBasic, authMethodPost)
	}

	grants := metadata.GrantTypes
	if len(grants) == 0 {
		grants = defaultGrantTypes
	}
	for _, grant := range grants {
		if grant != GrantAuthorizationCode && grant != GrantRefreshToken {
			return nil, invalidMetadata, fmt.Sprintf("grant_types may hold %s and %s only", GrantAuthorizationCode, GrantRefreshToken)
		}
	}
	if !slices.Contains(grants, GrantAuthorizationCode) {
		return nil, invalidMetadata, "grant_types must include " + GrantAuthorizationCode
	}
	for _, responseType := range metadata.ResponseTypes {
		if responseType != responseTypeCode {
			return nil, invalidMetadata, `response_types may hold "code" only`
		}
	}

	if utf8.RuneCountInString(metadata.ClientName) > maxClientNameRunes {
		return nil, invalidMetadata, fmt.Sprintf("client_name is longer than %d characters", maxClientNameRunes)
	}
	if strings.ContainsFunc(metadata.ClientName, isControl) {
		return nil, invalidMetadata, "client_name contains control characters"
	}

	now := s.now().UTC()
	var scopes []string
	if metadata.Scope != nil {
		for _, scope := range strings.Fields(*metadata.Scope) {
			if !slices.Contains(s.scopes, scope) {
				return nil, invalidMetadata, fmt.Sprintf("scope %q is not supported", scope)
			}
			if !slices.Contains(scopes, scope) {
				scopes = append(scopes, scope)
			}
		}
	}

	return &client{
		ID:           randomID(),
		Name:         strings.TrimSpace(metadata.ClientName),
		RedirectURIs: slices.Clone(metadata.RedirectURIs),
		GrantTypes:   dedupe(grants),
		Scopes:       scopes,
		AuthMethod:   method,
		Registered:   true,
		IssuedAt:     now,
		UnusedUntil:  now.Add(unusedClientTTL),
	}, "", ""
}

// decodeJSONObject decodes exactly one JSON object from body into value.
func decodeJSONObject(body []byte, value any) error {
	trimmed := strings.TrimSpace(string(body))
	if !strings.HasPrefix(trimmed, "{") {
		return errors.New("the request body must be a JSON object")
	}
	decoder := json.NewDecoder(strings.NewReader(trimmed))
	if err := decoder.Decode(value); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return fmt.Errorf("%s has the wrong type", typeErr.Field)
		}
		return errors.New("the request body is not valid JSON")
	}
	if decoder.More() {
		return errors.New("the request body must hold one JSON object")
	}
	if _, err := decoder.Token(); err != io.EOF {
		return errors.New("the request body must hold one JSON object")
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func dedupe(list []string) []string {
	var out []string
	for _, item := range list {
		if !slices.Contains(out, item) {
			out = append(out, item)
		}
	}
	return out
}
