package authserver

import (
	"fmt"
	"testing"
	"time"
)

// When the throttle's table is full, failures elsewhere make room by
// dropping expired windows, then the oldest that lock nothing out: a
// locked-out user stays locked out however many other usernames and
// addresses fail.
func TestThrottleLockoutSurvivesAFullTable(t *testing.T) {
	throttle := newLoginThrottle()
	now := time.Unix(1_700_000_000, 0)
	for range maxUserFailures {
		failGuess(t, throttle, "alice", "203.0.113.7", now)
	}
	if admit(throttle, "alice", "198.51.100.1", now) {
		t.Fatal("alice is not blocked after maxUserFailures failures")
	}
	for i := range maxThrottleEntries / 2 {
		ip := fmt.Sprintf("2001:db8::%x", i+1)
		user := fmt.Sprintf("junk-%d", i)
		failGuess(t, throttle, user, ip, now)
	}
	if admit(throttle, "alice", "198.51.100.1", now.Add(time.Second)) {
		t.Error("alice's lock-out was erased by failures of other usernames from other addresses")
	}
	if len(throttle.failures) > maxThrottleEntries {
		t.Errorf("%d failure windows, want at most %d", len(throttle.failures), maxThrottleEntries)
	}
	// Once the windows expire, they are what makes room.
	later := now.Add(throttleWindow)
	failGuess(t, throttle, "bob", "198.51.100.2", later)
	if len(throttle.failures) > maxThrottleEntries/2 {
		t.Errorf("%d failure windows after the others expired; expired windows are not dropped first", len(throttle.failures))
	}
}

// failGuess makes one wrong guess, which the throttle must admit.
func failGuess(t *testing.T, throttle *loginThrottle, username, ip string, now time.Time) {
	t.Helper()
	if !admit(throttle, username, ip, now) {
		t.Fatalf("a guess for %s from %s was refused", username, ip)
	}
	throttle.done(username, ip, false)
}

// admit is attempt for the in-memory throttle, which never fails.
func admit(t *loginThrottle, username, ip string, now time.Time) bool {
	admitted, _ := t.attempt(username, ip, now)
	return admitted
}

// spendOK is spend for the in-memory forms, which never fails.
func spendOK(f *spentForms, token string, now time.Time) bool {
	fresh, _ := f.spend(token, now)
	return fresh
}
