package topic

import (
	"slices"
	"strings"
	"testing"
)

// refWords splits like RabbitMQ's split_topic_key: "" is zero words.
func refWords(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ".")
}

// refMatch is the reference matcher: a direct recursive reading of the
// AMQP topic rules over split words ("#" matches zero words, or one word and
// stays). Memoized on (pattern index, key index) only so that fuzzing long
// "#" chains stays fast; it shares no code with the trie.
func refMatch(pattern, key string) bool {
	p, k := refWords(pattern), refWords(key)
	memo := make([]int8, (len(p)+1)*(len(k)+1)) // 0 unknown, 1 false, 2 true
	var m func(i, j int) bool
	m = func(i, j int) bool {
		slot := &memo[i*(len(k)+1)+j]
		if *slot != 0 {
			return *slot == 2
		}
		var r bool
		switch {
		case i == len(p):
			r = j == len(k)
		case p[i] == "#":
			r = m(i+1, j) || (j < len(k) && m(i, j+1))
		case j == len(k):
			r = false
		case p[i] == "*" || p[i] == k[j]:
			r = m(i+1, j+1)
		}
		*slot = 1
		if r {
			*slot = 2
		}
		return r
	}
	return m(0, 0)
}

type binding struct {
	pattern string
	v       int
}

// refModel is the reference for a whole trie: a set of bindings.
type refModel map[binding]struct{}

func (m refModel) match(key string) []int {
	var out []int
	for b := range m {
		if refMatch(b.pattern, key) && !slices.Contains(out, b.v) {
			out = append(out, b.v)
		}
	}
	slices.Sort(out)
	return out
}

// checkMatch compares Match and MatchWith against the model for key.
func checkMatch(t testing.TB, tr *Trie[int], s *Scratch, m refModel, key string) {
	t.Helper()
	want := m.match(key)
	prefix := []int{-7, -8}
	for _, mode := range []string{"Match", "MatchWith"} {
		var got []int
		if mode == "Match" {
			got = tr.Match(key, slices.Clone(prefix))
		} else {
			got = tr.MatchWith(s, key, slices.Clone(prefix))
		}
		if !slices.Equal(got[:2], prefix) {
			t.Fatalf("%s(%q) clobbered dst prefix: %v", mode, key, got)
		}
		got = got[2:]
		sorted := slices.Clone(got)
		slices.Sort(sorted)
		if len(slices.Compact(slices.Clone(sorted))) != len(sorted) {
			t.Fatalf("%s(%q) returned duplicates: %v", mode, key, got)
		}
		if !slices.Equal(sorted, want) {
			t.Fatalf("%s(%q) = %v, want %v\nbindings: %v", mode, key, sorted, want, m)
		}
	}
}

// checkInvariants walks the trie and verifies its internal bookkeeping.
func checkInvariants[V comparable](t testing.TB, tr *Trie[V]) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("invariant: "+format, args...)
	}
	bindings := 0
	refs := map[V]uint32{}
	hids := map[int32]bool{}
	var walk func(n *node[V], depth int)
	walk = func(n *node[V], depth int) {
		if n.kind != kindRoot && n.empty() {
			fail("empty non-root node at depth %d", depth)
		}
		if n.lits != nil && len(n.lits) == 0 {
			fail("empty lits map kept")
		}
		if (n.idx != nil) && len(n.idx) != len(n.vals) {
			fail("idx has %d entries for %d values", len(n.idx), len(n.vals))
		}
		for i, e := range n.vals {
			if n.find(e.v) != i {
				fail("find(%v) != %d", e.v, i)
			}
			r, ok := tr.vals[e.v]
			if !ok || r.id != e.id {
				fail("value %v id %d not registered (%v)", e.v, e.id, r)
			}
			refs[e.v]++
			bindings++
		}
		if n.kind == kindHash {
			if n.hid < 0 || n.hid >= tr.hashHW || hids[n.hid] {
				fail("bad/duplicate hash id %d (hw %d)", n.hid, tr.hashHW)
			}
			hids[n.hid] = true
		}
		check := func(c *node[V], kind uint8) {
			if c == nil {
				return
			}
			if c.parent != n || c.kind != kind {
				fail("bad child link")
			}
			walk(c, depth+1)
		}
		for w, c := range n.lits {
			if c.label != w || w == "*" || w == "#" {
				fail("bad literal label %q/%q", w, c.label)
			}
			check(c, kindLit)
		}
		check(n.star, kindStar)
		check(n.hash, kindHash)
	}
	walk(&tr.root, 0)
	if bindings != tr.Len() {
		fail("Len %d, counted %d", tr.Len(), bindings)
	}
	if len(refs) != len(tr.vals) {
		fail("%d distinct values, map has %d", len(refs), len(tr.vals))
	}
	ids := map[uint32]bool{}
	for v, r := range tr.vals {
		if refs[v] != r.refs {
			fail("value %v refs %d, counted %d", v, r.refs, refs[v])
		}
		if r.id >= tr.valHW || ids[r.id] {
			fail("bad/duplicate value id %d", r.id)
		}
		ids[r.id] = true
	}
	for _, id := range tr.freeVal {
		if ids[id] || id >= tr.valHW {
			fail("free value id %d in use or out of range", id)
		}
	}
	if len(ids)+len(tr.freeVal) != int(tr.valHW) {
		fail("value ids leak: %d live + %d free != hw %d", len(ids), len(tr.freeVal), tr.valHW)
	}
	for _, id := range tr.freeHash {
		if hids[id] {
			fail("free hash id %d in use", id)
		}
	}
	if len(hids)+len(tr.freeHash) != int(tr.hashHW) {
		fail("hash ids leak: %d live + %d free != hw %d", len(hids), len(tr.freeHash), tr.hashHW)
	}
	if tr.Len() == 0 {
		if !tr.root.empty() || tr.hashHW != 0 || tr.valHW != 0 || tr.vals != nil {
			fail("empty trie kept memory: %+v", tr)
		}
	}
}

func TestRefMatchSanity(t *testing.T) {
	// The reference must itself agree with the hand-written table.
	for _, c := range matchCases {
		if got := refMatch(c.pattern, c.key); got != c.want {
			t.Errorf("refMatch(%q, %q) = %v, want %v", c.pattern, c.key, got, c.want)
		}
	}
}
