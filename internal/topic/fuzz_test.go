package topic

import (
	"strings"
	"testing"
)

// FuzzMatch binds each line of patterns (value = line index mod 5, so values
// share patterns and need deduplication), then checks Match against the
// reference for key and for every pattern used as a key, removes half of the
// bindings and checks again, then removes the rest and checks that the trie
// gave everything back.
func FuzzMatch(f *testing.F) {
	f.Add("a.*.c\n#.c\na.b.c\n#", "a.b.c")
	f.Add("#.#\n#.*\n*.#\n\n.", "")
	f.Add("a.#.#.b\n#.a.#.a.#\na..b\na.*.b", "a..b")
	f.Add("*\n*.*\n#.\n.#", ".")
	f.Add("#.a.#.a.#.a.#.b\n#.#.#.#.#.#.#.#.#.b", "a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.b")
	f.Fuzz(func(t *testing.T, patterns, key string) {
		// Bound the sizes so the reference (polynomial, but allocating)
		// stays fast.
		if len(patterns) > 1024 || len(key) > 256 {
			t.Skip()
		}
		lines := strings.Split(patterns, "\n")
		if len(lines) > 64 {
			lines = lines[:64]
		}
		tr := New[int]()
		m := refModel{}
		var bs []binding
		for i, p := range lines {
			b := binding{p, i % 5}
			_, had := m[b]
			if tr.Add(b.pattern, b.v) == had {
				t.Fatalf("Add(%q, %d): had=%v", b.pattern, b.v, had)
			}
			if !had {
				m[b] = struct{}{}
				bs = append(bs, b)
			}
		}
		var s Scratch
		check := func() {
			checkMatch(t, tr, &s, m, key)
			for _, p := range lines[:min(len(lines), 8)] {
				checkMatch(t, tr, &s, m, p)
			}
		}
		check()
		checkInvariants(t, tr)
		for i := 0; i < len(bs); i += 2 {
			if !tr.Remove(bs[i].pattern, bs[i].v) {
				t.Fatalf("Remove(%q, %d) = false", bs[i].pattern, bs[i].v)
			}
			delete(m, bs[i])
		}
		check()
		checkInvariants(t, tr)
		for i := 1; i < len(bs); i += 2 {
			if !tr.Remove(bs[i].pattern, bs[i].v) {
				t.Fatalf("Remove(%q, %d) = false", bs[i].pattern, bs[i].v)
			}
		}
		checkInvariants(t, tr)
		if tr.Len() != 0 {
			t.Fatalf("Len = %d after removing all", tr.Len())
		}
	})
}
