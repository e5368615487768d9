package limit

import "errors"

var (
	// ErrStoreUnavailable wraps every failure of a shared limit store
	// (Redis down, a timeout, a refused command). The caller decides
	// whether a call goes through without a decision (fail open) or is
	// refused (fail closed).
	ErrStoreUnavailable = errors.New("limit: store unavailable")

	// ErrInvalidRate wraps every problem with a Rate or a cost: a limiter
	// given one makes no decision.
	ErrInvalidRate = errors.New("limit: invalid rate")
)
