package topic

import (
	"math"
	"strings"
	"sync"
)

// Node kinds: how a node hangs off its parent.
const (
	kindRoot uint8 = iota
	kindLit
	kindStar
	kindHash
)

// indexAt is the number of values bound at one node above which the node
// keeps a map from value to position, so Add/Remove of many values bound to
// the same pattern (e.g. thousands of queues on "#") stay O(1). The map is
// dropped again when the node falls to indexAt/2 values.
const indexAt = 16

// entry is one value bound at a node, with its dense per-trie value id.
type entry[V comparable] struct {
	v  V
	id uint32
}

type node[V comparable] struct {
	parent *node[V]
	label  string              // literal word; only for kindLit
	lits   map[string]*node[V] // literal children; nil when none
	star   *node[V]            // "*" child
	hash   *node[V]            // "#" child
	vals   []entry[V]          // values bound to the pattern ending here
	idx    map[V]int32         // v -> position in vals; only when len(vals) > indexAt
	hid    int32               // dense id of a "#" node (stamp index); only for kindHash
	kind   uint8
}

func (n *node[V]) empty() bool {
	return len(n.vals) == 0 && n.star == nil && n.hash == nil && len(n.lits) == 0
}

func (n *node[V]) find(v V) int {
	if n.idx != nil {
		if i, ok := n.idx[v]; ok {
			return int(i)
		}
		return -1
	}
	for i := range n.vals {
		if n.vals[i].v == v {
			return i
		}
	}
	return -1
}

func (n *node[V]) add(e entry[V]) {
	n.vals = append(n.vals, e)
	switch {
	case n.idx != nil:
		n.idx[e.v] = int32(len(n.vals) - 1)
	case len(n.vals) > indexAt:
		n.idx = make(map[V]int32, len(n.vals))
		for i := range n.vals {
			n.idx[n.vals[i].v] = int32(i)
		}
	}
}

func (n *node[V]) removeAt(i int) {
	last := len(n.vals) - 1
	v := n.vals[i].v
	if i != last {
		n.vals[i] = n.vals[last]
		if n.idx != nil {
			n.idx[n.vals[i].v] = int32(i)
		}
	}
	n.vals[last] = entry[V]{} // drop the reference for the GC
	n.vals = n.vals[:last]
	if n.idx != nil {
		delete(n.idx, v)
		if len(n.vals) <= indexAt/2 {
			n.idx = nil
		}
	}
	switch {
	case len(n.vals) == 0:
		n.vals = nil
	case cap(n.vals) > 32 && len(n.vals) < cap(n.vals)/4:
		n.vals = append(make([]entry[V], 0, 2*len(n.vals)), n.vals...)
	}
}

// valRef tracks a distinct bound value: its dense id and how many bindings
// use it.
type valRef struct {
	id   uint32
	refs uint32
}

// Trie maps binding patterns to values. Not safe for concurrent use; the
// caller locks. Match and MatchWith only read the trie, so they may run
// concurrently with each other (e.g. under a read lock), but not with Add or
// Remove. The zero value is an empty trie ready to use; a Trie must not be
// copied after first use.
//
// Values are compared with ==; a value that is not equal to itself (a NaN
// float) cannot be found again and must not be used.
type Trie[V comparable] struct {
	root node[V]
	n    int // number of (pattern, value) bindings

	// Dense ids of "#" nodes, indexing Scratch stamps.
	hashHW   int32 // high-water mark: every live id is < hashHW
	freeHash []int32

	// Dense ids of distinct bound values, indexing Scratch stamps.
	vals    map[V]valRef
	valHW   uint32
	freeVal []uint32

	pool sync.Pool // of *state[V], used by Match
}

// New returns an empty trie.
func New[V comparable]() *Trie[V] {
	return new(Trie[V])
}

// Len returns the number of (pattern, value) bindings.
func (t *Trie[V]) Len() int { return t.n }

// nextWord splits s at its first '.': it returns the first word, the rest
// after the dot, and whether there was a dot (i.e. more words follow).
func nextWord(s string) (word, rest string, more bool) {
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// Add binds v under pattern; returns false if (pattern, v) was already
// present.
func (t *Trie[V]) Add(pattern string, v V) bool {
	n := &t.root
	for rest, more := pattern, pattern != ""; more; {
		var w string
		w, rest, more = nextWord(rest)
		n = t.child(n, w)
	}
	if n.find(v) >= 0 {
		return false
	}
	n.add(entry[V]{v: v, id: t.acquireVal(v)})
	t.n++
	return true
}

// child returns n's child for pattern word w, creating it if needed.
func (t *Trie[V]) child(n *node[V], w string) *node[V] {
	switch w {
	case "*":
		if n.star == nil {
			n.star = &node[V]{parent: n, kind: kindStar}
		}
		return n.star
	case "#":
		if n.hash == nil {
			n.hash = &node[V]{parent: n, kind: kindHash, hid: t.acquireHash()}
		}
		return n.hash
	}
	if c := n.lits[w]; c != nil {
		return c
	}
	w = strings.Clone(w) // do not pin the caller's whole pattern string
	c := &node[V]{parent: n, kind: kindLit, label: w}
	if n.lits == nil {
		n.lits = make(map[string]*node[V])
	}
	n.lits[w] = c
	return c
}

// Remove unbinds v from pattern; returns false if absent. Nodes left without
// values or children are pruned.
func (t *Trie[V]) Remove(pattern string, v V) bool {
	n := &t.root
	for rest, more := pattern, pattern != ""; more; {
		var w string
		w, rest, more = nextWord(rest)
		switch w {
		case "*":
			n = n.star
		case "#":
			n = n.hash
		default:
			n = n.lits[w]
		}
		if n == nil {
			return false
		}
	}
	i := n.find(v)
	if i < 0 {
		return false
	}
	n.removeAt(i)
	t.releaseVal(v)
	t.n--
	for n.kind != kindRoot && n.empty() {
		p := n.parent
		switch n.kind {
		case kindStar:
			p.star = nil
		case kindHash:
			p.hash = nil
			t.freeHash = append(t.freeHash, n.hid)
		default:
			delete(p.lits, n.label)
			if len(p.lits) == 0 {
				p.lits = nil // Go maps never shrink; drop it
			}
		}
		n.parent = nil
		n = p
	}
	if t.n == 0 {
		// Everything is pruned: give back the id bookkeeping too.
		t.hashHW, t.freeHash = 0, nil
		t.vals, t.valHW, t.freeVal = nil, 0, nil
	}
	return true
}

func (t *Trie[V]) acquireHash() int32 {
	if k := len(t.freeHash); k > 0 {
		id := t.freeHash[k-1]
		t.freeHash = t.freeHash[:k-1]
		return id
	}
	t.hashHW++
	return t.hashHW - 1
}

func (t *Trie[V]) acquireVal(v V) uint32 {
	if r, ok := t.vals[v]; ok {
		r.refs++
		t.vals[v] = r
		return r.id
	}
	var id uint32
	if k := len(t.freeVal); k > 0 {
		id = t.freeVal[k-1]
		t.freeVal = t.freeVal[:k-1]
	} else {
		id = t.valHW
		t.valHW++
	}
	if t.vals == nil {
		t.vals = make(map[V]valRef)
	}
	t.vals[v] = valRef{id: id, refs: 1}
	return id
}

func (t *Trie[V]) releaseVal(v V) {
	r := t.vals[v]
	if r.refs--; r.refs > 0 {
		t.vals[v] = r
		return
	}
	delete(t.vals, v)
	t.freeVal = append(t.freeVal, r.id)
}

// Scratch is reusable matching state for MatchWith. The zero value is ready
// to use. A Scratch may be used by one goroutine at a time; it can be reused
// across tries, and stays allocation-free as long as those tries have the
// same value type V (switching V reallocates it).
type Scratch struct {
	impl any // *state[V]
}

// state is the typed matching state behind a Scratch.
type state[V comparable] struct {
	cur, next []*node[V]
	hstamp    []uint32 // by "#" node id: step generation that entered it
	vseen     []uint32 // by value id: match generation that emitted it
	hgen      uint32
	vgen      uint32
}

// hstep starts a new step generation for "#" node stamps.
func (st *state[V]) hstep() uint32 {
	if st.hgen == math.MaxUint32 {
		clear(st.hstamp)
		st.hgen = 0
	}
	st.hgen++
	return st.hgen
}

// vstep starts a new generation for value stamps.
func (st *state[V]) vstep() uint32 {
	if st.vgen == math.MaxUint32 {
		clear(st.vseen)
		st.vgen = 0
	}
	st.vgen++
	return st.vgen
}

// enter adds c to the set being built in generation g, followed by its chain
// of "#" children (which match zero words). "#" nodes already entered in g
// are skipped, and so is the rest of their chain, which was entered with
// them. Non-"#" nodes need no check: see the package documentation.
func (st *state[V]) enter(set []*node[V], c *node[V], g uint32) []*node[V] {
	for {
		if c.kind == kindHash {
			if st.hstamp[c.hid] == g {
				return set
			}
			st.hstamp[c.hid] = g
		}
		set = append(set, c)
		if c = c.hash; c == nil {
			return set
		}
	}
}

// Match appends to dst every value whose pattern matches key, each value at
// most once even if several of its patterns match, and returns dst. Values
// already in dst are not considered for deduplication. The order of the
// appended values is unspecified.
//
// Match borrows its scratch state from a pool inside the trie, so it does not
// allocate in steady state when dst has enough capacity. It only reads the
// trie and may run concurrently with other Match/MatchWith calls.
func (t *Trie[V]) Match(key string, dst []V) []V {
	if t.n == 0 {
		return dst
	}
	st, _ := t.pool.Get().(*state[V])
	if st == nil {
		st = new(state[V])
	}
	dst = t.match(st, key, dst)
	t.pool.Put(st)
	return dst
}

// MatchWith is Match using the caller-owned scratch s instead of the trie's
// pool. It does not allocate once s has grown to the trie's size and dst has
// enough capacity. A nil s behaves like Match.
func (t *Trie[V]) MatchWith(s *Scratch, key string, dst []V) []V {
	if t.n == 0 {
		return dst
	}
	if s == nil {
		return t.Match(key, dst)
	}
	st, _ := s.impl.(*state[V])
	if st == nil {
		st = new(state[V])
		s.impl = st
	}
	return t.match(st, key, dst)
}

func (t *Trie[V]) match(st *state[V], key string, dst []V) []V {
	if len(st.hstamp) < int(t.hashHW) {
		st.hstamp = make([]uint32, int(t.hashHW)+int(t.hashHW)/4)
	}
	if len(st.vseen) < int(t.valHW) {
		st.vseen = make([]uint32, int(t.valHW)+int(t.valHW)/4)
	}
	cur := st.enter(st.cur[:0], &t.root, st.hstep())
	next := st.next[:0]
	hi := len(cur) // largest set built, to clear what was written
	// The empty key is zero words (as in RabbitMQ); otherwise walk the
	// words by index without splitting.
	for rest, more := key, key != ""; more && len(cur) > 0; {
		var w string
		w, rest, more = nextWord(rest)
		g := st.hstep()
		next = next[:0]
		for _, n := range cur {
			if c := n.lits[w]; c != nil {
				next = st.enter(next, c, g)
			}
			if n.star != nil {
				next = st.enter(next, n.star, g)
			}
			if n.kind == kindHash {
				next = st.enter(next, n, g) // "#" swallows w
			}
		}
		cur, next = next, cur
		hi = max(hi, len(cur))
	}

	// Emit. If a single node holds values there can be no duplicates.
	var first *node[V]
	multi := false
	for _, n := range cur {
		if len(n.vals) > 0 {
			if first != nil {
				multi = true
				break
			}
			first = n
		}
	}
	switch {
	case multi:
		g := st.vstep()
		for _, n := range cur {
			for i := range n.vals {
				e := &n.vals[i]
				if st.vseen[e.id] != g {
					st.vseen[e.id] = g
					dst = append(dst, e.v)
				}
			}
		}
	case first != nil:
		for i := range first.vals {
			dst = append(dst, first.vals[i].v)
		}
	}

	// Keep the grown buffers, but not pointers into the trie.
	clear(cur[:min(hi, cap(cur))])
	clear(next[:min(hi, cap(next))])
	st.cur, st.next = cur[:0], next[:0]
	return dst
}
