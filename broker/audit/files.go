package audit

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Trail file names: audit-<first seq, 20 digits>-<UTC creation time>.jsonl.
// The seq comes first, so names sort in chain order even if the clock was
// set back; in the normal case they sort by time as well.
const (
	filePrefix     = "audit-"
	fileSuffix     = ".jsonl"
	fileTimeLayout = "20060102T150405.000Z"
	lockName       = ".lock"
	seqDigits      = 20
)

func fileName(firstSeq uint64, created time.Time) string {
	return fmt.Sprintf("%s%0*d-%s%s", filePrefix, seqDigits, firstSeq, created.UTC().Format(fileTimeLayout), fileSuffix)
}

// parseFileName reads the first seq and creation time from a trail file
// name; ok is false for any other name.
func parseFileName(name string) (firstSeq uint64, created time.Time, ok bool) {
	rest, found := strings.CutPrefix(name, filePrefix)
	if !found {
		return 0, time.Time{}, false
	}
	rest, found = strings.CutSuffix(rest, fileSuffix)
	if !found || len(rest) != seqDigits+1+len(fileTimeLayout) || rest[seqDigits] != '-' {
		return 0, time.Time{}, false
	}
	firstSeq, err := strconv.ParseUint(rest[:seqDigits], 10, 64)
	if err != nil {
		return 0, time.Time{}, false
	}
	created, err = time.Parse(fileTimeLayout, rest[seqDigits+1:])
	if err != nil {
		return 0, time.Time{}, false
	}
	return firstSeq, created, true
}

// trailFile is one file of a trail directory.
type trailFile struct {
	path     string
	firstSeq uint64
	created  time.Time
}

// listTrail returns the trail files in dir in chain order; other names are
// ignored.
func listTrail(readDir func(string) ([]fs.DirEntry, error), dir string) ([]trailFile, error) {
	entries, err := readDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: read trail directory: %w", err)
	}
	var files []trailFile
	for _, entry := range entries {
		if !entry.Type().IsRegular() {
			continue
		}
		firstSeq, created, ok := parseFileName(entry.Name())
		if !ok {
			continue
		}
		files = append(files, trailFile{path: filepath.Join(dir, entry.Name()), firstSeq: firstSeq, created: created})
	}
	slices.SortFunc(files, func(a, b trailFile) int { return strings.Compare(filepath.Base(a.path), filepath.Base(b.path)) })
	return files, nil
}

// trailFiles expands paths (trail directories or files) into files in
// chain order: when every file has a trail file name they are sorted by
// name, otherwise they keep the order given.
func trailFiles(paths []string) ([]trailFile, error) {
	var files []trailFile
	for _, path := range paths {
		info, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		if info.IsDir() {
			inDir, err := listTrail(os.ReadDir, path)
			if err != nil {
				return nil, err
			}
			if len(inDir) == 0 {
				return nil, fmt.Errorf("audit: %s holds no trail files (%s*%s)", path, filePrefix, fileSuffix)
			}
			files = append(files, inDir...)
			continue
		}
		if !info.Mode().IsRegular() {
			return nil, fmt.Errorf("audit: %s is neither a directory nor a regular file", path)
		}
		firstSeq, created, _ := parseFileName(filepath.Base(path))
		files = append(files, trailFile{path: path, firstSeq: firstSeq, created: created})
	}
	named := true
	for _, f := range files {
		named = named && f.firstSeq != 0
	}
	if named {
		slices.SortStableFunc(files, func(a, b trailFile) int {
			return strings.Compare(filepath.Base(a.path), filepath.Base(b.path))
		})
	}
	return files, nil
}
