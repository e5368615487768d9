package broker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// A client_id URL is chosen by whoever sends an authorization request, so
// its metadata document is never fetched from a private address, even
// when identity providers may live on one.
func TestClientDocumentFetchRefusesPrivateNetworks(t *testing.T) {
	fetcher := oauth.NewFetcher(clientDocumentFetch())
	for _, target := range []string{"https://10.0.0.1/client", "https://192.168.1.1/client", "https://[fd00::1]/client", "https://169.254.169.254/client"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := fetcher.Get(ctx, target)
		cancel()
		if !errors.Is(err, oauth.ErrBlockedAddress) {
			t.Errorf("%s: error %v, want %v", target, err, oauth.ErrBlockedAddress)
		}
	}
}
