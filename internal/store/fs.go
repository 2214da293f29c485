package store

import (
	"fmt"
	"path/filepath"
	"syscall"

	"github.com/heraldmq/herald/internal/vfs"
)

// The file system the log writes through (internal/vfs): FS in
// production is OSFS; tests use MemFS and crash it.
type (
	FS    = vfs.FS
	File  = vfs.File
	OSFS  = vfs.OSFS
	MemFS = vfs.MemFS
)

// NewMemFS returns an empty in-memory file system.
func NewMemFS() *MemFS { return vfs.NewMemFS() }

func join(dir, name string) string { return filepath.Join(dir, name) }

// FreeSpace returns the bytes available to an unprivileged user on the file
// system holding dir, for the broker's free-disk alarm.
func FreeSpace(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("store: statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}
