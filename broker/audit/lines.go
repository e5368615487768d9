package audit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
)

// line is one line of a trail file as read back.
type line struct {
	file     string
	number   int    // from 1 within its file
	data     []byte // without the newline; empty when tooLong
	complete bool   // ended by a newline
	tooLong  bool   // longer than MaxLineBytes; its bytes are not kept
}

// lineSource reads the lines of trail files one after the other, holding
// at most two lines (the current one and one looked ahead) in memory.
type lineSource struct {
	files  []trailFile
	next   int // index of the next file to open
	file   *os.File
	reader *bufio.Reader
	path   string
	number int
	peeked *line
}

func newLineSource(files []trailFile) *lineSource {
	return &lineSource{files: files}
}

// read returns the next line, or nil at the end of the last file.
func (s *lineSource) read() (*line, error) {
	if s.peeked != nil {
		l := s.peeked
		s.peeked = nil
		return l, nil
	}
	for {
		if s.reader == nil {
			if s.next == len(s.files) {
				return nil, nil
			}
			path := s.files[s.next].path
			s.next++
			file, err := os.Open(path)
			if err != nil {
				return nil, fmt.Errorf("audit: %w", err)
			}
			s.file, s.reader, s.path, s.number = file, bufio.NewReaderSize(file, 64<<10), path, 0
		}
		l, err := s.readLine()
		if err != nil {
			return nil, fmt.Errorf("audit: read %s: %w", s.path, err)
		}
		if l != nil {
			return l, nil
		}
		s.file.Close()
		s.file, s.reader = nil, nil
	}
}

// peek returns the line read will return next, without taking it.
func (s *lineSource) peek() (*line, error) {
	if s.peeked == nil {
		l, err := s.read()
		if err != nil {
			return nil, err
		}
		s.peeked = l
	}
	return s.peeked, nil
}

// close closes the open file, if any.
func (s *lineSource) close() {
	if s.file != nil {
		s.file.Close()
		s.file, s.reader = nil, nil
	}
}

// readLine reads one line of the current file, keeping at most
// MaxLineBytes of it; nil at the end of the file.
func (s *lineSource) readLine() (*line, error) {
	var data []byte
	tooLong, read := false, false
	for {
		chunk, err := s.reader.ReadSlice('\n')
		read = read || len(chunk) > 0
		if !tooLong {
			if len(data)+len(chunk) > MaxLineBytes+1 {
				tooLong, data = true, nil
			} else {
				data = append(data, chunk...)
			}
		}
		switch {
		case err == nil:
			s.number++
			if !tooLong {
				data = data[:len(data)-1]
			}
			return &line{file: s.path, number: s.number, data: data, complete: true, tooLong: tooLong}, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if !read {
				return nil, nil
			}
			s.number++
			return &line{file: s.path, number: s.number, data: data, tooLong: tooLong}, nil
		default:
			return nil, err
		}
	}
}
