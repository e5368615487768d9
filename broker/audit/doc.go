// Package audit owns the broker's audit trail: the record of every
// decision (one Record each), the durable hash-chained trail it is written
// to, signed checkpoints, the sinks that ship copies elsewhere, and the
// verification and query of a trail at rest.
//
// # Writing
//
// Trail is the durable sink. Callers Write a Record; one writer goroutine
// takes what is queued, writes it as one batch and fsyncs once for the
// whole batch (group commit). With Sync durability (the default) Write
// returns after that fsync, so a call whose record is not on disk can be
// refused; with Async it returns once the record is queued. The queue is
// bounded in records and bytes: when it is full, Write waits until its
// context ends. Multi writes to the trail first and then, best effort, to
// the other sinks (StdoutSink, OTLPSink), whose failures never refuse a
// call.
//
// # Format
//
// A trail is a directory (mode 0700) of JSON Lines files (mode 0600):
//
//	audit-<first seq, 20 digits>-<UTC creation time 20060102T150405.000Z>.jsonl
//
// Names sort in chain order. A new file starts when the current one would
// grow beyond MaxFileBytes or is older than MaxFileAge; the chain runs on
// across files. The directory also holds .lock while a broker writes it.
//
// Each line is one record, a JSON object ended by "\n", at most
// MaxLineBytes long. Its members, in this order: time (RFC 3339, UTC), id,
// seq, prev, kind, event, then the optional ones (see Record). seq counts
// from 1 across all files and restarts. prev is the lowercase hex SHA-256
// of the previous line's bytes without its newline, "" for seq 1. So to
// check a line by hand:
//
//	sed -n 41p audit-…jsonl | tr -d '\n' | sha256sum   # must equal the prev of line 42
//
// Digests of arguments and responses are "sha256:<hex>" of the RFC 8785
// canonical JSON (members sorted, no whitespace; see Digest), so the same
// arguments give the same digest however a client spelled them.
//
// # Checkpoints
//
// Every CheckpointEvery records, every CheckpointInterval when records came
// since, and at Close, the trail writes a record of kind "checkpoint":
//
//	{"time":T,"id":…,"seq":S,"prev":P,"kind":"checkpoint","event":"trail.checkpoint",
//	 "checkpoint":{"seq":S,"prev":P,"kid":…,"alg":…,"jwk":{…},"sig":JWS}}
//
// sig is a JWS compact serialization (typ "audit-checkpoint") whose
// payload is the canonical JSON {"prev":P,"seq":S,"time":T}, T spelled as
// in the record. It is signed by the broker's signing key; jwk is that
// key's public half and kid its RFC 7638 thumbprint, so it can be checked
// against the broker's published JWKS. Without a signer, checkpoints carry
// seq and prev only and prove nothing about who wrote them.
//
// # Recovery
//
// A crash can leave the last line of the newest file incomplete (a batch
// cut short: none of its Sync writers had been answered). When a trail
// opens it cuts that line off and writes a "trail.recovered" record
// (kind "trail") saying how many bytes were cut, their SHA-256 and where;
// the chain continues from the last whole record. Records refused by a
// failing disk leave a "trail.fault" record once writing works again.
//
// # Verifying
//
// Verify (mcpbroker audit verify) reads every file in order and reports the
// first bad record: a line that is not a record (malformed, incomplete), a
// line whose hash is not the next record's prev (edited), a seq gap
// (removed), a seq out of order (reordered), a checkpoint whose signature
// does not verify or whose key is not trusted. Records after the last
// checkpoint are reported as a warning: removing them leaves no trace in
// the trail itself, so a cut tail after a checkpoint is detectable only by
// comparing with a later checkpoint. Verify prints the last checkpoint as
// an anchor (seq and line hash); keep it elsewhere and pass it to the next
// verification, which then fails if that record is gone or changed. An
// attacker who holds the signing key, or deletes the whole trail, is
// outside what the trail can prove.
package audit
