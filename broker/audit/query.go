package audit

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Decision filter values.
const (
	DecisionAllowed = "allowed" // a decision that allowed
	DecisionDenied  = "denied"  // a decision that denied
	DecisionRefused = "refused" // no decision was reached and the client got an error (authentication, limits, malformed)
)

// Filter selects records in Query; empty fields match everything.
type Filter struct {
	Since, Until time.Time // Since <= time <= Until
	Subject      string
	Tool         string // the client's name or the upstream's
	App          string
	Decision     string // DecisionAllowed, DecisionDenied or DecisionRefused
	Kind         string
}

// fileSkew allows for a clock set back a little between two files.
const fileSkew = time.Hour

// Match says whether r passes the filter.
func (f *Filter) Match(r *Record) bool {
	switch {
	case !f.Since.IsZero() && r.Time.Before(f.Since),
		!f.Until.IsZero() && r.Time.After(f.Until),
		f.Subject != "" && r.Subject != f.Subject,
		f.Tool != "" && r.Tool != f.Tool && r.UpstreamTool != f.Tool,
		f.App != "" && r.App != f.App,
		f.Kind != "" && r.Kind != f.Kind:
		return false
	}
	switch f.Decision {
	case DecisionAllowed:
		return r.Decision != nil && r.Decision.Allowed
	case DecisionDenied:
		return r.Decision != nil && !r.Decision.Allowed
	case DecisionRefused:
		return r.Decision == nil && r.Result != nil && (r.Result.HTTPStatus >= 400 || r.Result.RPCCode != 0 || r.Result.IsError)
	}
	return true
}

// Query calls fn with each record of the trail in dir that matches filter,
// in trail order, until fn returns false. It streams. Lines that are not
// records are skipped; Query then returns ErrUnreadable once it is done
// (Verify says where).
func Query(dir string, filter Filter, fn func(*Record) bool) error {
	switch filter.Decision {
	case "", DecisionAllowed, DecisionDenied, DecisionRefused:
	default:
		return fmt.Errorf("%w: decision %q is not allowed, denied or refused", ErrFilter, filter.Decision)
	}
	files, err := listTrail(os.ReadDir, dir)
	if err != nil {
		return err
	}
	// A file whose successor was created well before Since holds nothing
	// wanted: its records were written, so timed, before that. (Until
	// skips nothing: a record is timed when its call starts, which a long
	// call puts well before the file it is written to.)
	first := 0
	for i := 0; i+1 < len(files); i++ {
		if !filter.Since.IsZero() && files[i+1].created.Add(fileSkew).Before(filter.Since) {
			first = i + 1
		}
	}
	source := newLineSource(files[first:])
	defer source.close()
	unreadable := 0
	for {
		l, err := source.read()
		if err != nil {
			return err
		}
		if l == nil {
			break
		}
		var record Record
		if l.tooLong || json.Unmarshal(l.data, &record) != nil {
			unreadable++
			continue
		}
		if filter.Match(&record) && !fn(&record) {
			return nil
		}
	}
	if unreadable > 0 {
		return fmt.Errorf("%w: %d lines skipped", ErrUnreadable, unreadable)
	}
	return nil
}
