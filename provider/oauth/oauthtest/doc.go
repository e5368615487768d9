// Package oauthtest serves an authorization server for tests, signs the
// tokens it issues (and forged ones), reads tokens without verifying them
// (Decode), and builds the table of access tokens every verifier of the
// house must refuse, so that the broker's inbound verifier and every other
// reader of tokens (the command line's token inspect among them) are held
// to the same cases.
//
// It imports nothing of the house, provider/oauth included, so that
// oauth's own internal tests can use it too.
package oauthtest
