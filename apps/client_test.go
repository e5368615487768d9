package apps

import (
	"testing"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// Replicas serving one session give upstream-to-client requests ids that
// do not meet, and that JavaScript clients hold exactly.
func TestReplicatedServerIDsApart(t *testing.T) {
	seen := map[int64]bool{}
	for range 50 {
		cs := NewReplicatedClientSession()
		for range 3 {
			id, ok := cs.AddServerRequest(nil, jsonrpc.Int64ID(1))
			n, _ := id.Int64()
			if !ok || n <= 0 || n >= 1<<53 {
				t.Fatalf("id %v (ok %v): want a positive integer below 2^53", id, ok)
			}
			if seen[n] {
				t.Fatalf("id %d given by two sessions", n)
			}
			seen[n] = true
		}
	}
	if id, _ := NewClientSession().AddServerRequest(nil, jsonrpc.Int64ID(1)); id.Raw() != "1" {
		t.Errorf("one replica's first id: %s, want 1", id.Raw())
	}
}
