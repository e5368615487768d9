package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/exchange"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
	"github.com/urfave/cli/v2"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

const (
	// defaultStorePath is the broker's store when storage.bolt.path is not
	// set, relative to the configuration file's folder, as the broker
	// resolves it.
	defaultStorePath = "data/mcpbroker.db"
	// storeLockTimeout is how long mint waits for the store's lock, which a
	// running broker holds for as long as it runs.
	storeLockTimeout = time.Second
)

func tokenMintCommand() *cli.Command {
	return &cli.Command{
		Name:  "mint",
		Usage: "sign an access token with the embedded authorization server's keys, for debugging",
		Description: "Opens the configuration's store read-only (storage.bolt.path, relative to the configuration\n" +
			"file's folder; by default " + defaultStorePath + "), signs with its active key for\n" +
			"authProvider.signingAlgorithm and prints the token, issued by authProvider.issuer, on standard\n" +
			"output. A running broker locks the store: stop it first. A minted token has seen no login,\n" +
			"consent or policy; use it to test upstreams and verifiers, never to grant access.",
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{Name: "subject", Usage: "sub: the `USER`", Required: true},
			&cli.StringFlag{Name: "client-id", Usage: "client_id: the agent's client `ID`", Required: true},
			&cli.StringFlag{Name: "audience", Usage: "aud: the upstream app's `AUD`", Required: true},
			&cli.StringSliceFlag{Name: "scope", Usage: "a `SCOPE` to put in the token; repeat for several"},
			&cli.DurationFlag{Name: "ttl", Value: 60 * time.Second, Usage: "the token's lifetime `DURATION`, whole seconds, at most " + exchange.MaxTTL.String()},
			&cli.StringSliceFlag{Name: "actor", Usage: "an actor's `SUB`, making a delegation act chain; repeat, outermost (current) actor first"},
		},
		Action: func(c *cli.Context) error {
			fmt.Fprintln(c.App.ErrWriter, "warning: a minted token bypasses login, consent and policy; use it for debugging only")
			configFile := c.String("config")
			cfg, err := loadConfig(configFile)
			if err != nil {
				return err
			}
			grant := exchange.Grant{
				Subject:  c.String("subject"),
				ClientID: c.String("client-id"),
				Audience: c.String("audience"),
				Scopes:   c.StringSlice("scope"),
				TTL:      c.Duration("ttl"),
				Actor:    actorChain(c.StringSlice("actor")),
			}
			grant.Delegation = grant.Actor != nil
			token, claims, err := mintToken(c.Context, cfg, filepath.Dir(configFile), grant)
			if err != nil {
				return cli.Exit("token mint: "+err.Error(), 1)
			}
			fmt.Fprintf(c.App.ErrWriter, "minted: sub %s, aud %s, scope %q, expires %s, jti %s\n",
				claims.Subject, claims.Audience, claims.Scope, claims.Expiry.UTC().Format(time.RFC3339), claims.TokenID)
			fmt.Fprintln(c.App.Writer, token)
			return nil
		},
	}
}

// actorChain nests the actors, outermost first, as RFC 8693 §4.1 act
// claims; nil for none.
func actorChain(subjects []string) *oauth.Actor {
	var chain *oauth.Actor
	for i := len(subjects) - 1; i >= 0; i-- {
		chain = &oauth.Actor{Subject: subjects[i], Actor: chain}
	}
	return chain
}

// mintToken signs grant with the active key of the store the broker of cfg
// uses; baseDir is the configuration file's folder.
func mintToken(ctx context.Context, cfg *config.Config, baseDir string, grant exchange.Grant) (string, exchange.Claims, error) {
	provider := cfg.AuthProvider
	if provider == nil || !provider.Enabled {
		return "", exchange.Claims{}, errors.New("the configuration has no enabled authProvider, whose keys sign the tokens")
	}
	db, err := openStoreReadOnly(storePath(cfg, baseDir))
	if err != nil {
		return "", exchange.Claims{}, err
	}
	defer db.Close()
	store := &readOnlyKeyStore{bolt: exchange.NewBoltKeyStore(db)}
	keys, err := exchange.NewKeySet(ctx, store, exchange.KeySetOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return "", exchange.Claims{}, err
	}
	algorithm := jose.ES256
	if provider.SigningAlgorithm == string(jose.EdDSA) {
		algorithm = jose.EdDSA
	}
	signer, err := keys.Active(algorithm)
	if err != nil {
		return "", exchange.Claims{}, err
	}
	if !store.loaded[signer.KeyID()] {
		return "", exchange.Claims{}, fmt.Errorf("%s has no active %s key: start the broker once, and it makes and saves its keys", db.Path(), algorithm)
	}
	minter, err := exchange.NewMinter(keys, exchange.MinterOptions{Issuer: provider.Issuer, Algorithm: algorithm})
	if err != nil {
		return "", exchange.Claims{}, err
	}
	return minter.Mint(ctx, grant)
}

// storePath is where the broker keeps its store: storage.bolt.path or the
// default, relative to baseDir unless absolute.
func storePath(cfg *config.Config, baseDir string) string {
	path := defaultStorePath
	if cfg.Storage.Bolt != nil && cfg.Storage.Bolt.Path != "" {
		path = cfg.Storage.Bolt.Path
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(baseDir, path)
	}
	return path
}

// openStoreReadOnly opens the store without creating or changing it. A
// running broker holds the store's lock, which a reader cannot share.
func openStoreReadOnly(path string) (*bolt.DB, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no store at %s: the broker makes it, with its signing keys, when it first starts", path)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: storeLockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("the store %s is locked, most likely by a running broker: stop the broker and mint again", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open the store %s: %w", path, err)
	}
	return db, nil
}

var _ exchange.KeyStore = (*readOnlyKeyStore)(nil)

// readOnlyKeyStore loads the broker's keys and never writes: whatever the
// key set would change on load (dropping expired retired keys, making
// missing ones) stays in memory, for the broker to do itself.
type readOnlyKeyStore struct {
	bolt   *exchange.BoltKeyStore
	loaded map[string]bool // the kids in the store
}

func (s *readOnlyKeyStore) Load(ctx context.Context) ([]exchange.StoredKey, error) {
	keys, err := s.bolt.Load(ctx)
	if err != nil {
		return nil, err
	}
	s.loaded = make(map[string]bool, len(keys))
	for _, key := range keys {
		s.loaded[key.ID] = true
	}
	return keys, nil
}

func (s *readOnlyKeyStore) Save(context.Context, []exchange.StoredKey) error { return nil }
