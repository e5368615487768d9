package authserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"sync"

	"github.com/ory/fosite"
	"golang.org/x/crypto/bcrypt"
)

// Client secrets are stored hashed, two ways:
//
//   - secrets from configuration, which a person chose, with bcrypt;
//   - secrets this server generated (dynamic registration), 256 random
//     bits that no dictionary holds, as "sha256:" + base64url(SHA-256).
//
// bcrypt costs tens of milliseconds by design, and a confidential client
// authenticates on every token request; once a secret has verified, the
// hasher remembers the (hash, secret) pair's digest so that the same
// client's next requests cost a SHA-256.
const (
	sha256SecretPrefix = "sha256:"
	clientSecretCost   = bcrypt.DefaultCost
	// verifiedCacheSize bounds the remembered pairs; the cache is emptied
	// when it is full.
	verifiedCacheSize = 1024
)

var errSecretMismatch = errors.New("authserver: client secret does not match")

type secretHasher struct {
	mu       sync.Mutex
	verified map[[sha256.Size]byte]struct{}
}

var _ fosite.Hasher = (*secretHasher)(nil)

func newSecretHasher() *secretHasher {
	return &secretHasher{verified: map[[sha256.Size]byte]struct{}{}}
}

// Hash hashes a secret a person chose.
func (h *secretHasher) Hash(_ context.Context, secret []byte) ([]byte, error) {
	return bcrypt.GenerateFromPassword(secret, clientSecretCost)
}

// Compare reports whether secret matches hash, in time independent of
// where they differ.
func (h *secretHasher) Compare(_ context.Context, hash, secret []byte) error {
	if len(hash) == 0 {
		return errSecretMismatch
	}
	if digest, ok := bytes.CutPrefix(hash, []byte(sha256SecretPrefix)); ok {
		if subtle.ConstantTimeCompare(digest, []byte(sha256Secret(secret))) != 1 {
			return errSecretMismatch
		}
		return nil
	}
	key := pairDigest(hash, secret)
	h.mu.Lock()
	_, known := h.verified[key]
	h.mu.Unlock()
	if known {
		return nil
	}
	if err := bcrypt.CompareHashAndPassword(hash, secret); err != nil {
		return errSecretMismatch
	}
	h.mu.Lock()
	if len(h.verified) >= verifiedCacheSize {
		clear(h.verified)
	}
	h.verified[key] = struct{}{}
	h.mu.Unlock()
	return nil
}

func sha256Secret(secret []byte) string {
	sum := sha256.Sum256(secret)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// pairDigest binds a secret to the hash it verified against, so that a
// changed hash is checked again.
func pairDigest(hash, secret []byte) [sha256.Size]byte {
	digest := sha256.New()
	digest.Write(hash)
	digest.Write([]byte{0})
	digest.Write(secret)
	var sum [sha256.Size]byte
	digest.Sum(sum[:0])
	return sum
}

// generateSecret returns a new client secret and its stored hash.
func generateSecret() (secret string, hash []byte) {
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	secret = base64.RawURLEncoding.EncodeToString(raw[:])
	return secret, []byte(sha256SecretPrefix + sha256Secret([]byte(secret)))
}

// randomID returns 128 random bits, base64url.
func randomID() string {
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	return base64.RawURLEncoding.EncodeToString(raw[:])
}
