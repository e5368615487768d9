package sample

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// Identity is the output of whoami: what reached the upstream, never the
// token itself.
type Identity struct {
	AuthorizationPresent bool   `json:"authorizationPresent" jsonschema:"whether the request carried an Authorization header"`
	Scheme               string `json:"scheme,omitempty" jsonschema:"authorization scheme, for example Bearer"`
	TokenFormat          string `json:"tokenFormat,omitempty" jsonschema:"jwt or opaque, for Bearer and DPoP tokens"`
	// Verified and VerifiedClaims are set by a server that checks tokens
	// (ProtectedHandler): the claims of a token whose signature, issuer,
	// audience and expiry it verified.
	Verified       bool            `json:"verified,omitempty" jsonschema:"whether this server verified the token"`
	VerifiedClaims *VerifiedClaims `json:"verifiedClaims,omitempty" jsonschema:"claims of the verified access token"`
	// The claims are decoded only; nothing here checked a signature, issuer
	// or expiry, so they say what the token claims, not that it is valid.
	UnverifiedClaims *UnverifiedClaims `json:"unverifiedClaims,omitempty" jsonschema:"JWT payload claims, decoded but NOT verified"`
	DecodeError      string            `json:"decodeError,omitempty" jsonschema:"why a token that looks like a JWT could not be decoded"`
	// BrokerIdentity is what a broker put in the request's
	// _meta["io.mcpbroker/identity"]: how a server on standard streams,
	// which has no headers, is told who calls.
	BrokerIdentity map[string]any `json:"brokerIdentity,omitempty" jsonschema:"the caller as the broker named it in _meta (io.mcpbroker/identity)"`
}

// VerifiedClaims are the claims of a verified access token that tell who
// called, for whom, and for how long.
type VerifiedClaims struct {
	Issuer    string         `json:"iss"`
	Subject   string         `json:"sub"`
	ClientID  string         `json:"client_id,omitempty"`
	Audience  []string       `json:"aud"`
	Scope     string         `json:"scope,omitempty"`
	Actor     map[string]any `json:"act,omitempty" jsonschema:"the acting party of a delegated token; earlier actors nest inside"`
	IssuedAt  int64          `json:"iat,omitempty"`
	ExpiresAt int64          `json:"exp"`
	TokenID   string         `json:"jti,omitempty"`
}

// UnverifiedClaims are the claims of a JWT payload that tell who called and
// for whom, decoded without verifying the signature.
type UnverifiedClaims struct {
	Issuer    string         `json:"iss,omitempty"`
	Subject   string         `json:"sub,omitempty"`
	Audience  []string       `json:"aud,omitempty"`
	Scope     string         `json:"scope,omitempty"`
	ClientID  string         `json:"client_id,omitempty"`
	Actor     map[string]any `json:"act,omitempty" jsonschema:"the acting party of a delegated token; earlier actors nest inside"`
	ExpiresAt int64          `json:"exp,omitempty"`
	IssuedAt  int64          `json:"iat,omitempty"`
	TokenID   string         `json:"jti,omitempty"`
}

func (s *ledgerServer) whoami(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, Identity, error) {
	var authorization string
	if req.Extra != nil && req.Extra.Header != nil {
		authorization = req.Extra.Header.Get("Authorization")
	}
	var identity Identity
	if s.verifier != nil {
		var err error
		if identity, err = s.verifiedIdentity(ctx, authorization); err != nil {
			return nil, Identity{}, err
		}
	} else {
		identity = identify(authorization)
	}
	if told, ok := req.Params.Meta["io.mcpbroker/identity"].(map[string]any); ok {
		identity.BrokerIdentity = told
	}
	return textResult(identity.text()), identity, nil
}

// errNotVerified: the request that carried the call had a token, but it no
// longer verifies (it expired while the call was on its way).
var errNotVerified = errors.New("the access token of this request is not valid")

// verifiedIdentity verifies the token of the request that carried the
// call, as the HTTP handler did before, and reports its claims.
func (s *ledgerServer) verifiedIdentity(ctx context.Context, authorization string) (Identity, error) {
	identity := Identity{AuthorizationPresent: authorization != ""}
	scheme, _, _ := strings.Cut(strings.TrimSpace(authorization), " ")
	token, err := oauth.ParseBearer(authorization)
	if err != nil {
		return identity, errNotVerified
	}
	principal, err := s.verifier.Verify(ctx, token)
	if err != nil {
		return identity, errNotVerified
	}
	identity.Scheme, identity.TokenFormat, identity.Verified = scheme, "jwt", true
	identity.VerifiedClaims = &VerifiedClaims{
		Issuer:    principal.Issuer,
		Subject:   principal.Subject,
		ClientID:  principal.ClientID,
		Audience:  principal.Audience,
		Scope:     strings.Join(principal.Scopes, " "),
		Actor:     actorClaim(principal.Actor),
		ExpiresAt: principal.Expiry.Unix(),
		TokenID:   principal.TokenID,
	}
	if !principal.IssuedAt.IsZero() {
		identity.VerifiedClaims.IssuedAt = principal.IssuedAt.Unix()
	}
	return identity, nil
}

// actorClaim renders a verified act chain as the claim it came from.
func actorClaim(a *oauth.Actor) map[string]any {
	if a == nil {
		return nil
	}
	claim := map[string]any{}
	if a.Subject != "" {
		claim["sub"] = a.Subject
	}
	if a.ClientID != "" {
		claim["client_id"] = a.ClientID
	}
	if a.Actor != nil {
		claim["act"] = actorClaim(a.Actor)
	}
	return claim
}

// identify describes an Authorization header value without repeating it.
func identify(authorization string) Identity {
	if authorization == "" {
		return Identity{}
	}
	identity := Identity{AuthorizationPresent: true}
	scheme, credentials, _ := strings.Cut(strings.TrimSpace(authorization), " ")
	credentials = strings.TrimSpace(credentials)
	if credentials == "" {
		// A value without a scheme may be the bare token: report nothing of it.
		return identity
	}
	identity.Scheme = scheme
	if !strings.EqualFold(scheme, "Bearer") && !strings.EqualFold(scheme, "DPoP") {
		return identity
	}
	if strings.Count(credentials, ".") != 2 {
		identity.TokenFormat = "opaque"
		return identity
	}
	identity.TokenFormat = "jwt"
	claims, err := decodeUnverifiedClaims(credentials)
	if err != nil {
		identity.DecodeError = err.Error()
		return identity
	}
	identity.UnverifiedClaims = claims
	return identity
}

func (i Identity) text() string {
	text := i.headerText()
	if i.BrokerIdentity != nil {
		told, _ := json.MarshalIndent(i.BrokerIdentity, "", "  ")
		text += fmt.Sprintf("\nidentity in _meta (io.mcpbroker/identity):\n%s", told)
	}
	return text
}

func (i Identity) headerText() string {
	if !i.AuthorizationPresent {
		return "Authorization header: absent"
	}
	var b strings.Builder
	b.WriteString("Authorization header: present")
	if i.Scheme != "" {
		fmt.Fprintf(&b, ", scheme %q", i.Scheme)
	}
	if i.TokenFormat != "" {
		fmt.Fprintf(&b, ", %s token", i.TokenFormat)
	}
	if i.DecodeError != "" {
		fmt.Fprintf(&b, "\ncould not decode the token: %s", i.DecodeError)
	}
	if i.VerifiedClaims != nil {
		claims, _ := json.MarshalIndent(i.VerifiedClaims, "", "  ")
		fmt.Fprintf(&b, "\nclaims (verified):\n%s", claims)
	}
	if i.UnverifiedClaims != nil {
		claims, _ := json.MarshalIndent(i.UnverifiedClaims, "", "  ")
		fmt.Fprintf(&b, "\nclaims (decoded, NOT verified):\n%s", claims)
	}
	return b.String()
}

// Fixed messages: an error must never quote the token it failed on.
var (
	errJWTShape   = oauth.ErrNotJWS
	errJWTBase64  = oauth.ErrPayloadEncoding
	errJWTPayload = errors.New("payload is not a JSON object with the registered claim types")
	errJWTNumber  = errors.New("exp or iat is not a NumericDate")
)

// decodeUnverifiedClaims decodes the payload of a compact JWS with the
// house's strict JOSE decoders and claim readers (provider/oauth). It checks
// nothing else: the signature, issuer and expiry are the broker's business,
// and this server only reports what arrived.
func decodeUnverifiedClaims(token string) (*UnverifiedClaims, error) {
	claims, err := oauth.UnverifiedPayload(token)
	switch {
	case errors.Is(err, oauth.ErrPayloadObject):
		return nil, errJWTPayload
	case err != nil:
		return nil, err
	}
	decoded := &UnverifiedClaims{}
	var ok bool
	for name, into := range map[string]*string{"iss": &decoded.Issuer, "sub": &decoded.Subject, "scope": &decoded.Scope, "client_id": &decoded.ClientID, "jti": &decoded.TokenID} {
		if *into, err = oauth.StringClaim(claims, name); err != nil {
			return nil, errJWTPayload
		}
	}
	if decoded.Audience, _, ok = oauth.StringOrStrings(claims["aud"]); !ok {
		return nil, errJWTPayload
	}
	if raw := claims["act"]; raw != nil {
		if decoded.Actor, ok = raw.(map[string]any); !ok {
			return nil, errJWTPayload
		}
	}
	for name, into := range map[string]*int64{"exp": &decoded.ExpiresAt, "iat": &decoded.IssuedAt} {
		at, err := oauth.NumericDate(claims, name)
		if err != nil {
			return nil, errJWTNumber
		}
		if !at.IsZero() {
			*into = at.Unix()
		}
	}
	return decoded, nil
}
