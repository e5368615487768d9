package oauth

import "errors"

// Sentinels; callers compare with errors.Is. None of the errors this package
// returns contains the token or any part of it.
var (
	// ErrNoToken: the request carried no Authorization header. The broker
	// answers 401 with a challenge but without an error code (RFC 6750 §3.1).
	ErrNoToken = errors.New("oauth: no bearer token")

	// ErrMalformed: the Authorization header is present but is not a
	// syntactically valid Bearer credential (RFC 6750 §2.1). The broker
	// answers 400 invalid_request. It does not wrap ErrInvalidToken: no
	// token was recognised, so none can be invalid.
	ErrMalformed = errors.New("oauth: malformed authorization header")

	// ErrInvalidToken: the token was examined and refused. Every refusal is
	// an *InvalidTokenError that carries a Reason and matches this sentinel.
	// The broker answers 401 error="invalid_token".
	ErrInvalidToken = errors.New("oauth: invalid token")

	// ErrUnavailable: the token cannot be verified right now (the
	// authorization server is unreachable and there are no usable cached
	// keys, or introspection failed). The broker answers 503, not 401, so
	// that clients do not throw away good tokens during an IdP outage.
	ErrUnavailable = errors.New("oauth: token verification unavailable")

	// ErrInsufficientScope: the token is valid but lacks scopes the
	// request needs. The broker answers 403 error="insufficient_scope"
	// (RFC 6750 §3.1) with the scopes to step up to.
	ErrInsufficientScope = errors.New("insufficient scope")
)

// Errors of the Fetcher, wrapped with the URL that caused them.
var (
	ErrInsecureURL      = errors.New("oauth: url must be https (http only for loopback hosts), without userinfo or fragment")
	ErrBlockedAddress   = errors.New("oauth: destination address is not allowed")
	ErrRedirect         = errors.New("oauth: redirects are not followed")
	ErrResponseTooLarge = errors.New("oauth: response body too large")
	ErrHTTPStatus       = errors.New("oauth: unexpected http status")
)

// Reason says in a few words why a token was refused. It is safe to show to
// clients (error_description) and to log: it never carries token content.
type Reason string

const (
	ReasonMalformed      Reason = "malformed"        // not a well-formed JWS compact token, bad JSON, wrong claim types
	ReasonAlgorithm      Reason = "alg"              // alg not allowed, or not allowed for the key's type
	ReasonType           Reason = "typ"              // typ header is not at+jwt (RFC 9068)
	ReasonCritical       Reason = "crit"             // a crit header asks for extensions we do not process
	ReasonIssuer         Reason = "issuer"           // iss missing or not exactly a configured issuer
	ReasonKeyID          Reason = "kid"              // no key in the issuer's JWKS matches (after one refresh)
	ReasonSignature      Reason = "bad signature"    // signature does not verify
	ReasonExpired        Reason = "expired"          // exp is in the past (beyond the clock skew)
	ReasonNoExpiry       Reason = "no expiry"        // a JWT without exp
	ReasonNotYetValid    Reason = "not yet valid"    // nbf in the future
	ReasonIssuedInFuture Reason = "issued in future" // iat in the future
	ReasonAudience       Reason = "audience"         // aud does not contain an expected audience
	ReasonSubject        Reason = "subject"          // sub missing or empty
	ReasonIDToken        Reason = "id token"         // looks like an OpenID Connect ID token
	ReasonInactive       Reason = "inactive"         // introspection says active:false
	ReasonTokenType      Reason = "token type"       // introspection says this is not an access token
)

// InvalidTokenError is the concrete type of every ErrInvalidToken. Use
// errors.As to read the Reason.
type InvalidTokenError struct {
	Reason Reason
	// Detail is fixed text written by this package (never token content)
	// that narrows the reason down for operators, e.g. "exp is not a number".
	Detail string
}

func (e *InvalidTokenError) Error() string {
	if e.Detail == "" {
		return "oauth: invalid token: " + string(e.Reason)
	}
	return "oauth: invalid token: " + string(e.Reason) + ": " + e.Detail
}

// Is makes errors.Is(err, ErrInvalidToken) true.
func (e *InvalidTokenError) Is(target error) bool { return target == ErrInvalidToken }

func invalid(reason Reason, detail string) error {
	return &InvalidTokenError{Reason: reason, Detail: detail}
}

// ReasonOf returns the reason of an invalid-token error, or "" for any other error.
func ReasonOf(err error) Reason {
	var e *InvalidTokenError
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}
