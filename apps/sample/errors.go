package sample

import "errors"

// Errors the ledger reports. Tools return them as isError results, so they
// never leave the package as Go values.
var (
	errUnknownAccount    = errors.New("unknown account")
	errInvalidAmount     = errors.New("amount must be greater than 0")
	errSameAccount       = errors.New("cannot transfer to the same account")
	errInsufficientFunds = errors.New("insufficient funds")
)
