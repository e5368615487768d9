package authserver

import (
	"bytes"
	"encoding/base64"
	"reflect"
	"testing"
	"time"
)

func TestFlowCookieIsSealed(t *testing.T) {
	sealer, err := newFlowSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := newFlowSealer(bytes.Repeat([]byte{8}, 32))
	now := time.Unix(1_700_000_000, 0)
	state := &flow{CSRF: "csrf", Query: "client_id=agent&scope=mcp", Stage: stageConsent,
		Identity: &identity{Subject: "alice", Username: "alice", Groups: []string{"ops"}}, Expires: now.Add(flowTTL).Unix()}
	sealed, err := sealer.seal(state)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains([]byte(sealed), []byte("alice")) {
		t.Fatal("the cookie shows its content")
	}
	tampered := []byte(sealed)
	tampered[len(tampered)/2] ^= 1
	tests := []struct {
		name   string
		sealer *flowSealer
		value  string
		now    time.Time
		ok     bool
	}{
		{"valid", sealer, sealed, now, true},
		{"expired", sealer, sealed, now.Add(flowTTL), false},
		{"another key", other, sealed, now, false},
		{"tampered", sealer, string(tampered), now, false},
		{"truncated", sealer, sealed[:20], now, false},
		{"empty", sealer, "", now, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.sealer.open(tt.value, tt.now)
			if (err == nil) != tt.ok {
				t.Fatalf("open: %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && !reflect.DeepEqual(got, state) {
				t.Errorf("opened %+v, want %+v", got, state)
			}
		})
	}
}

// FuzzFlowCookie: no cookie value makes open panic or accept what was not
// sealed with the key.
func FuzzFlowCookie(f *testing.F) {
	sealer, err := newFlowSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		f.Fatal(err)
	}
	// Sealed with a fixed nonce, so that every fuzzing process has the
	// same one value that must open.
	nonce := make([]byte, sealer.aead.NonceSize())
	sealed := base64.RawURLEncoding.EncodeToString(sealer.aead.Seal(nonce, nonce, []byte(`{"csrf":"c","query":"q","stage":"login","exp":1099511627776}`), flowAAD))
	f.Add(sealed)
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, value string) {
		state, err := sealer.open(value, time.Unix(0, 0))
		if err == nil && value != sealed {
			t.Fatalf("accepted an unsealed value %q as %+v", value, state)
		}
	})
}
