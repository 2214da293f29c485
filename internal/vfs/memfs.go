package vfs

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// MemFS is an in-memory FS for tests. It remembers, per file, what was made
// durable by Sync and, per directory, which names were made durable by
// SyncDir, so that Crash can produce the state a machine would find after a
// power loss. It can also inject write and fsync errors.
type MemFS struct {
	mu struct {
		sync.Mutex
		files     map[string]*memNode // the current namespace
		durable   map[string]*memNode // the namespace as of the last SyncDir
		dirs      map[string]bool
		syncErr   error
		writeErr  error
		syncCount int
		syncHook  func()
		held      chan struct{} // closed by HoldSyncs' release
	}
}

type memNode struct {
	data   []byte
	synced []byte
}

// NewMemFS returns an empty in-memory file system.
func NewMemFS() *MemFS {
	m := &MemFS{}
	m.mu.files = map[string]*memNode{}
	m.mu.durable = map[string]*memNode{}
	m.mu.dirs = map[string]bool{}
	return m
}

// SetSyncError makes every later File.Sync fail with err (nil clears it).
func (m *MemFS) SetSyncError(err error) {
	m.mu.Lock()
	m.mu.syncErr = err
	m.mu.Unlock()
}

// SetWriteError makes every later File.Write fail with err (nil clears it).
func (m *MemFS) SetWriteError(err error) {
	m.mu.Lock()
	m.mu.writeErr = err
	m.mu.Unlock()
}

// SetSyncHook makes every File.Sync and SyncDir call fn first, without
// MemFS's lock held: a test can take a Crash snapshot or block there.
func (m *MemFS) SetSyncHook(fn func()) {
	m.mu.Lock()
	m.mu.syncHook = fn
	m.mu.Unlock()
}

func (m *MemFS) runSyncHook() {
	m.mu.Lock()
	fn, held := m.mu.syncHook, m.mu.held
	m.mu.Unlock()
	if held != nil {
		<-held
	}
	if fn != nil {
		fn()
	}
}

// HoldSyncs makes every File.Sync and SyncDir from now on wait until
// release is called (once; later calls do nothing): a test can keep a
// group commit in flight and watch what waits for it.
func (m *MemFS) HoldSyncs() (release func()) {
	held := make(chan struct{})
	m.mu.Lock()
	m.mu.held = held
	m.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			if m.mu.held == held {
				m.mu.held = nil
			}
			m.mu.Unlock()
			close(held)
		})
	}
}

// SyncCount returns how many successful File.Sync calls were made.
func (m *MemFS) SyncCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.syncCount
}

// Crash returns a new MemFS holding what survives a power loss now: the names
// made durable by SyncDir, each with its fsynced content. If rng is not nil,
// each file also keeps a random-length prefix of the bytes written after its
// last Sync, as a torn write would.
func (m *MemFS) Crash(rng *rand.Rand) *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := NewMemFS()
	for d := range m.mu.dirs {
		c.mu.dirs[d] = true
	}
	for name, n := range m.mu.durable {
		data := bytes.Clone(n.synced)
		if rng != nil && len(n.data) > len(n.synced) && bytes.HasPrefix(n.data, n.synced) {
			extra := rng.IntN(len(n.data) - len(n.synced) + 1)
			data = append(data, n.data[len(n.synced):len(n.synced)+extra]...)
		}
		nn := &memNode{data: data, synced: bytes.Clone(data)}
		c.mu.files[name] = nn
		c.mu.durable[name] = nn
	}
	return c
}

// ReadFile returns a copy of name's current content (for tests).
func (m *MemFS) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.mu.files[name]
	if !ok {
		return nil, os.ErrNotExist
	}
	return bytes.Clone(n.data), nil
}

// WriteFile replaces name's content, durably (for tests that damage files).
func (m *MemFS) WriteFile(name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.mu.files[name]
	if !ok {
		return os.ErrNotExist
	}
	n.data = bytes.Clone(data)
	n.synced = bytes.Clone(data)
	return nil
}

// OpenFile implements FS.
func (m *MemFS) OpenFile(name string, flag int, _ os.FileMode) (File, error) {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.mu.dirs[filepath.Dir(name)] {
		return nil, &os.PathError{Op: "open", Path: name, Err: os.ErrNotExist}
	}
	n, ok := m.mu.files[name]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: os.ErrExist}
	case !ok && flag&os.O_CREATE == 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: os.ErrNotExist}
	case !ok:
		n = &memNode{}
		m.mu.files[name] = n
	}
	if flag&os.O_TRUNC != 0 {
		n.data = nil
	}
	return &memFile{fs: m, node: n, name: name}, nil
}

// Remove implements FS.
func (m *MemFS) Remove(name string) error {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.mu.files[name]; !ok {
		return &os.PathError{Op: "remove", Path: name, Err: os.ErrNotExist}
	}
	delete(m.mu.files, name)
	return nil
}

// Rename implements FS.
func (m *MemFS) Rename(oldname, newname string) error {
	oldname, newname = filepath.Clean(oldname), filepath.Clean(newname)
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.mu.files[oldname]
	if !ok {
		return &os.PathError{Op: "rename", Path: oldname, Err: os.ErrNotExist}
	}
	delete(m.mu.files, oldname)
	m.mu.files[newname] = n
	return nil
}

// ReadDir implements FS.
func (m *MemFS) ReadDir(dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.mu.dirs[dir] {
		return nil, &os.PathError{Op: "readdir", Path: dir, Err: os.ErrNotExist}
	}
	var names []string
	for name := range m.mu.files {
		if filepath.Dir(name) == dir {
			names = append(names, filepath.Base(name))
		}
	}
	sort.Strings(names)
	return names, nil
}

// MkdirAll implements FS. Directories are durable at once.
func (m *MemFS) MkdirAll(dir string, _ os.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		m.mu.dirs[d] = true
		if d == filepath.Dir(d) {
			break
		}
	}
	return nil
}

// SyncDir implements FS.
func (m *MemFS) SyncDir(dir string) error {
	dir = filepath.Clean(dir)
	m.runSyncHook()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.syncErr != nil {
		return m.mu.syncErr
	}
	for name := range m.mu.durable {
		if filepath.Dir(name) == dir {
			delete(m.mu.durable, name)
		}
	}
	for name, n := range m.mu.files {
		if filepath.Dir(name) == dir {
			m.mu.durable[name] = n
		}
	}
	return nil
}

type memFile struct {
	fs     *MemFS
	node   *memNode
	name   string
	closed bool
}

var errClosedFile = errors.New("memfs: file closed")

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return 0, errClosedFile
	}
	if off >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return 0, errClosedFile
	}
	if err := f.fs.mu.writeErr; err != nil {
		return 0, err
	}
	f.node.data = append(f.node.data, p...)
	return len(p), nil
}

func (f *memFile) Sync() error {
	f.fs.runSyncHook()
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return errClosedFile
	}
	if err := f.fs.mu.syncErr; err != nil {
		return err
	}
	f.node.synced = bytes.Clone(f.node.data)
	f.fs.mu.syncCount++
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return errClosedFile
	}
	if size < int64(len(f.node.data)) {
		f.node.data = f.node.data[:size:size]
	}
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return int64(len(f.node.data)), nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	f.closed = true
	return nil
}
