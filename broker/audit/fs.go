package audit

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// FileSystem is what the trail needs of the operating system. The default
// is the operating system's; a test passes one that fails on purpose
// (ENOSPC, EACCES, a sync that blocks).
type FileSystem interface {
	MkdirAll(path string, perm fs.FileMode) error
	ReadDir(name string) ([]fs.DirEntry, error)
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
}

// File is an open trail file, or the directory when it is synced.
type File interface {
	io.Writer
	io.ReaderAt
	Sync() error
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
	Close() error
}

// locker is implemented by file systems that can keep a second process
// from writing the same trail.
type locker interface {
	Lock(dir string) (io.Closer, error)
}

// OSFileSystem is the operating system's file system.
type OSFileSystem struct{}

var _ FileSystem = OSFileSystem{}

// MkdirAll is os.MkdirAll.
func (OSFileSystem) MkdirAll(path string, perm fs.FileMode) error { return os.MkdirAll(path, perm) }

// ReadDir is os.ReadDir.
func (OSFileSystem) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(name) }

// OpenFile is os.OpenFile.
func (OSFileSystem) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	return os.OpenFile(name, flag, perm)
}

// syncDir makes the creation of a file in dir durable. File systems that
// cannot sync a directory say EINVAL, which is not an error here.
func syncDir(fsys FileSystem, dir string) error {
	d, err := fsys.OpenFile(dir, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) {
		err = nil
	}
	return errors.Join(err, d.Close())
}
