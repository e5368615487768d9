package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/go-jose/go-jose/v4"
)

// Supported signature algorithms. HMAC and "none" are not among them and
// cannot be configured: a resource server shares no secret with the AS, and
// accepting HS* is how RSA public keys become HMAC secrets.
var supportedAlgorithms = []string{
	string(jose.ES256), string(jose.ES384), string(jose.ES512),
	string(jose.RS256), string(jose.RS384), string(jose.RS512),
	string(jose.PS256), string(jose.PS384), string(jose.PS512),
	string(jose.EdDSA),
}

const (
	minRSABits  = 2048
	maxJWKSKeys = 100
)

// verificationKey is one usable public key from a JWKS.
type verificationKey struct {
	id         string // kid; may be empty
	algorithm  string // the JWK's alg member; empty when the JWK does not pin one
	public     crypto.PublicKey
	thumbprint string // RFC 7638, to notice keys disappearing
}

// KeySet is an immutable set of signature verification keys: a snapshot
// of an issuer's JWKS, or the keys a service publishes for its own tokens.
// Every key is bound to the algorithms its type allows (RFC 8725 §3.1).
type KeySet struct {
	keys []verificationKey
}

// algorithmFitsKey binds the header alg to the key type, so that a key can
// only ever verify the algorithm family it was made for (RFC 8725 §3.1).
func algorithmFitsKey(algorithm string, key crypto.PublicKey) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		switch jose.SignatureAlgorithm(algorithm) {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return k.N.BitLen() >= minRSABits
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return algorithm == string(jose.ES256)
		case elliptic.P384():
			return algorithm == string(jose.ES384)
		case elliptic.P521():
			return algorithm == string(jose.ES512)
		}
	case ed25519.PublicKey:
		return algorithm == string(jose.EdDSA)
	}
	return false
}

func (k *verificationKey) accepts(algorithm string) bool {
	return (k.algorithm == "" || k.algorithm == algorithm) && algorithmFitsKey(algorithm, k.public)
}

// keyLookup is the outcome of looking for the key a token names.
type keyLookup int

const (
	keyFound     keyLookup = iota
	keyUnknown             // no key with this kid (or, without kid, none of the type): worth a refresh
	keyWrongType           // the kid exists but cannot verify this alg
	keyAmbiguous           // no kid and several keys could verify: refuse rather than guess
)

// find returns the keys that may verify a token with this kid and alg.
func (s *KeySet) find(kid, algorithm string) ([]*verificationKey, keyLookup) {
	if s == nil {
		return nil, keyUnknown
	}
	var matches []*verificationKey
	named := false
	for i := range s.keys {
		key := &s.keys[i]
		if kid != "" {
			if key.id != kid {
				continue
			}
			named = true
		}
		if key.accepts(algorithm) {
			matches = append(matches, key)
		}
	}
	switch {
	case len(matches) == 0 && named:
		return nil, keyWrongType
	case len(matches) == 0:
		return nil, keyUnknown
	case kid == "" && len(matches) > 1:
		return nil, keyAmbiguous
	}
	return matches, keyFound
}

// removedSince reports whether a key of old is missing from s: tokens
// verified with a withdrawn key must not outlive it in the cache.
func (s *KeySet) removedSince(old *KeySet) bool {
	if old == nil {
		return false
	}
	for _, was := range old.keys {
		if !slices.ContainsFunc(s.keys, func(k verificationKey) bool { return k.thumbprint == was.thumbprint && k.id == was.id }) {
			return true
		}
	}
	return false
}

// parseJWKS decodes a JWKS document. Keys that cannot be used for
// verifying signatures (symmetric keys, encryption keys, unknown types,
// weak RSA keys) are skipped one by one rather than failing the set, since
// an IdP may publish keys for other purposes beside its signing keys. A set
// without a single usable key is an error so that a broken response does
// not replace good cached keys.
func parseJWKS(body []byte) (*KeySet, []string, error) {
	var document struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if _, err := DecodeObject(body); err != nil { // strictness (duplicates, UTF-8) first
		return nil, nil, fmt.Errorf("jwks: %w", err)
	}
	if err := json.Unmarshal(body, &document); err != nil {
		return nil, nil, fmt.Errorf("jwks: %w", err)
	}
	if len(document.Keys) > maxJWKSKeys {
		return nil, nil, fmt.Errorf("jwks: more than %d keys", maxJWKSKeys)
	}
	set := &KeySet{}
	var skipped []string
	for i, raw := range document.Keys {
		key, err := parseJWK(raw)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("keys[%d]: %v", i, err))
			continue
		}
		set.keys = append(set.keys, key)
	}
	if len(set.keys) == 0 {
		return nil, skipped, errors.New("jwks: no usable signature verification key")
	}
	return set, skipped, nil
}

func parseJWK(raw json.RawMessage) (verificationKey, error) {
	var members struct {
		Use    *string  `json:"use"`
		KeyOps []string `json:"key_ops"`
	}
	if err := json.Unmarshal(raw, &members); err != nil {
		return verificationKey{}, err
	}
	if members.Use != nil && *members.Use != "sig" {
		return verificationKey{}, fmt.Errorf("use %q is not sig", *members.Use)
	}
	if members.KeyOps != nil && !slices.Contains(members.KeyOps, "verify") {
		return verificationKey{}, errors.New("key_ops does not include verify")
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return verificationKey{}, err
	}
	return verificationKeyOf(jwk)
}

// verificationKeyOf checks that a JWK can verify signatures and binds it to
// the algorithms it may verify.
func verificationKeyOf(jwk jose.JSONWebKey) (verificationKey, error) {
	if !jwk.Valid() {
		return verificationKey{}, errors.New("invalid key")
	}
	// A JWKS should never carry private keys; if one does, only its public
	// half is used.
	public := jwk.Public()
	if !public.Valid() {
		return verificationKey{}, errors.New("not an asymmetric key")
	}
	switch k := public.Key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return verificationKey{}, fmt.Errorf("rsa key shorter than %d bits", minRSABits)
		}
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return verificationKey{}, fmt.Errorf("unsupported key type %T", public.Key)
	}
	if jwk.Algorithm != "" && !slices.Contains(supportedAlgorithms, jwk.Algorithm) {
		return verificationKey{}, fmt.Errorf("alg %q is not a supported signature algorithm", jwk.Algorithm)
	}
	if jwk.Algorithm != "" && !algorithmFitsKey(jwk.Algorithm, public.Key) {
		return verificationKey{}, fmt.Errorf("alg %q does not fit the key type", jwk.Algorithm)
	}
	thumbprint, err := public.Thumbprint(crypto.SHA256)
	if err != nil {
		return verificationKey{}, err
	}
	return verificationKey{id: jwk.KeyID, algorithm: jwk.Algorithm, public: public.Key, thumbprint: string(thumbprint)}, nil
}

// ParseJWKS decodes a JWKS document under the rules the inbound verifier
// applies to an issuer's jwks_uri: strict JSON, signature keys only, weak
// and symmetric keys skipped, at least one usable key.
func ParseJWKS(body []byte) (*KeySet, error) {
	set, _, err := parseJWKS(body)
	return set, err
}

// NewKeySet builds a key set from public keys a service holds itself, such
// as the broker's own signing keys. Every key must be usable for verifying
// signatures.
func NewKeySet(keys []jose.JSONWebKey) (*KeySet, error) {
	set := &KeySet{keys: make([]verificationKey, 0, len(keys))}
	for i, jwk := range keys {
		key, err := verificationKeyOf(jwk)
		if err != nil {
			return nil, fmt.Errorf("oauth: key set: keys[%d]: %w", i, err)
		}
		set.keys = append(set.keys, key)
	}
	return set, nil
}
