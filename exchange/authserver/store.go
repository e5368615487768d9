package authserver

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/pkce"
	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"
)

// The buckets the server owns. Records are JSON; keys are the signatures
// fosite derives from codes and tokens (never the codes or tokens
// themselves), client ids, jtis, or as noted.
var (
	bucketMeta    = []byte("authserver_meta")    // secrets and counters
	bucketClients = []byte("authserver_clients") // client id → client
	bucketCodes   = []byte("authserver_codes")   // authorization codes
	bucketPKCE    = []byte("authserver_pkce")    // code challenges, by code signature
	bucketAccess  = []byte("authserver_access_tokens")
	bucketRefresh = []byte("authserver_refresh_tokens")
	// bucketGrants indexes tokens by request id, so that revoking one
	// token of a grant reaches all of them: kind byte ('a' or 'r'),
	// request id, 0, signature → nothing.
	bucketGrants  = []byte("authserver_grants")
	bucketRevoked = []byte("authserver_revoked") // jti → expiry (unix seconds, big endian)
	// bucketEnded: request id → until when (unix seconds, big endian) the
	// grant's revocation reaches tokens made for it after it was revoked.
	bucketEnded = []byte("authserver_ended_grants")
	// bucketConsents: subject, 0, client id, 0, audience → consent.
	bucketConsents = []byte("authserver_resource_consents")
	// bucketUnpairedConsents held consents that did not pair scopes with
	// resources; it is deleted on start, and its users are asked again.
	bucketUnpairedConsents = []byte("authserver_consents")
)

var allBuckets = [][]byte{
	bucketMeta, bucketClients, bucketCodes, bucketPKCE, bucketAccess, bucketRefresh,
	bucketGrants, bucketRevoked, bucketEnded, bucketConsents, bucketApprovals, bucketApprovalBindings, bucketApprovalPending, bucketIDJAGSeen,
}

const (
	kindAccess  = 'a'
	kindRefresh = 'r'
)

// store keeps everything fosite's handlers need, in bbolt or Redis.
type store struct {
	kv               kv
	defaultScopes    []string
	defaultAudiences []string
	now              func() time.Time
	// documents resolves client IDs that are metadata document URLs; nil
	// when such clients are not accepted.
	documents *clientDocuments
}

var (
	_ fosite.ClientManager          = (*store)(nil)
	_ oauth2.CoreStorage            = (*store)(nil)
	_ oauth2.TokenRevocationStorage = (*store)(nil)
	_ pkce.PKCERequestStorage       = (*store)(nil)
)

// record is a fosite.Requester as stored, with the state of the code or
// token it was stored for.
type record struct {
	ID                string     `json:"id"`
	RequestedAt       time.Time  `json:"requested_at"`
	ClientID          string     `json:"client_id"`
	RequestedScopes   []string   `json:"requested_scopes,omitempty"`
	GrantedScopes     []string   `json:"granted_scopes,omitempty"`
	RequestedAudience []string   `json:"requested_audience,omitempty"`
	GrantedAudience   []string   `json:"granted_audience,omitempty"`
	Form              url.Values `json:"form,omitempty"`
	Session           *session   `json:"session"`
	// Active is false once a code is used or a refresh token rotated or
	// revoked; the record stays until it expires, so that reuse is
	// recognised.
	Active bool `json:"active,omitempty"`
	// AccessSignature is the access token issued with a refresh token.
	AccessSignature string `json:"access_signature,omitempty"`
	// Expires is when the record may be swept.
	Expires time.Time `json:"expires"`
}

func openStore(db *bolt.DB, defaultScopes, defaultAudiences []string, now func() time.Time) (*store, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if err := tx.DeleteBucket(bucketUnpairedConsents); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("authserver: create buckets: %w", err)
	}
	return &store{kv: boltKV{db}, defaultScopes: defaultScopes, defaultAudiences: defaultAudiences, now: now}, nil
}

// openRedisStore keeps the records in Redis under keyPrefix.
func openRedisStore(client redis.UniversalClient, keyPrefix string, defaultScopes, defaultAudiences []string, now func() time.Time) *store {
	return &store{kv: newRedisKV(client, keyPrefix), defaultScopes: defaultScopes, defaultAudiences: defaultAudiences, now: now}
}

// secret returns the random secret stored under name, making it on first
// use.
func (s *store) secret(name string, size int) ([]byte, error) {
	var secret []byte
	err := s.kv.update(func(tx kvTx) error {
		stored, err := tx.get(bucketMeta, name)
		if err != nil {
			return err
		}
		if len(stored) == size {
			secret = stored
			return nil
		}
		secret = make([]byte, size)
		_, _ = rand.Read(secret)
		return tx.put(bucketMeta, name, secret, time.Time{})
	})
	if err != nil {
		return nil, fmt.Errorf("authserver: %s: %w", name, err)
	}
	return secret, nil
}

// newRecord captures req for storage; expiry is the expiry of the code or
// token it is stored for.
func newRecord(req fosite.Requester, expiry fosite.TokenType) (*record, error) {
	sess, ok := req.GetSession().(*session)
	if !ok {
		return nil, fmt.Errorf("authserver: unexpected session type %T", req.GetSession())
	}
	return &record{
		ID:                req.GetID(),
		RequestedAt:       req.GetRequestedAt(),
		ClientID:          req.GetClient().GetID(),
		RequestedScopes:   req.GetRequestedScopes(),
		GrantedScopes:     req.GetGrantedScopes(),
		RequestedAudience: req.GetRequestedAudience(),
		GrantedAudience:   req.GetGrantedAudience(),
		Form:              req.GetRequestForm(),
		Session:           sess,
		Expires:           sess.GetExpiresAt(expiry),
	}, nil
}

// requester rebuilds the stored request. A client that no longer exists
// takes its codes and tokens with it: ErrNotFound. A client described by
// its metadata document is not stored, and is not fetched here: the token
// endpoint resolves it when it authenticates the client.
func (s *store) requester(tx kvTx, rec *record) (fosite.Requester, error) {
	c, err := s.clientTx(tx, rec.ClientID)
	if errors.Is(err, fosite.ErrNotFound) && s.documents != nil && isClientIDURL(rec.ClientID) {
		c, err = s.documents.placeholder(rec.ClientID), nil
	}
	if err != nil {
		return nil, err
	}
	form := rec.Form
	if form == nil {
		form = url.Values{}
	}
	sess := rec.Session
	if sess == nil {
		sess = &session{}
	}
	return &fosite.Request{
		ID:                rec.ID,
		RequestedAt:       rec.RequestedAt,
		Client:            c,
		RequestedScope:    fosite.Arguments(rec.RequestedScopes),
		GrantedScope:      fosite.Arguments(rec.GrantedScopes),
		RequestedAudience: fosite.Arguments(rec.RequestedAudience),
		GrantedAudience:   fosite.Arguments(rec.GrantedAudience),
		Form:              form,
		Session:           sess,
	}, nil
}

func getRecord(tx kvTx, bucket []byte, signature string) (*record, error) {
	if signature == "" {
		return nil, fosite.ErrNotFound
	}
	raw, err := tx.get(bucket, signature)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fosite.ErrNotFound
	}
	var rec record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("authserver: stored request %s: %w", bucket, err)
	}
	return &rec, nil
}

// putRecord stores rec until it expires (where records are swept, until
// the sweep after).
func putRecord(tx kvTx, bucket []byte, signature string, rec *record) error {
	if signature == "" {
		return errors.New("authserver: empty signature")
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return tx.put(bucket, signature, raw, recordExpiry(rec))
}

// recordExpiry is when a record may go: its code's or token's expiry, or,
// when that is unknown, missingExpiry after it was made.
func recordExpiry(rec *record) time.Time {
	if !rec.Expires.IsZero() {
		return rec.Expires
	}
	return rec.RequestedAt.Add(missingExpiry)
}

// grantSet names the set of one kind of token of the grant with
// requestID: the kind byte ('a' or 'r'), then the request id.
func grantSet(kind byte, requestID string) string { return string(kind) + requestID }

// read runs a read-only lookup of one record and rebuilds its request.
func (s *store) read(bucket []byte, signature string) (*record, fosite.Requester, error) {
	var rec *record
	var req fosite.Requester
	err := s.kv.view(func(tx kvTx) error {
		var err error
		if rec, err = getRecord(tx, bucket, signature); err != nil {
			return err
		}
		req, err = s.requester(tx, rec)
		return err
	})
	return rec, req, err
}

// ClientManager

// GetClient finds a client from configuration or registration, else, when
// they are accepted, resolves a client_id URL through its metadata
// document; a document that cannot be used is an error wrapping
// errClientDocument.
func (s *store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	var c *client
	err := s.kv.view(func(tx kvTx) error {
		var err error
		c, err = s.clientTx(tx, id)
		return err
	})
	if errors.Is(err, fosite.ErrNotFound) && s.documents != nil && isClientIDURL(id) {
		c, err = s.documents.client(ctx, id)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (s *store) clientTx(tx kvTx, id string) (*client, error) {
	if id == "" {
		return nil, fosite.ErrNotFound
	}
	raw, err := tx.get(bucketClients, id)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fosite.ErrNotFound
	}
	var c client
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("authserver: stored client %q: %w", id, err)
	}
	c.defaultScopes = s.defaultScopes
	c.defaultAudiences = s.defaultAudiences
	return &c, nil
}

// ClientAssertionJWTValid and SetClientAssertionJWT serve private_key_jwt
// client authentication, which this server does not offer: no stored
// client can authenticate that way, so no assertion reaches them.
func (s *store) ClientAssertionJWTValid(context.Context, string) error { return nil }

func (s *store) SetClientAssertionJWT(context.Context, string, time.Time) error {
	return fosite.ErrJTIKnown
}

// saveConfigClients replaces the clients from configuration with clients;
// registered clients stay.
func (s *store) saveConfigClients(clients []*client) error {
	return s.kv.update(func(tx kvTx) error {
		var stale []string
		err := tx.forEach(bucketClients, func(id string, raw []byte) error {
			var c client
			if err := json.Unmarshal(raw, &c); err != nil || !c.Registered {
				stale = append(stale, id)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, id := range stale {
			if err := tx.del(bucketClients, id); err != nil {
				return err
			}
		}
		for _, c := range clients {
			raw, err := json.Marshal(c)
			if err != nil {
				return err
			}
			if err := tx.put(bucketClients, c.ID, raw, time.Time{}); err != nil {
				return err
			}
		}
		return nil
	})
}

const registeredClientsKey = "registered_clients"

// errTooManyClients refuses a registration past the cap.
var errTooManyClients = errors.New("authserver: too many registered clients")

// registerClient stores a new registered client unless limit clients are
// registered already.
func (s *store) registerClient(c *client, limit uint64) error {
	raw, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return s.kv.update(func(tx kvTx) error {
		count, err := registeredCount(tx)
		if err != nil {
			return err
		}
		if count >= limit {
			return errTooManyClients
		}
		if existing, err := tx.get(bucketClients, c.ID); err != nil || existing != nil {
			return cmp.Or(err, fmt.Errorf("authserver: client id %q exists", c.ID))
		}
		if err := tx.put(bucketClients, c.ID, raw, time.Time{}); err != nil {
			return err
		}
		return tx.put(bucketMeta, registeredClientsKey, binary.BigEndian.AppendUint64(nil, count+1), time.Time{})
	})
}

// registeredCount is how many registered clients there are.
func registeredCount(tx kvTx) (uint64, error) {
	stored, err := tx.get(bucketMeta, registeredClientsKey)
	if err != nil || len(stored) != 8 {
		return 0, err
	}
	return binary.BigEndian.Uint64(stored), nil
}

// deleteUnusedClients deletes the registered clients in ids that still
// had no token issued to them at now.
func (s *store) deleteUnusedClients(ids []string, now time.Time) (int, error) {
	deleted := 0
	err := s.kv.update(func(tx kvTx) error {
		deleted = 0
		for _, id := range ids {
			raw, err := tx.get(bucketClients, id)
			if err != nil {
				return err
			}
			var c client
			if raw == nil || json.Unmarshal(raw, &c) != nil || !c.unused(now) {
				continue
			}
			if err := tx.del(bucketClients, id); err != nil {
				return err
			}
			deleted++
		}
		if deleted == 0 {
			return nil
		}
		count, err := registeredCount(tx)
		if err != nil {
			return err
		}
		count -= min(count, uint64(deleted))
		return tx.put(bucketMeta, registeredClientsKey, binary.BigEndian.AppendUint64(nil, count), time.Time{})
	})
	if err != nil {
		return 0, err
	}
	return deleted, nil
}

// AuthorizeCodeStorage

func (s *store) CreateAuthorizeCodeSession(_ context.Context, signature string, req fosite.Requester) error {
	rec, err := newRecord(req, fosite.AuthorizeCode)
	if err != nil {
		return err
	}
	rec.Active = true
	return s.kv.update(func(tx kvTx) error { return putRecord(tx, bucketCodes, signature, rec) })
}

func (s *store) GetAuthorizeCodeSession(_ context.Context, signature string, _ fosite.Session) (fosite.Requester, error) {
	rec, req, err := s.read(bucketCodes, signature)
	if err != nil {
		return nil, err
	}
	if !rec.Active {
		return req, fosite.ErrInvalidatedAuthorizeCode
	}
	return req, nil
}

// InvalidateAuthorizeCodeSession spends the code: it fails with
// ErrInvalidatedAuthorizeCode when the code is spent already, which is how
// one of concurrent redemptions wins and the others are refused
// (invalid_grant at the token endpoint).
func (s *store) InvalidateAuthorizeCodeSession(_ context.Context, signature string) error {
	return s.kv.update(func(tx kvTx) error {
		rec, err := getRecord(tx, bucketCodes, signature)
		if err != nil {
			return err
		}
		if !rec.Active {
			return fosite.ErrInvalidatedAuthorizeCode
		}
		rec.Active = false
		return putRecord(tx, bucketCodes, signature, rec)
	})
}

// PKCERequestStorage

func (s *store) CreatePKCERequestSession(_ context.Context, signature string, req fosite.Requester) error {
	rec, err := newRecord(req, fosite.AuthorizeCode)
	if err != nil {
		return err
	}
	return s.kv.update(func(tx kvTx) error { return putRecord(tx, bucketPKCE, signature, rec) })
}

func (s *store) GetPKCERequestSession(_ context.Context, signature string, _ fosite.Session) (fosite.Requester, error) {
	_, req, err := s.read(bucketPKCE, signature)
	return req, err
}

func (s *store) DeletePKCERequestSession(_ context.Context, signature string) error {
	return s.kv.update(func(tx kvTx) error { return tx.del(bucketPKCE, signature) })
}

// AccessTokenStorage

func (s *store) CreateAccessTokenSession(_ context.Context, signature string, req fosite.Requester) error {
	rec, err := newRecord(req, fosite.AccessToken)
	if err != nil {
		return err
	}
	return s.kv.update(func(tx kvTx) error {
		ended, err := grantEnded(tx, rec.ID)
		if err != nil {
			return err
		}
		if err := putRecord(tx, bucketAccess, signature, rec); err != nil {
			return err
		}
		if err := tx.addMember(bucketGrants, grantSet(kindAccess, rec.ID), signature, recordExpiry(rec)); err != nil {
			return err
		}
		if ended {
			return s.revokeAccessToken(tx, signature)
		}
		return keepClient(tx, rec.ClientID)
	})
}

// keepClient clears the expiry of a registered client that had no token
// yet: it is in use.
func keepClient(tx kvTx, clientID string) error {
	raw, err := tx.get(bucketClients, clientID)
	if err != nil || raw == nil || !bytes.Contains(raw, []byte(`"unused_until"`)) {
		return err
	}
	var c client
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("authserver: stored client %q: %w", clientID, err)
	}
	c.UnusedUntil = time.Time{}
	updated, err := json.Marshal(&c)
	if err != nil {
		return err
	}
	return tx.put(bucketClients, clientID, updated, time.Time{})
}

func (s *store) GetAccessTokenSession(_ context.Context, signature string, _ fosite.Session) (fosite.Requester, error) {
	_, req, err := s.read(bucketAccess, signature)
	return req, err
}

func (s *store) DeleteAccessTokenSession(_ context.Context, signature string) error {
	return s.kv.update(func(tx kvTx) error { return s.revokeAccessToken(tx, signature) })
}

// revokeAccessToken deletes an access token's record and remembers its jti
// as revoked until the token expires: the token itself is a JWT that
// verifies without us, so whoever accepts it must ask [Server.Revoked].
func (s *store) revokeAccessToken(tx kvTx, signature string) error {
	rec, err := getRecord(tx, bucketAccess, signature)
	if errors.Is(err, fosite.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if rec.Session != nil && rec.Session.TokenID != "" {
		expiry := rec.Expires
		if expiry.IsZero() {
			expiry = s.now().Add(DefaultAccessTokenTTL)
		}
		value := binary.BigEndian.AppendUint64(nil, uint64(expiry.Unix()))
		if err := tx.put(bucketRevoked, rec.Session.TokenID, value, expiry.Add(revokedGrace)); err != nil {
			return err
		}
	}
	if err := tx.removeMember(bucketGrants, grantSet(kindAccess, rec.ID), signature); err != nil {
		return err
	}
	return tx.del(bucketAccess, signature)
}

// revoked reports whether the access token with jti tokenID was revoked.
func (s *store) revoked(tokenID string) (bool, error) {
	if tokenID == "" {
		return false, nil
	}
	var found bool
	err := s.kv.view(func(tx kvTx) error {
		value, err := tx.get(bucketRevoked, tokenID)
		found = value != nil
		return err
	})
	return found, err
}

// RefreshTokenStorage

func (s *store) CreateRefreshTokenSession(_ context.Context, signature, accessSignature string, req fosite.Requester) error {
	rec, err := newRecord(req, fosite.RefreshToken)
	if err != nil {
		return err
	}
	rec.AccessSignature = accessSignature
	return s.kv.update(func(tx kvTx) error {
		ended, err := grantEnded(tx, rec.ID)
		if err != nil {
			return err
		}
		rec.Active = !ended
		if err := putRecord(tx, bucketRefresh, signature, rec); err != nil {
			return err
		}
		return tx.addMember(bucketGrants, grantSet(kindRefresh, rec.ID), signature, recordExpiry(rec))
	})
}

func (s *store) GetRefreshTokenSession(_ context.Context, signature string, _ fosite.Session) (fosite.Requester, error) {
	rec, req, err := s.read(bucketRefresh, signature)
	if err != nil {
		return nil, err
	}
	if !rec.Active {
		return req, fosite.ErrInactiveToken
	}
	return req, nil
}

func (s *store) DeleteRefreshTokenSession(_ context.Context, signature string) error {
	return s.kv.update(func(tx kvTx) error {
		rec, err := getRecord(tx, bucketRefresh, signature)
		if errors.Is(err, fosite.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := tx.removeMember(bucketGrants, grantSet(kindRefresh, rec.ID), signature); err != nil {
			return err
		}
		return tx.del(bucketRefresh, signature)
	})
}

// RotateRefreshToken retires the refresh token just used. It fails with
// ErrInactiveToken when a concurrent request rotated it first, so that one
// refresh token yields one new pair. The access tokens issued before stay
// valid until they expire.
func (s *store) RotateRefreshToken(_ context.Context, requestID string, signature string) error {
	return s.kv.update(func(tx kvTx) error {
		rec, err := getRecord(tx, bucketRefresh, signature)
		if err != nil {
			return err
		}
		if !rec.Active || rec.ID != requestID {
			return fosite.ErrInactiveToken
		}
		rec.Active = false
		return putRecord(tx, bucketRefresh, signature, rec)
	})
}

// TokenRevocationStorage

// RevokeRefreshToken retires every refresh token of the grant, also those
// a request that read the grant's code or refresh token before has yet
// to make (see endGrant).
func (s *store) RevokeRefreshToken(_ context.Context, requestID string) error {
	return s.kv.update(func(tx kvTx) error { return s.retireRefreshTokens(tx, requestID) })
}

// RevokeAccessToken revokes every access token of the grant.
func (s *store) RevokeAccessToken(_ context.Context, requestID string) error {
	return s.kv.update(func(tx kvTx) error { return s.revokeAccessTokens(tx, requestID) })
}

// revokeGrantTx revokes every refresh and access token of the grant.
func (s *store) revokeGrantTx(tx kvTx, requestID string) error {
	if err := s.retireRefreshTokens(tx, requestID); err != nil {
		return err
	}
	return s.revokeAccessTokens(tx, requestID)
}

// endedGrantKept is how long a revoked grant is remembered: a token
// request that read the grant's code or refresh token before the
// revocation makes its tokens moments later, and those are born revoked.
// Fosite's handlers read and then write in separate transactions, so
// without this a code redeemed twice at once, or a rotated refresh token
// played again while its successor is being made, could leave the new
// pair alive.
const endedGrantKept = 24 * time.Hour

// endGrant remembers that the grant was revoked (see endedGrantKept).
func (s *store) endGrant(tx kvTx, requestID string) error {
	until := s.now().Add(endedGrantKept)
	return tx.put(bucketEnded, requestID, binary.BigEndian.AppendUint64(nil, uint64(until.Unix())), until)
}

// grantEnded reports whether the grant was revoked.
func grantEnded(tx kvTx, requestID string) (bool, error) {
	value, err := tx.get(bucketEnded, requestID)
	return value != nil, err
}

func (s *store) retireRefreshTokens(tx kvTx, requestID string) error {
	if err := s.endGrant(tx, requestID); err != nil {
		return err
	}
	signatures, err := tx.members(bucketGrants, grantSet(kindRefresh, requestID))
	if err != nil {
		return err
	}
	for _, signature := range signatures {
		rec, err := getRecord(tx, bucketRefresh, signature)
		if errors.Is(err, fosite.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if rec.Active {
			rec.Active = false
			if err := putRecord(tx, bucketRefresh, signature, rec); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *store) revokeAccessTokens(tx kvTx, requestID string) error {
	signatures, err := tx.members(bucketGrants, grantSet(kindAccess, requestID))
	if err != nil {
		return err
	}
	for _, signature := range signatures {
		if err := s.revokeAccessToken(tx, signature); err != nil {
			return err
		}
	}
	return nil
}

// Consents

// consent is what a user (by subject) allowed a client on one resource:
// the scopes of every authorization for that resource they approved.
// Scopes approved for one resource say nothing about another.
type consent struct {
	Scopes    []string  `json:"scopes,omitempty"`
	GrantedAt time.Time `json:"granted_at"`
}

func consentKey(subject, clientID, audience string) string {
	return subject + "\x00" + clientID + "\x00" + audience
}

// consented reports whether subject already allowed clientID every scope
// in scopes on audience.
func (s *store) consented(subject, clientID string, scopes []string, audience string) (bool, error) {
	var found bool
	err := s.kv.view(func(tx kvTx) error {
		raw, err := tx.get(bucketConsents, consentKey(subject, clientID, audience))
		if err != nil || raw == nil {
			return err
		}
		var c consent
		if err := json.Unmarshal(raw, &c); err != nil {
			return fmt.Errorf("authserver: stored consent: %w", err)
		}
		found = true
		for _, scope := range scopes {
			found = found && slices.Contains(c.Scopes, scope)
		}
		return nil
	})
	return found, err
}

// rememberConsent adds scopes to what subject allowed clientID on
// audience.
func (s *store) rememberConsent(subject, clientID string, scopes []string, audience string) error {
	return s.kv.update(func(tx kvTx) error {
		key := consentKey(subject, clientID, audience)
		raw, err := tx.get(bucketConsents, key)
		if err != nil {
			return err
		}
		var c consent
		if raw != nil {
			if err := json.Unmarshal(raw, &c); err != nil {
				return fmt.Errorf("authserver: stored consent: %w", err)
			}
		}
		for _, scope := range scopes {
			if !slices.Contains(c.Scopes, scope) {
				c.Scopes = append(c.Scopes, scope)
			}
		}
		c.GrantedAt = s.now().UTC()
		raw, err = json.Marshal(c)
		if err != nil {
			return err
		}
		return tx.put(bucketConsents, key, raw, time.Time{})
	})
}

// Ending grants

// endGrants revokes every grant whose session ended reports as ended: its
// refresh tokens are retired, its access tokens revoked (their jtis
// reported by [Server.Revoked]), its unused codes deleted. It returns how
// many grants it ended.
func (s *store) endGrants(ended func(*session) bool) (int, error) {
	requestIDs := map[string]bool{}
	var codes []string
	err := s.kv.view(func(tx kvTx) error {
		for _, bucket := range [][]byte{bucketCodes, bucketAccess, bucketRefresh} {
			err := tx.forEach(bucket, func(signature string, raw []byte) error {
				var rec struct {
					ID      string   `json:"id"`
					Session *session `json:"session"`
					Active  bool     `json:"active"`
				}
				if json.Unmarshal(raw, &rec) != nil || rec.Session == nil || !ended(rec.Session) {
					return nil
				}
				switch {
				case bytes.Equal(bucket, bucketCodes):
					codes = append(codes, signature)
				case bytes.Equal(bucket, bucketAccess) || rec.Active:
					requestIDs[rec.ID] = true
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || (len(requestIDs) == 0 && len(codes) == 0) {
		return 0, err
	}
	err = s.kv.update(func(tx kvTx) error {
		for _, signature := range codes {
			if err := tx.del(bucketCodes, signature); err != nil {
				return err
			}
		}
		for requestID := range requestIDs {
			if err := s.revokeGrantTx(tx, requestID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(requestIDs), nil
}
