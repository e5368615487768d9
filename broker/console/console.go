package console

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Options configure the console.
type Options struct {
	// Path is where it is served ("/console"); URL is that path as
	// browsers reach it, whose /callback the sign-in returns to.
	Path, URL string
	// SignIn signs people in at the OpenID Provider.
	SignIn RelyingParty
	// Operators and Viewers are the groups let in, with their role.
	Operators, Viewers []string
	// SessionTTL bounds a sign-in.
	SessionTTL time.Duration
	// TraceURL links trace ids ({traceId} replaced); empty for none.
	TraceURL string
	Backend  Backend
	Logger   *slog.Logger
}

// RelyingParty is the sign-in at an OpenID Provider
// (authserver.RelyingParty).
type RelyingParty interface {
	AuthorizeURL(ctx context.Context, state, nonce, verifier string) (string, error)
	SignIn(ctx context.Context, code, verifier, nonce string) (subject, name string, groups []string, err error)
}

// Console serves the console's pages.
type Console struct {
	opts Options
	// host is the console URL's host: requests that name another are
	// refused (a page of another site that resolves its name here).
	host   string
	aead   cipher.AEAD
	secure bool
	pages  *template.Template
	mux    *http.ServeMux
	log    *slog.Logger
}

//go:embed assets
var assets embed.FS

// Cookies: the sign-in lives in sessionCookie (path: the console's); the
// sign-in's state in signInCookie until the callback.
const (
	sessionCookie = "mcpbroker_console"
	signInCookie  = "mcpbroker_console_signin"
	signInTTL     = 10 * time.Minute
	maxFormBytes  = 64 << 10
)

// New builds the console. The key that seals its cookies is made here:
// a restart signs everyone out.
func New(opts Options) (*Console, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	pages, err := template.New("pages").Funcs(template.FuncMap{"diffClass": diffClass}).ParseFS(assets, "assets/*.html")
	if err != nil {
		return nil, err
	}
	c := &Console{opts: opts, host: u.Host, aead: aead, secure: u.Scheme == "https", pages: pages, log: opts.Logger}
	c.routes()
	return c, nil
}

func (c *Console) routes() {
	p := c.opts.Path
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	mux.Handle("GET "+p+"/static/", http.StripPrefix(p+"/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET "+p+"/signin", c.serveSignIn)
	mux.HandleFunc("GET "+p+"/callback", c.serveCallback)
	mux.HandleFunc("POST "+p+"/signout", c.signedIn(RoleViewer, c.serveSignOut))
	mux.HandleFunc("GET "+p+"/{$}", c.signedIn(RoleViewer, c.serveOverview))
	mux.HandleFunc("GET "+p+"/apps/{app}", c.signedIn(RoleViewer, c.serveApp))
	mux.HandleFunc("GET "+p+"/apps/{app}/pins/{kind}/{name}", c.signedIn(RoleViewer, c.servePin))
	mux.HandleFunc("POST "+p+"/apps/{app}/pins/{kind}/{name}/approve", c.signedIn(RoleOperator, c.approvePin))
	mux.HandleFunc("POST "+p+"/apps/{app}/pins/{kind}/{name}/revoke", c.signedIn(RoleOperator, c.revokePin))
	mux.HandleFunc("GET "+p+"/decisions", c.signedIn(RoleViewer, c.serveDecisions))
	mux.HandleFunc("GET "+p+"/decisions/stream", c.signedIn(RoleViewer, c.serveDecisionStream))
	mux.HandleFunc("GET "+p+"/decisions/{id}", c.signedIn(RoleViewer, c.serveDecision))
	mux.HandleFunc("GET "+p+"/approvals", c.signedIn(RoleViewer, c.serveApprovals))
	mux.HandleFunc("GET "+p+"/policies", c.signedIn(RoleViewer, c.servePolicies))
	mux.HandleFunc("POST "+p+"/policies/eval", c.signedIn(RoleViewer, c.evalPolicy))
	mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, p+"/", http.StatusSeeOther) })
	c.mux = mux
}

// ServeHTTP serves every console path with the headers of every page.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin: the browser names the console's origin in its own
	// posts (with no-referrer it says "null"), and nothing leaves.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.EqualFold(r.Host, c.host) {
		http.Error(w, "forbidden: the console is served as "+c.host, http.StatusForbidden)
		return
	}
	c.mux.ServeHTTP(w, r)
}

// session is a sign-in, sealed in sessionCookie.
type session struct {
	Person
	CSRF    string `json:"csrf"`
	Expires int64  `json:"exp"`
}

// signInState is a sign-in under way, sealed in signInCookie.
type signInState struct {
	State, Nonce, Verifier string
	Expires                int64 `json:"exp"`
}

func (c *Console) seal(v any) string {
	plain, _ := json.Marshal(v)
	nonce := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(plain)+c.aead.Overhead())
	_, _ = rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(c.aead.Seal(nonce, nonce, plain, []byte("mcpbroker console v1")))
}

func (c *Console) open(value string, v any) bool {
	sealed, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(sealed) < c.aead.NonceSize()+c.aead.Overhead() {
		return false
	}
	plain, err := c.aead.Open(nil, sealed[:c.aead.NonceSize()], sealed[c.aead.NonceSize():], []byte("mcpbroker console v1"))
	return err == nil && json.Unmarshal(plain, v) == nil
}

func (c *Console) setCookie(w http.ResponseWriter, name, path, value string, ttl time.Duration, strict bool) {
	mode := http.SameSiteLaxMode
	if strict {
		mode = http.SameSiteStrictMode
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: path, MaxAge: int(ttl / time.Second),
		HttpOnly: true, Secure: c.secure, SameSite: mode})
}

// current is the sign-in the request carries; nil when none is good.
func (c *Console) current(r *http.Request) *session {
	cookie, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	var s session
	if !c.open(cookie.Value, &s) || time.Now().Unix() >= s.Expires || s.CSRF == "" {
		return nil
	}
	return &s
}

type sessionKey struct{}

func sessionOf(r *http.Request) *session { return r.Context().Value(sessionKey{}).(*session) }

// signedIn serves h to a person signed in with at least role; a form post
// must carry the sign-in's token and come from the console's own origin.
func (c *Console) signedIn(role string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.current(r)
		if s == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, c.opts.Path+"/signin", http.StatusSeeOther)
				return
			}
			c.error(w, r, nil, http.StatusUnauthorized, "Signed out", "Sign in again.")
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if err := r.ParseForm(); err != nil {
				c.error(w, r, s, http.StatusBadRequest, "Invalid form", "The form could not be read.")
				return
			}
			posted := r.PostForm.Get("csrf")
			if posted == "" || subtle.ConstantTimeCompare([]byte(posted), []byte(s.CSRF)) != 1 || !c.sameOrigin(r) {
				c.record(r, Event{Name: "console.refused", Subject: s.Subject, Detail: "a form without the sign-in's token, or from another origin: " + r.URL.Path})
				c.error(w, r, s, http.StatusForbidden, "Form not accepted", "The form could not be verified; reload the page and try again.")
				return
			}
		}
		if role == RoleOperator && s.Role != RoleOperator {
			c.record(r, Event{Name: "console.refused", Subject: s.Subject, Detail: "not an operator: " + r.URL.Path})
			c.error(w, r, s, http.StatusForbidden, "Not allowed", "Only operators may do this.")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
	}
}

// sameOrigin reports whether a post comes from the console's own pages:
// Origin, when sent, must be the console's; Sec-Fetch-Site, when sent,
// same-origin.
func (c *Console) sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, _ := url.Parse(c.opts.URL)
	return origin == u.Scheme+"://"+u.Host
}

func (c *Console) record(r *http.Request, e Event) {
	e.Source = r.RemoteAddr
	if err := c.opts.Backend.Record(r.Context(), e); err != nil {
		c.log.Error("console: an event was not recorded", "event", e.Name, "error", err)
	}
}

// roleOf is the role the groups give; "" for none.
func (c *Console) roleOf(groups []string) string {
	for _, g := range groups {
		if slices.Contains(c.opts.Operators, g) {
			return RoleOperator
		}
	}
	for _, g := range groups {
		if slices.Contains(c.opts.Viewers, g) {
			return RoleViewer
		}
	}
	return ""
}

func randomText() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// page is what every page's layout reads.
type page struct {
	Title string
	Base  string
	Who   *session
	Data  any
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, s *session, status int, name, title string, data any) {
	var body bytes.Buffer
	if err := c.pages.ExecuteTemplate(&body, name, page{Title: title, Base: c.opts.Path, Who: s, Data: data}); err != nil {
		c.log.Error("console: render", "page", name, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body.Bytes())
}

func (c *Console) error(w http.ResponseWriter, r *http.Request, s *session, status int, title, message string) {
	c.render(w, r, s, status, "error.html", title, message)
}

// diffClass is the style of a line of a diff.
func diffClass(line string) string {
	switch {
	case strings.HasPrefix(line, "+"):
		return "added"
	case strings.HasPrefix(line, "-"):
		return "removed"
	}
	return ""
}
