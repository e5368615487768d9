package authserver

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ory/fosite"
	"golang.org/x/crypto/bcrypt"
)

const (
	messageBadLogin  = "Invalid username or password."
	messageThrottled = "Too many failed sign-in attempts. Wait a few minutes and try again."
	messageEmpty     = "Enter your username and password."
)

// renderLogin shows the login form for a.
func (s *Server) renderLogin(w http.ResponseWriter, status int, a *authorization, state *flow, username, message string) {
	s.renderPage(w, status, "login", loginPage{
		Title:      "Sign in",
		ClientName: a.client.displayName(),
		Message:    message,
		Action:     s.authorizePath(),
		CSRF:       state.CSRF,
		Username:   username,
	})
}

// retryLogin shows the login form again, with a fresh form token: the
// posted one is spent.
func (s *Server) retryLogin(w http.ResponseWriter, status int, a *authorization, state *flow, username, message string) {
	if err := s.setFlow(w, state); err != nil {
		s.clearFlow(w)
		s.serverError(w, err)
		return
	}
	s.renderLogin(w, status, a, state, username, message)
}

// login checks the posted username and password of an authorization's
// login form.
func (s *Server) login(w http.ResponseWriter, r *http.Request, a *authorization, state *flow) {
	username := r.PostForm.Get("username")
	who, status, message := s.checkPassword(r, username, r.PostForm.Get("password"), a.client.ID)
	switch {
	case who == nil && status == http.StatusServiceUnavailable:
		s.renderError(w, status, message, "Sign-in is not available right now; try again later.")
	case who == nil:
		s.retryLogin(w, status, a, state, username, message)
	default:
		s.signedIn(w, r.Context(), a, state, who)
	}
}

// checkPassword signs a local user in with a password, for client (the
// OAuth client the sign-in is for; "" on the approval page). Every failure
// shows the same message, and an unknown username costs a bcrypt
// comparison like a known one, so that the form does not tell which users
// exist. On failure it returns the status and message to show again (503:
// the title of an error page instead).
func (s *Server) checkPassword(r *http.Request, username, password, client string) (*identity, int, string) {
	if username == "" || password == "" {
		return nil, http.StatusOK, messageEmpty
	}
	now := s.now()
	ip := clientIP(r)
	// The guess is counted before the password is checked, so parallel
	// guesses cannot all slip in before the first failure is recorded.
	admitted, err := s.throttle.attempt(username, ip, now)
	if err != nil {
		s.logger.Error("authserver: a sign-in could not be counted against the throttle", slog.Any("error", err))
		return nil, http.StatusServiceUnavailable, "Sign-in unavailable"
	}
	if !admitted {
		_ = s.event(r.Context(), r, Event{Name: EventSignInFailed, Client: client, Status: http.StatusTooManyRequests, Detail: "throttled"})
		return nil, http.StatusTooManyRequests, messageThrottled
	}
	user, known := s.users[username]
	hash := s.dummyHash
	if known {
		hash = []byte(user.PasswordHash)
	}
	err = bcrypt.CompareHashAndPassword(hash, []byte(password))
	if doneErr := s.throttle.done(username, ip, err == nil && known); doneErr != nil {
		s.logger.Warn("authserver: the end of a sign-in could not be counted", slog.Any("error", doneErr))
	}
	if err != nil || !known {
		s.logger.Info("authserver: failed sign-in", slog.String("client_id", client), slog.String("remote_ip", ip))
		// The username is recorded only when it names a user: a password
		// typed into the username field must not reach the trail.
		e := Event{Name: EventSignInFailed, Client: client, Status: http.StatusOK, Detail: "wrong username or password"}
		if known {
			e.Subject = username
		}
		_ = s.event(r.Context(), r, e)
		return nil, http.StatusOK, messageBadLogin
	}
	detail := "password"
	if client == "" {
		detail = "password, approval page"
	}
	if err := s.event(r.Context(), r, Event{Name: EventSignIn, Subject: user.Username, Client: client, Detail: detail}); err != nil {
		return nil, http.StatusServiceUnavailable, "Sign-in not recorded"
	}
	return &identity{
		Subject:  user.Username,
		Username: user.Username,
		Name:     user.Name,
		Email:    user.Email,
		Groups:   user.Groups,
		AuthTime: now.Unix(),
		Local:    true,
	}, 0, ""
}

// signedIn continues an authorization once the user is known: to the
// client with the code when consent is implied or was given before, else
// to the consent page. prompt=consent always asks.
func (s *Server) signedIn(w http.ResponseWriter, ctx context.Context, a *authorization, state *flow, who *identity) {
	consented := false
	if !slices.Contains(a.prompts, "consent") {
		consented = a.client.SkipConsent
		// A client that describes itself in a metadata document is asked
		// about every time: its document may have changed hands.
		if !consented && a.client.documentHost == "" {
			var err error
			if consented, err = s.store.consented(who.Subject, a.client.ID, a.request.GetRequestedScopes(), a.audience); err != nil {
				s.serverError(w, err)
				return
			}
		}
	}
	if consented {
		s.issueCode(w, ctx, a, who.session())
		return
	}
	state.Stage = stageConsent
	state.Identity = who
	if err := s.setFlow(w, state); err != nil {
		s.clearFlow(w)
		s.redirectError(w, a, fosite.ErrServerError.WithHint("The sign-in could not be carried to the consent step.").WithWrap(err))
		return
	}
	s.renderConsent(w, a, state)
}

// clientIP is the address the request came from. Forwarding headers are
// not trusted: anyone can set them.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// loginThrottle slows password guessing: after maxUserFailures failed
// sign-ins for one username, or maxIPFailures from one address, within
// throttleWindow, further attempts are refused until the window ends. A
// guess counts as a failure from the moment it is admitted (attempt) until
// it proves right (done), and at most maxUserParallel guesses for one
// username and maxIPParallel from one address are checked at once, so the
// budget holds however many guesses arrive together. State is in memory
// and bounded.
type loginThrottle struct {
	mu       sync.Mutex
	failures map[string]*failureWindow
	// checking counts the guesses being checked, per username and address.
	checking map[string]int
}

type failureWindow struct {
	count int
	start time.Time
}

const (
	throttleWindow     = 15 * time.Minute
	maxUserFailures    = 5
	maxIPFailures      = 20
	maxUserParallel    = 1
	maxIPParallel      = 4
	maxThrottleEntries = 10000
)

func newLoginThrottle() *loginThrottle {
	return &loginThrottle{failures: map[string]*failureWindow{}, checking: map[string]int{}}
}

// attempt admits one guess for username from ip, counting it as a failure
// until done says otherwise; false means the guess must be refused
// unchecked.
func (t *loginThrottle) attempt(username, ip string, now time.Time) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	user, address := "user:"+username, "ip:"+ip
	if t.count(user, now) >= maxUserFailures || t.count(address, now) >= maxIPFailures ||
		t.checking[user] >= maxUserParallel || t.checking[address] >= maxIPParallel {
		return false, nil
	}
	t.failLocked(username, ip, now)
	t.checking[user]++
	t.checking[address]++
	return true, nil
}

// done ends a guess admitted by attempt. A right password clears the
// username's failures and takes the guess off the address's count.
func (t *loginThrottle) done(username, ip string, right bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, key := range []string{"user:" + username, "ip:" + ip} {
		if t.checking[key]--; t.checking[key] <= 0 {
			delete(t.checking, key)
		}
	}
	if right {
		delete(t.failures, "user:"+username)
		if window := t.failures["ip:"+ip]; window != nil && window.count > 0 {
			window.count--
		}
	}
	return nil
}

func (t *loginThrottle) count(key string, now time.Time) int {
	window, ok := t.failures[key]
	if !ok {
		return 0
	}
	if now.Sub(window.start) >= throttleWindow {
		delete(t.failures, key)
		return 0
	}
	return window.count
}

func (t *loginThrottle) failLocked(username, ip string, now time.Time) {
	for _, key := range []string{"user:" + username, "ip:" + ip} {
		if t.count(key, now) == 0 {
			if len(t.failures) >= maxThrottleEntries {
				t.evict(now)
			}
			t.failures[key] = &failureWindow{start: now}
		}
		t.failures[key].count++
	}
}

// evict makes room for one window: it deletes the expired windows, and if
// none had expired, the oldest window that locks nothing out. Only when
// every window locks a username or an address out does the oldest of them
// go: failures elsewhere must not lift a lock-out.
func (t *loginThrottle) evict(now time.Time) {
	var oldest, oldestLocking string
	for key, window := range t.failures {
		switch {
		case now.Sub(window.start) >= throttleWindow:
			delete(t.failures, key)
		case window.locksOut(key):
			if oldestLocking == "" || window.start.Before(t.failures[oldestLocking].start) {
				oldestLocking = key
			}
		default:
			if oldest == "" || window.start.Before(t.failures[oldest].start) {
				oldest = key
			}
		}
	}
	switch {
	case len(t.failures) < maxThrottleEntries:
	case oldest != "":
		delete(t.failures, oldest)
	default:
		delete(t.failures, oldestLocking)
	}
}

// locksOut reports whether the window of key refuses further attempts.
func (w *failureWindow) locksOut(key string) bool {
	if strings.HasPrefix(key, "user:") {
		return w.count >= maxUserFailures
	}
	return w.count >= maxIPFailures
}
