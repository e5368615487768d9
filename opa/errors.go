package opa

import "errors"

// Compile's errors wrap these; callers test with errors.Is.
var (
	// ErrSource is a [Source] with neither or both of Rego and File.
	ErrSource = errors.New("set exactly one of rego (the policy inline) or file")
	// ErrPackage is a policy outside package orchestrator.
	ErrPackage = errors.New("the package must be orchestrator")
	// ErrNoResult is a policy without a rule result, which could only deny.
	ErrNoResult = errors.New("the policy defines no rule result")
)
