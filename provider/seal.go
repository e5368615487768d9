package provider

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// sealAAD binds sealed ids to their purpose and format version.
var sealAAD = []byte("mcpbroker session v1")

// sealer turns session facts into an opaque id and back. The id is
// encrypted and authenticated (AES-256-GCM), so a client can neither read
// nor forge one, and any replica holding the same key can restore it.
type sealer struct {
	aead cipher.AEAD
}

func newSealer(key []byte) (*sealer, error) {
	if len(key) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("provider: session key: %w", err)
		}
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("provider: session key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("provider: session key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("provider: session key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// sealed is what a session id carries.
type sealed struct {
	Subject            string                 `json:"s,omitempty"`
	ProtocolVersion    string                 `json:"v"`
	ClientCapabilities json.RawMessage        `json:"c,omitempty"`
	ClientInfo         json.RawMessage        `json:"i,omitempty"`
	Created            int64                  `json:"t"`
	Upstreams          map[string]UpstreamRef `json:"u,omitempty"`
}

var errBadSessionID = errors.New("provider: malformed session id")

func (s *sealer) seal(v *sealed) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("provider: seal session: %w", err)
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("provider: seal session: %w", err)
	}
	out := s.aead.Seal(nonce, nonce, plain, sealAAD)
	return base64.RawURLEncoding.EncodeToString(out), nil
}

// maxSessionIDLength bounds what is decrypted; real ids are far shorter.
const maxSessionIDLength = 16 << 10

func (s *sealer) open(id string) (*sealed, error) {
	if len(id) == 0 || len(id) > maxSessionIDLength {
		return nil, errBadSessionID
	}
	// Strict: one id has one spelling, so an ended id cannot come back
	// with its unused low bits flipped.
	raw, err := base64.RawURLEncoding.Strict().DecodeString(id)
	if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return nil, errBadSessionID
	}
	nonce, box := raw[:s.aead.NonceSize()], raw[s.aead.NonceSize():]
	plain, err := s.aead.Open(nil, nonce, box, sealAAD)
	if err != nil {
		return nil, errBadSessionID
	}
	var v sealed
	if err := json.Unmarshal(plain, &v); err != nil {
		return nil, errBadSessionID
	}
	return &v, nil
}

func unixTime(t time.Time) int64 { return t.Unix() }
