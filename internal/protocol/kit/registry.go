package kit

import "sync"

// Registry is the set of a handler's open connections.
type Registry[C comparable] struct {
	mu    sync.Mutex
	conns map[C]struct{}
}

// Add registers c; the returned func removes it (call it once, when the
// connection ends).
func (r *Registry[C]) Add(c C) (remove func()) {
	r.mu.Lock()
	if r.conns == nil {
		r.conns = make(map[C]struct{})
	}
	r.conns[c] = struct{}{}
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
	}
}

// Len is the number of open connections.
func (r *Registry[C]) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// Snapshot returns the open connections at this moment, in no order; the
// caller may act on them without holding the registry.
func (r *Registry[C]) Snapshot() []C {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]C, 0, len(r.conns))
	for c := range r.conns {
		out = append(out, c)
	}
	return out
}
