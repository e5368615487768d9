package authserver

import (
	"bytes"
	"cmp"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// An authorization runs over several requests to /authorize: the GET that
// opens it, the login form's POST, the consent form's POST. What must
// survive between them travels in a cookie sealed with AES-GCM under a key
// kept in the database: the authorization request's query string, the
// stage reached, the signed-in user, and the CSRF token that the page's
// form must post back. Nothing is kept on the server until the code is
// issued.
const (
	flowCookie = "mcpbroker_authorize"
	// flowTTL is how long a user has for each step.
	flowTTL = 10 * time.Minute
	// maxQueryBytes caps the authorization request a flow carries, and so
	// the cookie.
	maxQueryBytes = 2048

	stageLogin   = "login"
	stageConsent = "consent"
)

// flowAAD binds sealed values to their use.
var flowAAD = []byte("mcpbroker authserver flow v1")

var (
	errFlowMissing = errors.New("authserver: no authorization in progress")
	errFlowInvalid = errors.New("authserver: authorization cookie is invalid or expired")
	errCSRF        = errors.New("authserver: form token does not match")
	errFormSpent   = errors.New("authserver: form already sent")
)

// flow is the state of one authorization between requests.
type flow struct {
	CSRF  string `json:"csrf"`
	Query string `json:"query"`
	Stage string `json:"stage"`
	// Identity is the signed-in user, from the consent step on.
	Identity *identity `json:"identity,omitempty"`
	// Nonce and Verifier belong to the request sent to the identity
	// provider, when sign-in is federated.
	Nonce    string `json:"nonce,omitempty"`
	Verifier string `json:"verifier,omitempty"`
	Expires  int64  `json:"exp"`
}

// identity is a signed-in user: a local user, or one the identity
// provider vouched for.
type identity struct {
	Subject  string   `json:"sub"`
	Username string   `json:"username,omitempty"`
	Name     string   `json:"name,omitempty"`
	Email    string   `json:"email,omitempty"`
	Groups   []string `json:"groups,omitempty"`
	AuthTime int64    `json:"auth_time"`
	// Local marks a local user, who signed in with a password.
	Local bool `json:"local,omitempty"`
}

// session is the fosite session of the identity's grant.
func (id *identity) session() *session {
	return &session{
		Subject:  id.Subject,
		Username: id.Username,
		Name:     id.Name,
		Email:    id.Email,
		Groups:   slices.Clone(id.Groups),
		AuthTime: time.Unix(id.AuthTime, 0).UTC(),
		Local:    id.Local,
	}
}

// displayName is how the pages call the user.
func (id *identity) displayName() string {
	return cmp.Or(id.Username, id.Email, id.Subject)
}

type flowSealer struct {
	aead cipher.AEAD
}

func newFlowSealer(key []byte) (*flowSealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("authserver: flow key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("authserver: flow key: %w", err)
	}
	return &flowSealer{aead: aead}, nil
}

func (f *flowSealer) seal(state *flow) (string, error) {
	var buffer bytes.Buffer
	encoder := json.NewEncoder(&buffer)
	encoder.SetEscapeHTML(false) // the query's & stays one byte
	if err := encoder.Encode(state); err != nil {
		return "", err
	}
	plain := bytes.TrimSuffix(buffer.Bytes(), []byte("\n"))
	nonce := make([]byte, f.aead.NonceSize(), f.aead.NonceSize()+len(plain)+f.aead.Overhead())
	_, _ = rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(f.aead.Seal(nonce, nonce, plain, flowAAD)), nil
}

func (f *flowSealer) open(value string, now time.Time) (*flow, error) {
	// Strict base64url: one sealed flow has exactly one spelling.
	sealed, err := oauth.DecodeSegment(value)
	if err != nil || len(sealed) < f.aead.NonceSize()+f.aead.Overhead() {
		return nil, errFlowInvalid
	}
	nonce, ciphertext := sealed[:f.aead.NonceSize()], sealed[f.aead.NonceSize():]
	plain, err := f.aead.Open(nil, nonce, ciphertext, flowAAD)
	if err != nil {
		return nil, errFlowInvalid
	}
	var state flow
	if err := json.Unmarshal(plain, &state); err != nil || state.CSRF == "" {
		return nil, errFlowInvalid
	}
	if now.Unix() >= state.Expires {
		return nil, errFlowInvalid
	}
	return &state, nil
}

// newFlow starts an authorization for the request in query.
func (s *Server) newFlow(query string) *flow {
	return &flow{Query: query, Stage: stageLogin}
}

// spentForms remembers the form tokens already posted, until their flow
// would have expired anyway: each form is good for one post, so a copied
// cookie and token cannot be replayed, in parallel or later. The memory is
// this process's and bounded; past the bound the oldest are forgotten. It
// is kept without a goroutine of its own, so a server leaves nothing
// running behind it.
type spentForms struct {
	mu    sync.Mutex
	ttl   time.Duration
	limit int
	spent map[string]struct{}
	// queue holds the spent tokens oldest first; all live as long, so the
	// oldest is also the first to expire.
	queue []spentForm
}

type spentForm struct {
	token   string
	expires time.Time
}

const maxSpentForms = 100000

func newSpentForms(ttl time.Duration, limit int) *spentForms {
	return &spentForms{ttl: ttl, limit: limit, spent: map[string]struct{}{}}
}

// spend records token as posted at now; false if it was already.
func (f *spentForms) spend(token string, now time.Time) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.queue) > 0 && !now.Before(f.queue[0].expires) {
		f.dropOldest()
	}
	if _, found := f.spent[token]; found {
		return false, nil
	}
	if len(f.queue) >= f.limit {
		f.dropOldest()
	}
	f.spent[token] = struct{}{}
	f.queue = append(f.queue, spentForm{token: token, expires: now.Add(f.ttl)})
	return true, nil
}

func (f *spentForms) dropOldest() {
	delete(f.spent, f.queue[0].token)
	f.queue[0] = spentForm{}
	f.queue = f.queue[1:]
	if len(f.queue) == 0 {
		// Start afresh, so that a burst's map and array are given back.
		f.spent, f.queue = map[string]struct{}{}, nil
	}
}

// maxCookieBytes keeps a flow cookie within what every browser stores.
const maxCookieBytes = 4000

var errFlowTooLarge = errors.New("authserver: the authorization request is too large to carry between steps")

// setFlow stores state in the flow cookie, with a fresh CSRF token and
// expiry.
func (s *Server) setFlow(w http.ResponseWriter, state *flow) error {
	return s.setSealedCookie(w, flowCookie, s.authorizePath(), state)
}

func (s *Server) setSealedCookie(w http.ResponseWriter, name, path string, state *flow) error {
	state.CSRF = randomID()
	state.Expires = s.now().Add(flowTTL).Unix()
	value, err := s.flows.seal(state)
	if err != nil {
		return err
	}
	if len(name)+len(value) > maxCookieBytes {
		return errFlowTooLarge
	}
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     path,
		MaxAge:   int(flowTTL / time.Second),
		HttpOnly: true,
		Secure:   s.secureCookies,
		SameSite: http.SameSiteLaxMode,
	})
	return nil
}

func (s *Server) clearFlow(w http.ResponseWriter) {
	s.clearCookie(w, flowCookie, s.authorizePath())
}

func (s *Server) clearCookie(w http.ResponseWriter, name, path string) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Path:     path,
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   s.secureCookies,
		SameSite: http.SameSiteLaxMode,
	})
}

// postedFlow returns the flow a form post continues, once its CSRF token
// matches the cookie's.
func (s *Server) postedFlow(r *http.Request) (*flow, error) {
	return s.postedFlowOf(r, flowCookie)
}

// postedFlowOf is postedFlow for the steps kept in the named cookie.
func (s *Server) postedFlowOf(r *http.Request, name string) (*flow, error) {
	cookie, err := r.Cookie(name)
	if err != nil || cookie.Value == "" {
		return nil, errFlowMissing
	}
	state, err := s.flows.open(cookie.Value, s.now())
	if err != nil {
		return nil, err
	}
	posted := r.PostForm.Get("csrf")
	if posted == "" || subtle.ConstantTimeCompare([]byte(posted), []byte(state.CSRF)) != 1 {
		return nil, errCSRF
	}
	switch fresh, err := s.spentForms.spend(state.CSRF, s.now()); {
	case err != nil:
		return nil, err
	case !fresh:
		return nil, errFormSpent
	}
	return state, nil
}
