package streamlog

import (
	"path/filepath"

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
