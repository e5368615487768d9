package audit_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/mcpbroker/mcpbroker/broker/audit"
)

// signedTrail writes 10 records with a checkpoint every 4, over several
// files: seq 1-4, checkpoint 5, 6-9, checkpoint 10, 11-12, Close's
// checkpoint 13. It returns where each seq is.
func signedTrail(t *testing.T, dir string, signer audit.Signer) map[uint64]trailLine {
	t.Helper()
	trail := openTrail(t, audit.TrailOptions{Dir: dir, Signer: signer, CheckpointEvery: 4, MaxFileBytes: 3000})
	writeRecords(t, trail, 10)
	if err := trail.Close(); err != nil {
		t.Fatal(err)
	}
	at := map[uint64]trailLine{}
	for _, l := range readLines(t, dir) {
		var r audit.Record
		if err := json.Unmarshal([]byte(l.text), &r); err != nil {
			t.Fatal(err)
		}
		at[r.Seq] = l
	}
	if len(at) != 13 || len(trailFiles(t, dir)) < 3 {
		t.Fatalf("%d records in %d files; want 13 in at least 3", len(at), len(trailFiles(t, dir)))
	}
	return at
}

// editLine changes line l of its file.
func editLine(t *testing.T, l trailLine, edit func(string) string) {
	t.Helper()
	lines := fileLines(t, l.file)
	lines[l.line-1] = edit(lines[l.line-1])
	rewrite(t, l.file, lines)
}

func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("%q not in %s", old, s)
	}
	return strings.Replace(s, old, new, 1)
}

// rechain recomputes every prev after the edits, as someone rewriting the
// trail without the signing key would.
func rechain(t *testing.T, dir string) {
	t.Helper()
	prev := ""
	for _, file := range trailFiles(t, dir) {
		lines := fileLines(t, file)
		for i, line := range lines {
			var r audit.Record
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			line = replaceOnce(t, line, fmt.Sprintf(`"prev":%q`, r.Prev), fmt.Sprintf(`"prev":%q`, prev))
			if r.Checkpoint != nil {
				line = replaceOnce(t, line, fmt.Sprintf(`"checkpoint":{"seq":%d,"prev":%q`, r.Seq, r.Prev), fmt.Sprintf(`"checkpoint":{"seq":%d,"prev":%q`, r.Seq, prev))
			}
			lines[i] = line
			sum := sha256.Sum256([]byte(line))
			prev = hex.EncodeToString(sum[:])
		}
		rewrite(t, file, lines)
	}
}

func TestVerifyFindsTampering(t *testing.T) {
	signer, jwks := testSigner(t, jose.EdDSA)
	_, otherKeys := testSigner(t, jose.EdDSA)
	tests := []struct {
		name    string
		tamper  func(t *testing.T, dir string, at map[uint64]trailLine)
		trusted *jose.JSONWebKeySet
		// where the problem is: the line that held seq before tampering
		atSeq   uint64
		kind    string
		seq     uint64
		contain string
	}{
		{
			name: "a flipped byte",
			tamper: func(t *testing.T, dir string, at map[uint64]trailLine) {
				editLine(t, at[3], func(s string) string { return replaceOnce(t, s, `"alice"`, `"alicf"`) })
			},
			atSeq: 3, kind: audit.ProblemEdited, seq: 3, contain: "does not hash to the prev of seq 4",
		},
		{
			name: "a flipped byte that breaks the JSON",
			tamper: func(t *testing.T, dir string, at map[uint64]trailLine) {
				editLine(t, at[3], func(s string) string { return "[" + s[1:] })
			},
			atSeq: 3, kind: audit.ProblemMalformed, seq: 3,
		},
		{
			name: "a changed seq",
			tamper: func(t *testing.T, dir string, at map[uint64]trailLine) {
				editLine(t, at[3], func(s string) string { return replaceOnce(t, s, `"seq":3,`, `"seq":9,`) })
			},
			atSeq: 3, kind: audit.ProblemEdited, seq: 9, contain: "its seq was changed",
		},
		{
			name: "a removed record",
			tamper: func(t *testing.T, dir string, at map[uint64]trailLine) {
				lines := fileLines(t, at[3].file)
				rewrite(t, at[3].file, append(lines[:at[3].line-1], lines[at[3].line:]...))
			},
			atSeq: 3, kind: audit.ProblemRemoved, seq: 4, contain: "record 3 is missing",
		},
		{
			name: "two swapped records",
			tamper: func(t *testing.T, dir string, at map[uint64]trailLine) {
				if at[3].file != at[4].file {
					t.Fatal("seq 3 and 4 are in different files")
				}
				lines := fileLines(t, at[3].file)
				i, j := at[3].line-1, at[4].line-1
				lines[i], lines[j] = lines[j], lines[i]
				rewrite(t, at[3].file, lines)
			},
			atSeq: 3, kind: audit.ProblemReordered, seq: 4, contain: "seq 4 comes before seq 3",
		},
		{
			name: "a removed file",
			tamper: func(t *testing.T, dir string, at map[uint64]trailLine) {
				files := trailFiles(t, dir)
				if err := os.Remove(files[1]); err != nil {
					t.Fatal(err)
				}
			},
			kind: audit.ProblemRemoved, contain: "missing before it",
		},
		{
			name: "a tail cut inside a line",
			tamper: func(t *testing.T, dir string, at map[uint64]trailLine) {
				info, err := os.Stat(at[13].file)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(at[13].file, info.Size()-40); err != nil {
					t.Fatal(err)
				}
			},
			atSeq: 13, kind: audit.ProblemIncomplete, seq: 13,
		},
		{
			name: "a record edited and the chain rewritten",
			tamper: func(t *testing.T, dir string, at map[uint64]trailLine) {
				editLine(t, at[3], func(s string) string { return replaceOnce(t, s, `"allowed":true`, `"allowed":false`) })
				rechain(t, dir)
			},
			atSeq: 5, kind: audit.ProblemBadSignature, seq: 5, contain: "signed seq, prev and time are not the record's",
		},
		{
			name: "a checkpoint signature taken from another checkpoint",
			tamper: func(t *testing.T, dir string, at map[uint64]trailLine) {
				var later audit.Record
				json.Unmarshal([]byte(at[10].text), &later)
				editLine(t, at[5], func(s string) string {
					var r audit.Record
					json.Unmarshal([]byte(s), &r)
					return replaceOnce(t, s, r.Checkpoint.Signature, later.Checkpoint.Signature)
				})
			},
			atSeq: 5, kind: audit.ProblemBadSignature, seq: 5,
		},
		{
			name: "a checkpoint signature with a flipped byte",
			tamper: func(t *testing.T, dir string, at map[uint64]trailLine) {
				editLine(t, at[5], func(s string) string {
					var r audit.Record
					json.Unmarshal([]byte(s), &r)
					sig := r.Checkpoint.Signature
					other := "A"
					if sig[len(sig)-5] == 'A' {
						other = "B"
					}
					flipped := sig[:len(sig)-5] + other + sig[len(sig)-4:]
					return replaceOnce(t, s, sig, flipped)
				})
			},
			atSeq: 5, kind: audit.ProblemBadSignature, seq: 5, contain: "does not verify",
		},
		{
			name:    "checkpoints signed by a key that is not trusted",
			tamper:  func(t *testing.T, dir string, at map[uint64]trailLine) {},
			trusted: otherKeys,
			atSeq:   5, kind: audit.ProblemUntrustedKey, seq: 5,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			at := signedTrail(t, dir, signer)
			tt.tamper(t, dir, at)
			trusted := jwks
			if tt.trusted != nil {
				trusted = tt.trusted
			}
			report := mustVerify(t, dir, trusted)
			p := report.Problem
			if p == nil {
				t.Fatalf("verify found nothing:\n%s", report.String())
			}
			if p.Kind != tt.kind || (tt.seq != 0 && p.Seq != tt.seq) || !strings.Contains(p.Detail, tt.contain) {
				t.Fatalf("problem %s; want %s at seq %d, saying %q", p, tt.kind, tt.seq, tt.contain)
			}
			if tt.atSeq != 0 && (p.File != at[tt.atSeq].file || p.Line != at[tt.atSeq].line) {
				t.Fatalf("problem at %s:%d, want %s:%d", p.File, p.Line, at[tt.atSeq].file, at[tt.atSeq].line)
			}
			if !strings.HasPrefix(report.String(), fmt.Sprintf("%s:%d: seq %d: %s: ", p.File, p.Line, p.Seq, p.Kind)) {
				t.Fatalf("report does not start with the problem:\n%s", report.String())
			}
		})
	}
}

func TestVerifyCutTail(t *testing.T) {
	signer, jwks := testSigner(t, jose.EdDSA)

	dir := t.TempDir()
	at := signedTrail(t, dir, signer)
	whole := mustVerify(t, dir, jwks)
	if !whole.OK() || whole.LastCheckpointSeq != 13 || len(whole.Warnings) != 0 {
		t.Fatalf("whole trail:\n%s", whole.String())
	}
	anchor := fmt.Sprintf("%d:%s", whole.LastCheckpointSeq, whole.LastCheckpointHash)
	if !strings.Contains(whole.String(), "anchor "+anchor) {
		t.Fatalf("the report does not print the anchor %s:\n%s", anchor, whole.String())
	}

	// Without the last checkpoint, the records after the one before are
	// not covered: a warning, with the words of the limit.
	lines := fileLines(t, at[13].file)
	rewrite(t, at[13].file, lines[:at[13].line-1])
	cut := mustVerify(t, dir, jwks)
	if !cut.OK() || cut.Uncovered != 2 || len(cut.Warnings) != 1 ||
		!strings.Contains(cut.Warnings[0], "tail not covered by a checkpoint: 2 records (seq 11..12)") ||
		!strings.Contains(cut.Warnings[0], "a cut tail after a checkpoint is detectable only by comparing with a later checkpoint") {
		t.Fatalf("trail without its last checkpoint:\n%s", cut.String())
	}

	// Compared with the anchor of the earlier verification, the cut shows.
	parsed, err := audit.ParseAnchor(anchor)
	if err != nil {
		t.Fatal(err)
	}
	report, err := audit.VerifyPaths([]string{dir}, audit.VerifyOptions{Trusted: jwks, Anchor: &parsed})
	if err != nil {
		t.Fatal(err)
	}
	if report.OK() || report.Problem.Kind != audit.ProblemCutTail || report.Problem.Seq != 13 {
		t.Fatalf("with the anchor:\n%s", report.String())
	}

	// An anchor on a record that is there but changed.
	edited := fmt.Sprintf("%d:%s", 12, strings.Repeat("0", 64))
	parsed, _ = audit.ParseAnchor(edited)
	report, _ = audit.VerifyPaths([]string{dir}, audit.VerifyOptions{Anchor: &parsed})
	if report.OK() || report.Problem.Kind != audit.ProblemEdited || report.Problem.Seq != 12 {
		t.Fatalf("with an anchor that does not match:\n%s", report.String())
	}
}

func TestVerifyUnsigned(t *testing.T) {
	dir := t.TempDir()
	trail := openTrail(t, audit.TrailOptions{Dir: dir})
	writeRecords(t, trail, 3)
	trail.Close()

	report := mustVerify(t, dir, nil)
	if !report.OK() || report.Unsigned != 1 || !strings.Contains(strings.Join(report.Warnings, "\n"), "1 of 1 checkpoints are unsigned") {
		t.Fatalf("unsigned trail:\n%s", report.String())
	}
	_, jwks := testSigner(t, jose.EdDSA)
	report = mustVerify(t, dir, jwks)
	if report.OK() || report.Problem.Kind != audit.ProblemUntrustedKey || report.Problem.Seq != 4 {
		t.Fatalf("unsigned trail with trusted keys:\n%s", report.String())
	}
}

func TestVerifySignedWithoutTrustedKeys(t *testing.T) {
	signer, _ := testSigner(t, jose.ES256)
	dir := t.TempDir()
	signedTrail(t, dir, signer)
	report := mustVerify(t, dir, nil)
	if !report.OK() || report.KeysChecked || !strings.Contains(strings.Join(report.Warnings, "\n"), "not checked against trusted keys") {
		t.Fatalf("signed trail without trusted keys:\n%s", report.String())
	}
}

func TestVerifyStartsLater(t *testing.T) {
	signer, jwks := testSigner(t, jose.EdDSA)
	dir := t.TempDir()
	signedTrail(t, dir, signer)
	// Old files archived elsewhere: the rest still verifies, with a word.
	if err := os.Remove(trailFiles(t, dir)[0]); err != nil {
		t.Fatal(err)
	}
	report := mustVerify(t, dir, jwks)
	if !report.OK() || report.FirstSeq == 1 || !strings.Contains(strings.Join(report.Warnings, "\n"), "starts at seq") {
		t.Fatalf("trail without its first file:\n%s", report.String())
	}
}

func TestVerifyLongLine(t *testing.T) {
	dir := t.TempDir()
	trail := openTrail(t, audit.TrailOptions{Dir: dir})
	writeRecords(t, trail, 2)
	trail.Close()
	files := trailFiles(t, dir)
	lines := fileLines(t, files[0])
	lines[1] = strings.Repeat("x", audit.MaxLineBytes+1)
	rewrite(t, files[0], lines)
	report := mustVerify(t, dir, nil)
	if report.OK() || report.Problem.Kind != audit.ProblemMalformed || report.Problem.Line != 2 || report.Problem.Seq != 2 {
		t.Fatalf("a line over the limit:\n%s", report.String())
	}
}

func TestVerifyPathsFiles(t *testing.T) {
	signer, jwks := testSigner(t, jose.EdDSA)
	dir := t.TempDir()
	signedTrail(t, dir, signer)
	files := trailFiles(t, dir)
	// Files given in any order are read in chain order.
	reversed := make([]string, len(files))
	for i, f := range files {
		reversed[len(files)-1-i] = f
	}
	report, err := audit.VerifyPaths(reversed, audit.VerifyOptions{Trusted: jwks})
	if err != nil || !report.OK() || report.Records != 13 {
		t.Fatalf("files in reverse: %v\n%s", err, report.String())
	}
	if _, err := audit.VerifyPaths([]string{filepath.Join(dir, "missing")}, audit.VerifyOptions{}); err == nil {
		t.Fatal("a missing path verified")
	}
	if _, err := audit.VerifyPaths([]string{t.TempDir()}, audit.VerifyOptions{}); err == nil {
		t.Fatal("an empty directory verified")
	}
	if _, err := audit.VerifyPaths([]string{os.DevNull}, audit.VerifyOptions{}); err == nil {
		t.Fatal("a device verified")
	}
}

// FuzzVerify feeds arbitrary file content to Verify: it reports or
// accepts, and never panics.
func FuzzVerify(f *testing.F) {
	signer, _ := testSigner(f, jose.EdDSA)
	dir := f.TempDir()
	trail, err := audit.OpenTrail(audit.TrailOptions{Dir: dir, Signer: signer, CheckpointEvery: 2})
	if err != nil {
		f.Fatal(err)
	}
	writeRecords(f, trail, 3)
	trail.Close()
	for _, file := range trailFiles(f, dir) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"seq":1,"prev":"","kind":"checkpoint","checkpoint":{"seq":1,"prev":"","sig":"a.b.c","jwk":{"kty":"OKP"}}}` + "\n"))
	f.Add([]byte(`{"seq":18446744073709551615}` + "\n" + `{"seq":1}`))
	// One directory for every input: a fuzzing process runs one input at
	// a time, and a new directory per input would cost more than Verify.
	fuzzDir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := fuzzDir
		if err := os.WriteFile(filepath.Join(dir, "audit-00000000000000000001-20261204T120000.000Z.jsonl"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		report, err := audit.Verify(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = report.String()
		if report.OK() && report.Records > 0 && report.LastSeq < report.FirstSeq {
			t.Fatalf("whole trail with seq %d..%d", report.FirstSeq, report.LastSeq)
		}
	})
}
