package audit

import "errors"

var (
	// ErrClosed is returned by Write once Close has begun.
	ErrClosed = errors.New("audit: trail closed")
	// ErrRecordTooLarge is a record whose line would exceed MaxLineBytes.
	ErrRecordTooLarge = errors.New("audit: record too large")
	// ErrLocked is a trail directory another process is writing.
	ErrLocked = errors.New("audit: trail directory in use by another process")
	// ErrUnreadable is returned by Query after it skipped lines it could
	// not read; Verify says where and why.
	ErrUnreadable = errors.New("audit: unreadable lines")
	// ErrFilter is a Query filter with a value it does not know.
	ErrFilter = errors.New("audit: invalid filter")
)
