package oauth

import (
	"net/http"
	"strings"
)

// MaxTokenSize bounds the length of an access token in bytes. Real access
// tokens are a few KiB at most; anything longer is refused before any
// decoding, hashing or network call.
const MaxTokenSize = 16 << 10

// ParseBearer extracts the token from the value of an Authorization header
// (RFC 6750 §2.1):
//
//	credentials = "Bearer" 1*SP b64token
//	b64token    = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//
// The scheme is matched case-insensitively (RFC 9110 §11.1). One or more
// spaces between scheme and token are accepted because the grammar says
// 1*SP; tabs, leading or trailing whitespace and anything outside the
// b64token alphabet are not. Tokens longer than MaxTokenSize are refused.
//
// An empty value returns ErrNoToken; every other failure, including another
// scheme such as Basic, returns ErrMalformed.
func ParseBearer(authorization string) (string, error) {
	if authorization == "" {
		return "", ErrNoToken
	}
	scheme, rest, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", ErrMalformed
	}
	token := strings.TrimLeft(rest, " ")
	if !isB64Token(token) {
		return "", ErrMalformed
	}
	return token, nil
}

// BearerFromHeader is ParseBearer for a request's headers. More than one
// Authorization header is ErrMalformed: which one a proxy in front of us
// would have looked at is anyone's guess.
func BearerFromHeader(header http.Header) (string, error) {
	values := header.Values("Authorization")
	switch len(values) {
	case 0:
		return "", ErrNoToken
	case 1:
		return ParseBearer(values[0])
	default:
		return "", ErrMalformed
	}
}

// isB64Token reports whether s is a non-empty RFC 6750 b64token of at most
// MaxTokenSize bytes.
func isB64Token(s string) bool {
	if s == "" || len(s) > MaxTokenSize {
		return false
	}
	end := len(s)
	for end > 0 && s[end-1] == '=' {
		end--
	}
	if end == 0 {
		return false
	}
	for i := 0; i < end; i++ {
		if !b64TokenChar[s[i]] {
			return false
		}
	}
	return true
}

var b64TokenChar = func() (table [256]bool) {
	for c := 'A'; c <= 'Z'; c++ {
		table[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		table[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		table[c] = true
	}
	for _, c := range "-._~+/" {
		table[c] = true
	}
	return table
}()
