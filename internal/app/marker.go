package app

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/heraldmq/herald/internal/vfs"
)

// cleanShutdownMarker exists in the data directory only while Herald is
// stopped after a clean shutdown; its absence at start means the last run
// crashed (or was killed), so recovered messages are flagged redelivered.
const cleanShutdownMarker = "clean-shutdown"

// takeCleanShutdownMarker reports whether the last run ended cleanly and
// removes the marker (durably) so that a crash of this run is noticed.
func (s *App) takeCleanShutdownMarker() (bool, error) {
	path := filepath.Join(s.cfg.DataDir, cleanShutdownMarker)
	err := os.Remove(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// First start, or a crash: it matters (and is worth a warning) only
		// when the log held messages to recover.
		if s.recoveredEntries > 0 {
			s.log.Warn("the previous run did not shut down cleanly; recovered messages will be flagged redelivered")
		}
		return false, nil
	case err != nil:
		return false, fmt.Errorf("cannot remove %s: %w", path, err)
	}
	return true, syncDir(s.cfg.DataDir)
}

// leaveCleanShutdownMarker records a clean shutdown, after the log is closed.
func (s *App) leaveCleanShutdownMarker() {
	if err := vfs.WriteFileAtomic(filepath.Join(s.cfg.DataDir, cleanShutdownMarker), nil); err != nil {
		s.log.Warn("cannot record the clean shutdown", "err", err)
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
