package authserver

import (
	"fmt"
	"testing"
	"time"
)

// The tokens refused for lack of scope are remembered once each, for a
// while, and never more than maxStepUps of them.
func TestStepUpsBounded(t *testing.T) {
	var u stepUps
	now := time.Now()
	u.ask("a", now)
	if !u.taken("a", now) || u.taken("a", now) {
		t.Fatal("a step-up is taken exactly once")
	}
	u.ask("old", now)
	if u.taken("old", now.Add(stepUpTTL+time.Second)) {
		t.Fatal("a step-up outlived its ttl")
	}
	for i := range 5 * maxStepUps {
		u.ask(fmt.Sprint(i), now)
	}
	if n := len(u.asked); n > maxStepUps {
		t.Fatalf("%d step-ups kept, more than %d", n, maxStepUps)
	}
	if !u.taken(fmt.Sprint(5*maxStepUps-1), now) {
		t.Error("the latest step-up was dropped")
	}
}
