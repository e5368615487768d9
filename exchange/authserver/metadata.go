package authserver

import (
	"encoding/json"
	"net/http"
	"slices"
)

// Metadata is the authorization server's metadata (RFC 8414), which also
// serves as its OpenID Provider configuration.
type Metadata struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	JWKSURI                                    string   `json:"jwks_uri"`
	RegistrationEndpoint                       string   `json:"registration_endpoint,omitempty"`
	ClientIDMetadataDocumentSupported          bool     `json:"client_id_metadata_document_supported,omitempty"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	ScopesSupported                            []string `json:"scopes_supported"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthMethodsSupported  []string `json:"introspection_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	AuthorizationResponseIssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
	SubjectTypesSupported                      []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported           []string `json:"id_token_signing_alg_values_supported"`
	ClaimsSupported                            []string `json:"claims_supported"`
}

func (s *Server) buildMetadata() Metadata {
	grants := []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials}
	if s.exchanger != nil {
		grants = append(grants, GrantTokenExchange)
	}
	if s.idjag != nil {
		grants = append(grants, GrantJWTBearer)
	}
	m := Metadata{
		Issuer:                            s.issuer,
		AuthorizationEndpoint:             s.endpoint(pathAuthorize),
		TokenEndpoint:                     s.endpoint(pathToken),
		JWKSURI:                           s.endpoint(pathJWKS),
		IntrospectionEndpoint:             s.endpoint(pathIntrospect),
		RevocationEndpoint:                s.endpoint(pathRevoke),
		ScopesSupported:                   slices.Clone(s.scopes),
		ResponseTypesSupported:            []string{responseTypeCode},
		ResponseModesSupported:            []string{"query"},
		GrantTypesSupported:               grants,
		TokenEndpointAuthMethodsSupported: []string{authMethodBasic, authMethodPost, authMethodNone},
		// Only confidential clients may introspect; any client may revoke
		// its own tokens.
		IntrospectionEndpointAuthMethodsSupported:  []string{authMethodBasic, authMethodPost},
		RevocationEndpointAuthMethodsSupported:     []string{authMethodBasic, authMethodPost, authMethodNone},
		CodeChallengeMethodsSupported:              []string{"S256"},
		AuthorizationResponseIssParameterSupported: true,
		SubjectTypesSupported:                      []string{"public"},
		IDTokenSigningAlgValuesSupported:           []string{idTokenAlgorithm},
		ClaimsSupported:                            []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "name", "email", "groups"},
	}
	if m.ScopesSupported == nil {
		m.ScopesSupported = []string{}
	}
	if s.registration {
		m.RegistrationEndpoint = s.endpoint(pathRegister)
	}
	m.ClientIDMetadataDocumentSupported = s.store.documents != nil
	return m
}

// Metadata returns the server's metadata, as served.
func (s *Server) Metadata() Metadata {
	m := s.metadata
	m.ScopesSupported = slices.Clone(m.ScopesSupported)
	m.GrantTypesSupported = slices.Clone(m.GrantTypesSupported)
	return m
}

// serveMetadata answers RFC 8414 and OpenID discovery requests. The
// metadata changes only with configuration, so caches may keep it a while.
func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, s.metadata)
}

// writeJSON writes value as the response body.
func writeJSON(w http.ResponseWriter, status int, value any) {
	body, err := json.Marshal(value)
	if err != nil {
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// noStore marks a response that carries tokens, secrets or their status
// (RFC 6749 §5.1, RFC 7591 §3.2.1).
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}
