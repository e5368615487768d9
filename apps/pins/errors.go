package pins

import "errors"

// Errors of the operators' actions; callers tell them apart with
// errors.Is.
var (
	// ErrNotFound: the store holds no pin of that app, kind and name.
	ErrNotFound = errors.New("pins: no such pin")
	// ErrNoCandidate: nothing waits for approval, or what waits has
	// another hash than the one given.
	ErrNoCandidate = errors.New("pins: no definition waits for approval with that hash")
	// ErrDeclared: the pin is declared in the configuration, which wins
	// over the store; approving or revoking would change nothing.
	ErrDeclared = errors.New("pins: the pin is declared in the configuration (toolPinning.pins); change it there")
	// errConflict: a pin kept changing under a read-modify-write.
	errConflict = errors.New("pins: the pin changed while it was updated; try again")
)
