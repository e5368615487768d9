package exchange

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// TypeAccessToken is the typ header of RFC 9068 JWT access tokens.
const TypeAccessToken = "at+jwt"

// signatureSize is the same for both algorithms: an Ed25519 signature, and
// an ES256 signature as R || S, each 32 bytes (RFC 7518 §3.4).
const signatureSize = 64

var base64url = base64.RawURLEncoding

// Signer is one private key ready to produce JWS compact serializations. It
// is built once per key: the protected header of access tokens is encoded
// in advance, so signing a token costs one claims encoding, one signature
// and one buffer.
type Signer struct {
	keyID     string
	algorithm jose.SignatureAlgorithm
	ed25519   ed25519.PrivateKey // set for EdDSA
	ecdsa     *ecdsa.PrivateKey  // set for ES256

	accessTokenHeader string // base64url of {"alg","kid","typ":"at+jwt"}
}

func newSigner(keyID string, algorithm jose.SignatureAlgorithm, private any) (*Signer, error) {
	s := &Signer{keyID: keyID, algorithm: algorithm}
	switch key := private.(type) {
	case ed25519.PrivateKey:
		if algorithm != jose.EdDSA {
			return nil, ErrKeyMismatch
		}
		s.ed25519 = key
	case *ecdsa.PrivateKey:
		if algorithm != jose.ES256 || key.Curve != elliptic.P256() {
			return nil, ErrKeyMismatch
		}
		s.ecdsa = key
	default:
		return nil, fmt.Errorf("%w: %T", ErrAlgorithm, private)
	}
	s.accessTokenHeader = s.header(TypeAccessToken)
	return s, nil
}

// KeyID is the kid, the key's RFC 7638 thumbprint.
func (s *Signer) KeyID() string { return s.keyID }

// Algorithm is EdDSA or ES256.
func (s *Signer) Algorithm() jose.SignatureAlgorithm { return s.algorithm }

// Public is the public JWK of the key, with its kid, alg and use "sig", as
// the key set publishes it.
func (s *Signer) Public() jose.JSONWebKey {
	var public any
	if s.ed25519 != nil {
		public = s.ed25519.Public()
	} else {
		public = s.ecdsa.Public()
	}
	return jose.JSONWebKey{Key: public, KeyID: s.keyID, Algorithm: string(s.algorithm), Use: "sig"}
}

func (s *Signer) header(typ string) string {
	header, err := json.Marshal(struct {
		Algorithm string `json:"alg"`
		KeyID     string `json:"kid"`
		Type      string `json:"typ"`
	}{string(s.algorithm), s.keyID, typ})
	if err != nil {
		panic(err) // three strings always encode
	}
	return base64url.EncodeToString(header)
}

// Sign returns the JWS compact serialization of payload with a protected
// header naming alg, kid and typ.
func (s *Signer) Sign(typ string, payload []byte) (string, error) {
	header := s.accessTokenHeader
	if typ != TypeAccessToken {
		header = s.header(typ)
	}
	signingInput := len(header) + 1 + base64url.EncodedLen(len(payload))
	token := make([]byte, signingInput, signingInput+1+base64url.EncodedLen(signatureSize))
	copy(token, header)
	token[len(header)] = '.'
	base64url.Encode(token[len(header)+1:], payload)

	var signature [signatureSize]byte
	if s.ed25519 != nil {
		copy(signature[:], ed25519.Sign(s.ed25519, token))
	} else {
		digest := sha256.Sum256(token)
		r, sValue, err := ecdsa.Sign(rand.Reader, s.ecdsa, digest[:])
		if err != nil {
			return "", fmt.Errorf("exchange: sign with %s: %w", s.keyID, err)
		}
		r.FillBytes(signature[:32])
		sValue.FillBytes(signature[32:])
	}
	token = append(token, '.')
	token = base64url.AppendEncode(token, signature[:])
	return string(token), nil
}
