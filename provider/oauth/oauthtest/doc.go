// Package oauthtest serves an authorization server for tests and builds the
// table of access tokens every verifier of the house must refuse, so that
// the broker's inbound verifier and every other reader of tokens (the
// command line's token inspect among them) are held to the same cases.
package oauthtest
