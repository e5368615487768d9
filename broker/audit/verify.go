package audit

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// What Verify finds wrong with a record.
const (
	ProblemMalformed    = "malformed"  // not a JSON record, or a line longer than MaxLineBytes
	ProblemIncomplete   = "incomplete" // a last line without its newline: a torn write or a cut
	ProblemEdited       = "edited"     // its line no longer hashes to the next record's prev, or its seq changed
	ProblemRemoved      = "removed"    // a seq gap: records before it are missing
	ProblemReordered    = "reordered"  // a record out of seq order
	ProblemBadSignature = "bad checkpoint signature"
	ProblemUntrustedKey = "untrusted key"
	ProblemCutTail      = "cut tail" // the trail ends before a record an anchor names
)

// checkpointAlgorithms are the signature algorithms a checkpoint may use.
var checkpointAlgorithms = []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.PS256}

// Problem is the first bad record Verify found.
type Problem struct {
	File   string
	Line   int    // from 1 within File
	Seq    uint64 // the record's seq, or the seq expected there when unreadable
	Kind   string // one of the Problem constants
	Detail string
}

func (p *Problem) String() string {
	return fmt.Sprintf("%s:%d: seq %d: %s: %s", p.File, p.Line, p.Seq, p.Kind, p.Detail)
}

// Anchor is a record seen in an earlier verification (typically its last
// checkpoint): its seq and the hex SHA-256 of its line. A trail that no
// longer holds it, or holds another line there, was cut or rewritten.
type Anchor struct {
	Seq  uint64
	Hash string
}

// ParseAnchor reads an anchor written as SEQ:HASH.
func ParseAnchor(s string) (Anchor, error) {
	seq, hash, ok := strings.Cut(s, ":")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil || n == 0 || len(hash) != 64 {
		return Anchor{}, fmt.Errorf("audit: anchor %q is not SEQ:SHA256HEX", s)
	}
	if _, err := hex.DecodeString(hash); err != nil {
		return Anchor{}, fmt.Errorf("audit: anchor %q is not SEQ:SHA256HEX", s)
	}
	return Anchor{Seq: n, Hash: strings.ToLower(hash)}, nil
}

// VerifyOptions says what to check beyond the chain.
type VerifyOptions struct {
	// Trusted, when set, are the keys checkpoints must be signed with,
	// matched by kid and RFC 7638 thumbprint. Unsigned checkpoints are
	// then bad too.
	Trusted *jose.JSONWebKeySet
	// Anchor, when set, must be in the trail as it was.
	Anchor *Anchor
}

// Report is what Verify found.
type Report struct {
	Files    []string
	Records  uint64 // records read whole and in order before any problem
	FirstSeq uint64
	LastSeq  uint64

	Checkpoints int  // checkpoints verified
	Unsigned    int  // of which unsigned
	KeysChecked bool // signed checkpoints were checked against trusted keys

	// The last checkpoint: its seq, time, and the hex SHA-256 of its line,
	// to keep elsewhere and pass as an anchor to a later verification.
	LastCheckpointSeq  uint64
	LastCheckpointTime time.Time
	LastCheckpointHash string

	// Uncovered is the number of records after the last checkpoint.
	Uncovered uint64

	// Problem is the first bad record; nil when the trail is whole.
	Problem  *Problem
	Warnings []string
}

// OK says the trail is whole.
func (r Report) OK() bool { return r.Problem == nil }

// String is the report for a person: the first problem, or a summary,
// then the warnings.
func (r Report) String() string {
	var b strings.Builder
	if r.Problem != nil {
		b.WriteString(r.Problem.String())
		b.WriteByte('\n')
		fmt.Fprintf(&b, "%d records before it are whole\n", r.Records)
	} else {
		fmt.Fprintf(&b, "ok: %d files, %d records", len(r.Files), r.Records)
		if r.Records > 0 {
			fmt.Fprintf(&b, " (seq %d..%d)", r.FirstSeq, r.LastSeq)
		}
		fmt.Fprintf(&b, ", %d checkpoints", r.Checkpoints)
		switch {
		case r.Checkpoints == 0:
		case r.Unsigned == r.Checkpoints:
			b.WriteString(", unsigned")
		case r.KeysChecked:
			b.WriteString(", signed by trusted keys")
		default:
			b.WriteString(", signed (keys not checked against trusted keys)")
		}
		b.WriteByte('\n')
		if r.LastCheckpointSeq > 0 {
			fmt.Fprintf(&b, "last checkpoint: seq %d at %s, anchor %d:%s\n", r.LastCheckpointSeq, r.LastCheckpointTime.Format(time.RFC3339), r.LastCheckpointSeq, r.LastCheckpointHash)
		}
	}
	for _, w := range r.Warnings {
		b.WriteString("warning: ")
		b.WriteString(w)
		b.WriteByte('\n')
	}
	return b.String()
}

// Verify checks the trail in dir (see VerifyPaths) with no anchor.
func Verify(dir string, trusted *jose.JSONWebKeySet) (Report, error) {
	return VerifyPaths([]string{dir}, VerifyOptions{Trusted: trusted})
}

// VerifyPaths reads every file of the trail in chain order (paths are
// trail directories or files) and checks that each line is a record, that
// seq runs on by one and each prev is the SHA-256 of the line before, and
// each checkpoint's signature. It reports the first bad record. Records
// after the last checkpoint are a warning: removing them leaves no trace
// in the trail itself, so a cut tail after a checkpoint is found only by
// comparing with a later checkpoint (an Anchor). It streams: memory does
// not grow with the trail. The error is for files it cannot read.
func VerifyPaths(paths []string, options VerifyOptions) (Report, error) {
	files, err := trailFiles(paths)
	if err != nil {
		return Report{}, err
	}
	v := verifier{options: options, source: newLineSource(files)}
	defer v.source.close()
	for _, f := range files {
		v.report.Files = append(v.report.Files, f.path)
	}
	if err := v.run(); err != nil {
		return Report{}, err
	}
	v.finish()
	return v.report, nil
}

type verifier struct {
	options VerifyOptions
	source  *lineSource
	report  Report

	// The last good record.
	have     bool
	prevHash string
	prevSeq  uint64
	prevFile string
	prevLine int

	sawAnchor bool
}

func (v *verifier) fail(l *line, seq uint64, kind, detail string) {
	v.report.Problem = &Problem{File: l.file, Line: l.number, Seq: seq, Kind: kind, Detail: detail}
}

func (v *verifier) run() error {
	for {
		l, err := v.source.read()
		if err != nil || l == nil {
			return err
		}
		expected := v.prevSeq + 1
		if l.tooLong {
			v.fail(l, expected, ProblemMalformed, fmt.Sprintf("line longer than %d bytes", MaxLineBytes))
			return nil
		}
		var record Record
		if err := json.Unmarshal(l.data, &record); err != nil || record.Seq == 0 {
			detail := "not a record: no seq"
			if err != nil {
				detail = "not a JSON record: " + err.Error()
			}
			if !l.complete {
				v.fail(l, expected, ProblemIncomplete, "the last line has no newline (a write cut short or a cut file): "+detail)
			} else {
				v.fail(l, expected, ProblemMalformed, detail)
			}
			return nil
		}
		if !l.complete {
			v.fail(l, record.Seq, ProblemIncomplete, "the line has no newline: a write cut short (restarting the broker cuts it off) or a cut file")
			return nil
		}
		if stop, err := v.chain(l, &record); stop || err != nil {
			return err
		}
		sum := sha256.Sum256(l.data)
		hash := hex.EncodeToString(sum[:])
		if a := v.options.Anchor; a != nil && record.Seq == a.Seq {
			if hash != a.Hash {
				v.fail(l, record.Seq, ProblemEdited, fmt.Sprintf("the line hashes to %s, the anchor says %s", hash, a.Hash))
				return nil
			}
			v.sawAnchor = true
		}
		if record.Kind == KindCheckpoint {
			if kind, detail := v.checkpoint(&record); kind != "" {
				v.fail(l, record.Seq, kind, detail)
				return nil
			}
			v.report.LastCheckpointSeq, v.report.LastCheckpointTime, v.report.LastCheckpointHash = record.Seq, record.Time, hash
			v.report.Uncovered = 0
		} else {
			v.report.Uncovered++
		}
		if !v.have {
			v.report.FirstSeq = record.Seq
		}
		v.report.Records++
		v.report.LastSeq = record.Seq
		v.have, v.prevHash, v.prevSeq, v.prevFile, v.prevLine = true, hash, record.Seq, l.file, l.number
	}
}

// chain checks record's seq and prev against the record before it and
// reports what is wrong.
func (v *verifier) chain(l *line, record *Record) (stop bool, err error) {
	if !v.have {
		switch {
		case record.Seq == 1 && record.Prev != "":
			v.fail(l, record.Seq, ProblemEdited, "the first record has a prev")
			return true, nil
		case record.Seq > 1:
			v.report.Warnings = append(v.report.Warnings, fmt.Sprintf(
				"the trail here starts at seq %d: records before it are elsewhere or were removed, and the chain is checked from there", record.Seq))
		}
		return false, nil
	}
	expected := v.prevSeq + 1
	linked := record.Prev == v.prevHash
	switch {
	case record.Seq == expected && linked:
		return false, nil
	case record.Seq == expected:
		v.report.Problem = &Problem{File: v.prevFile, Line: v.prevLine, Seq: v.prevSeq, Kind: ProblemEdited, Detail: fmt.Sprintf(
			"the line does not hash to the prev of seq %d (%s:%d): this record, or that prev, was changed", record.Seq, l.file, l.number)}
		v.report.Records--
		return true, nil
	case linked:
		v.fail(l, record.Seq, ProblemEdited, fmt.Sprintf("seq %d where %d belongs, though its prev links to seq %d: its seq was changed", record.Seq, expected, v.prevSeq))
		return true, nil
	case record.Seq > expected:
		next, err := v.source.peek()
		if err != nil {
			return true, err
		}
		if next != nil {
			var following Record
			if json.Unmarshal(next.data, &following) == nil && following.Seq >= expected && following.Seq < record.Seq {
				v.fail(l, record.Seq, ProblemReordered, fmt.Sprintf("seq %d comes before seq %d (%s:%d)", record.Seq, following.Seq, next.file, next.number))
				return true, nil
			}
		}
		v.fail(l, record.Seq, ProblemRemoved, fmt.Sprintf("seq %d follows seq %d: %s missing before it", record.Seq, v.prevSeq, seqRange(expected, record.Seq-1)))
		return true, nil
	default:
		v.fail(l, record.Seq, ProblemReordered, fmt.Sprintf("seq %d follows seq %d", record.Seq, v.prevSeq))
		return true, nil
	}
}

func seqRange(from, to uint64) string {
	if from == to {
		return fmt.Sprintf("record %d is", from)
	}
	return fmt.Sprintf("records %d..%d are", from, to)
}

// checkpoint verifies a checkpoint record; kind is "" when it is good.
func (v *verifier) checkpoint(record *Record) (kind, detail string) {
	c := record.Checkpoint
	switch {
	case c == nil:
		return ProblemBadSignature, "a checkpoint record without its checkpoint"
	case c.Seq != record.Seq || c.Prev != record.Prev:
		return ProblemBadSignature, "the checkpoint names another seq or prev than its record"
	}
	v.report.Checkpoints++
	if c.Signature == "" {
		v.report.Unsigned++
		if v.options.Trusted != nil {
			return ProblemUntrustedKey, "an unsigned checkpoint, while trusted keys were given"
		}
		return "", ""
	}
	if c.Key == nil || c.Key.Key == nil {
		return ProblemBadSignature, "a signed checkpoint without its key"
	}
	if !c.Key.IsPublic() {
		return ProblemBadSignature, "the checkpoint holds a private key"
	}
	if rsaKey, ok := c.Key.Key.(*rsa.PublicKey); ok && (rsaKey.N.BitLen() < 2048 || rsaKey.N.BitLen() > 8192) {
		return ProblemBadSignature, "an RSA key outside 2048..8192 bits"
	}
	alg := jose.SignatureAlgorithm(c.Algorithm)
	if !slices.Contains(checkpointAlgorithms, alg) || (c.Key.Algorithm != "" && c.Key.Algorithm != c.Algorithm) {
		return ProblemBadSignature, fmt.Sprintf("algorithm %q is not allowed or does not match the key", c.Algorithm)
	}
	signature, err := jose.ParseSignedCompact(c.Signature, []jose.SignatureAlgorithm{alg})
	if err != nil || len(signature.Signatures) != 1 {
		return ProblemBadSignature, "the signature is not a JWS compact serialization"
	}
	header := signature.Signatures[0].Protected
	if header.KeyID != c.KeyID || (c.Key.KeyID != "" && c.Key.KeyID != c.KeyID) {
		return ProblemBadSignature, "the signature's kid does not match the checkpoint's key"
	}
	if typ, _ := header.ExtraHeaders[jose.HeaderType].(string); typ != CheckpointType {
		return ProblemBadSignature, fmt.Sprintf("the signature's typ is %q, not %q", typ, CheckpointType)
	}
	payload, err := signature.Verify(c.Key)
	if err != nil {
		return ProblemBadSignature, "the signature does not verify with the checkpoint's key"
	}
	if !bytes.Equal(payload, checkpointPayload(record.Seq, record.Prev, record.Time)) {
		return ProblemBadSignature, "the signed seq, prev and time are not the record's"
	}
	if trusted := v.options.Trusted; trusted != nil {
		v.report.KeysChecked = true
		thumbprint, err := c.Key.Thumbprint(crypto.SHA256)
		if err != nil {
			return ProblemBadSignature, "the checkpoint's key has no thumbprint"
		}
		for _, k := range trusted.Key(c.KeyID) {
			public := k.Public()
			if t, err := public.Thumbprint(crypto.SHA256); err == nil && bytes.Equal(t, thumbprint) {
				return "", ""
			}
		}
		return ProblemUntrustedKey, fmt.Sprintf("kid %q with this thumbprint is not among the trusted keys", c.KeyID)
	}
	return "", ""
}

// finish adds the warnings of a trail without problems so far.
func (v *verifier) finish() {
	r := &v.report
	if r.Problem != nil {
		return
	}
	if a := v.options.Anchor; a != nil && !v.sawAnchor {
		r.Problem = &Problem{Seq: a.Seq, Kind: ProblemCutTail, Detail: fmt.Sprintf("the anchor's seq %d is not in the trail, which ends at seq %d", a.Seq, r.LastSeq)}
		if len(r.Files) > 0 {
			r.Problem.File = r.Files[len(r.Files)-1]
		}
		if a.Seq < r.FirstSeq {
			r.Problem.Kind, r.Problem.Detail = ProblemRemoved, fmt.Sprintf("the anchor's seq %d is before the trail's first seq %d", a.Seq, r.FirstSeq)
		}
		return
	}
	if r.Records == 0 {
		r.Warnings = append(r.Warnings, "the trail holds no records")
		return
	}
	if r.Uncovered > 0 {
		keep := "keep the last checkpoint's anchor and pass it with --anchor next time"
		if r.LastCheckpointSeq == 0 {
			keep = "this trail has no checkpoint yet"
		}
		r.Warnings = append(r.Warnings, fmt.Sprintf(
			"tail not covered by a checkpoint: %d records (seq %d..%d). Records after the last checkpoint can be removed without a trace in the trail itself; a cut tail after a checkpoint is detectable only by comparing with a later checkpoint (%s)",
			r.Uncovered, r.LastSeq-r.Uncovered+1, r.LastSeq, keep))
	}
	if r.Unsigned > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d of %d checkpoints are unsigned: they prove nothing about who wrote the trail", r.Unsigned, r.Checkpoints))
	}
	if v.options.Trusted == nil && r.Checkpoints > r.Unsigned {
		r.Warnings = append(r.Warnings, "checkpoint keys were not checked against trusted keys (--jwks): the signatures prove only that whoever wrote the trail held the key it names")
	}
}
