// Package vfs is the small file-system interface internal/store and
// internal/streamlog write through, with the operating system's
// implementation (OSFS) and an in-memory one (MemFS) whose Crash keeps only
// what was synced, so that power loss and disk errors are ordinary unit
// tests. Standard library only.
package vfs

import (
	"io"
	"os"
	"sort"
)

// FS is the part of a file system the message log and the stream logs use. It is small so that tests can
// substitute MemFS, which simulates crashes and I/O errors.
type FS interface {
	// OpenFile opens name with os.OpenFile flags.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Remove deletes name; the removal is durable only after SyncDir.
	Remove(name string) error
	// Rename renames a file; the rename is durable only after SyncDir.
	Rename(oldname, newname string) error
	// ReadDir returns the names (not paths) in dir, sorted.
	ReadDir(dir string) ([]string, error)
	// MkdirAll creates dir and its parents.
	MkdirAll(dir string, perm os.FileMode) error
	// SyncDir makes creations, removals and renames in dir durable.
	SyncDir(dir string) error
}

// File is an open file. Writes append (the log opens segments with
// O_APPEND semantics and only ever appends); reads are positional.
type File interface {
	io.ReaderAt
	io.Writer
	Sync() error
	Truncate(size int64) error
	Size() (int64, error)
	Close() error
}

// OSFS is the operating system's file system.
type OSFS struct{}

type osFile struct{ *os.File }

func (f osFile) Size() (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// OpenFile implements FS.
func (OSFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// Remove implements FS.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// Rename implements FS.
func (OSFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

// MkdirAll implements FS.
func (OSFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }

// ReadDir implements FS.
func (OSFS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// SyncDir implements FS: fsync on the directory makes entry changes durable
// (a file created and fsynced can still vanish after a crash without it).
func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
