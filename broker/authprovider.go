package broker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	bolt "go.etcd.io/bbolt"

	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/exchange"
)

// defaultBoltPath is where the embedded store lives when storage.bolt is not
// configured, relative to the configuration file's folder.
const defaultBoltPath = "data/mcpbroker.db"

// authProvider is the embedded Auth Provider: the store, the signing keys
// and the in-process minter that outbound token exchange uses.
type authProvider struct {
	db     *bolt.DB
	keys   *exchange.KeySet
	minter *exchange.Minter
}

// newAuthProvider opens the store and the signing keys when authProvider
// is enabled; nil otherwise.
func newAuthProvider(ctx context.Context, cfg *config.Config, baseDir string, b *Broker) (*authProvider, error) {
	ap := cfg.AuthProvider
	if ap == nil || !ap.Enabled {
		return nil, nil
	}
	path := defaultBoltPath
	if cfg.Storage.Bolt != nil && cfg.Storage.Bolt.Path != "" {
		path = cfg.Storage.Bolt.Path
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(baseDir, path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("broker: auth provider store: %w", err)
	}
	db, err := exchange.OpenBolt(path)
	if err != nil {
		return nil, fmt.Errorf("broker: auth provider store: %w", err)
	}
	keys, err := exchange.NewKeySet(ctx, exchange.NewBoltKeyStore(db), exchange.KeySetOptions{Logger: b.log})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("broker: auth provider keys: %w", err)
	}
	algorithm := jose.ES256
	if ap.SigningAlgorithm == string(jose.EdDSA) {
		algorithm = jose.EdDSA
	}
	minter, err := exchange.NewMinter(keys, exchange.MinterOptions{Issuer: ap.Issuer, Algorithm: algorithm})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("broker: auth provider minter: %w", err)
	}
	return &authProvider{db: db, keys: keys, minter: minter}, nil
}

// start runs the key rotation schedule until ctx ends.
func (p *authProvider) start(ctx context.Context, interval time.Duration) {
	if p == nil || interval <= 0 {
		return
	}
	go p.keys.RotateEvery(ctx, interval)
}

func (p *authProvider) close() {
	if p != nil {
		p.db.Close()
	}
}
