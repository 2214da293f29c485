package topic

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

type matchCase struct {
	pattern, key string
	want         bool
}

// matchCases follow RabbitMQ's topic exchange (rabbit_db_topic_exchange):
// words split on '.', "" is zero words, "*" is one word, "#" zero or more.
var matchCases = []matchCase{
	// Exact.
	{"a", "a", true},
	{"a", "b", false},
	{"a", "A", false},
	{"a.b.c", "a.b.c", true},
	{"a.b.c", "a.b", false},
	{"a.b", "a.b.c", false},
	{"a.b.c", "a.b.d", false},
	{"ab", "a.b", false},
	{"a.b", "ab", false},
	{"stock.usd.nyse", "stock.usd.nyse", true},

	// "#" alone matches everything, including the empty key.
	{"#", "", true},
	{"#", "a", true},
	{"#", "a.b.c", true},
	{"#", ".", true},
	{"#", "a..b", true},

	// "*" alone matches exactly one word (possibly empty, but "" is zero
	// words).
	{"*", "a", true},
	{"*", "", false},
	{"*", ".", false},
	{"*", "a.b", false},
	{"*.*", ".", true},
	{"*.*", "a.", true},
	{"*.*", "a", false},

	// Empty key and empty pattern.
	{"", "", true},
	{"", "a", false},
	{"", ".", false},
	{".", "", false},
	{"#.#", "", true},
	{"#.*", "", false},
	{"*.#", "", false},
	{"#.", "", false},
	{".#", "", false},

	// Empty words are ordinary words.
	{"a..b", "a..b", true},
	{"a..b", "a.b", false},
	{"a.*.b", "a..b", true},
	{"a.#.b", "a..b", true},
	{".", ".", true},
	{".", "..", false},
	{"a.", "a.", true},
	{"a.", "a", false},
	{".a", ".a", true},
	{".a", "a", false},
	{"a.*", "a.", true},
	{"a.#", "a.", true},
	{"#.", "a.", true},
	{"#.", ".", true},
	{"#.", "a", false},
	{"*.", ".", true},

	// "a.#" matches "a"; "#.b" matches "b".
	{"a.#", "a", true},
	{"a.#", "a.b", true},
	{"a.#", "a.b.c", true},
	{"a.#", "b", false},
	{"a.#", "b.a", false},
	{"a.#", "", false},
	{"#.b", "b", true},
	{"#.b", "a.b", true},
	{"#.b", "a.c.b", true},
	{"#.b", "b.a", false},
	{"#.b", "", false},
	{"#.a.#", "a", true},
	{"#.a.#", "x.a", true},
	{"#.a.#", "a.x", true},
	{"#.a.#", "x.y.a.z.w", true},
	{"#.a.#", "x", false},

	// "a.*.#": at least two words, first "a".
	{"a.*.#", "a", false},
	{"a.*.#", "a.b", true},
	{"a.*.#", "a.b.c", true},
	{"a.*.#", "a.b.c.d", true},
	{"a.*.#", "b.b", false},
	{"a.*", "a", false},
	{"a.*", "a.b", true},
	{"a.*", "a.b.c", false},
	{"*.b.*", "a.b.c", true},
	{"*.b.*", "a.b", false},
	{"*.*.*", "a.b.c", true},
	{"*.*.*", "a.b", false},

	// "#" chains.
	{"#.#", "a", true},
	{"#.#", "a.b.c", true},
	{"#.#.#", "", true},
	{"#.#.#", "a", true},
	{"#.#.#", "a.b.c.d", true},
	{"a.#.#.b", "a.b", true},
	{"a.#.#.b", "a.x.b", true},
	{"a.#.#.b", "a.x.y.z.b", true},
	{"a.#.#.b", "a", false},
	{"a.#.#.b", "b", false},
	{"a.#.#.b", "a.b.c", false},
	{"#.*", "a", true},
	{"#.*", "a.b.c", true},
	{"*.#", "a", true},
	{"*.#", "a.b.c", true},
	{"#.*.#", "a", true},
	{"#.*.*", "a", false},
	{"#.*.*", "a.b", true},
	{"#.*.#.*.#", "a", false},
	{"#.*.#.*.#", "a.b", true},
	{"#.a.#.a.#", "a.a", true},
	{"#.a.#.a.#", "a.b.a", true},
	{"#.a.#.a.#", "b.a.b", false},
	{"*.#.*", "a", false},
	{"*.#.*", "a.b", true},
	{"*.#.*", "a.b.c.d", true},

	// Wildcards only as whole words; other bytes are literal.
	{"a*", "ab", false},
	{"a*", "a*", true},
	{"a#", "a#", true},
	{"a#", "a", false},
	{"*a", "ba", false},
	{"a.*b", "a.xb", false},
	{"a.*", "a.*", true},
	{"a.#", "a.#", true},
	{"a.b", "a.*", false},
	{"x/y", "x/y", true},
	{"ä.ü", "ä.ü", true},
}

func TestMatchTable(t *testing.T) {
	for _, c := range matchCases {
		tr := New[int]()
		if !tr.Add(c.pattern, 1) {
			t.Fatalf("Add(%q) = false on empty trie", c.pattern)
		}
		got := tr.Match(c.key, nil)
		if (len(got) == 1) != c.want || len(got) > 1 {
			t.Errorf("pattern %q key %q: got %v, want match=%v", c.pattern, c.key, got, c.want)
		}
		var s Scratch
		got = tr.MatchWith(&s, c.key, nil)
		if (len(got) == 1) != c.want || len(got) > 1 {
			t.Errorf("MatchWith pattern %q key %q: got %v, want match=%v", c.pattern, c.key, got, c.want)
		}
	}
}

// TestMatchTableShared puts every table pattern into one trie (value =
// case index) and checks each key against all patterns at once.
func TestMatchTableShared(t *testing.T) {
	tr := New[int]()
	m := refModel{}
	for i, c := range matchCases {
		tr.Add(c.pattern, i)
		m[binding{c.pattern, i}] = struct{}{}
	}
	checkInvariants(t, tr)
	var s Scratch
	for _, c := range matchCases {
		checkMatch(t, tr, &s, m, c.key)
	}
}

func sorted(v []int) []int {
	v = slices.Clone(v)
	slices.Sort(v)
	return v
}

func TestDedupAndRemove(t *testing.T) {
	tr := New[int]()
	for _, p := range []string{"a.*", "#.b", "a.b", "#", "a.#", "*.*"} {
		if !tr.Add(p, 1) {
			t.Fatalf("Add(%q, 1) = false", p)
		}
	}
	tr.Add("a.b", 2)
	tr.Add("#.c", 3)
	if got := sorted(tr.Match("a.b", nil)); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("Match(a.b) = %v, want [1 2] (each value once)", got)
	}
	if tr.Len() != 8 {
		t.Fatalf("Len = %d, want 8", tr.Len())
	}

	// Duplicates are rejected; different values on the same pattern are not.
	if tr.Add("a.*", 1) {
		t.Fatal("Add of an existing binding returned true")
	}
	if !tr.Add("a.*", 4) {
		t.Fatal("Add of a new value on an existing pattern returned false")
	}
	// Remove of absent bindings.
	for _, b := range []binding{{"a.*", 5}, {"x.y", 1}, {"a.*.c", 1}, {"", 1}, {"#.#", 1}, {"a", 1}} {
		if tr.Remove(b.pattern, b.v) {
			t.Fatalf("Remove(%q, %d) of absent binding returned true", b.pattern, b.v)
		}
	}
	checkInvariants(t, tr)

	// Removing one of several patterns of a value keeps the others.
	steps := []struct {
		pattern string
		key     string
		want    []int
	}{
		{"a.b", "a.b", []int{1, 2, 4}},
		{"#", "a.b", []int{1, 2, 4}},
		{"a.*", "a.b", []int{1, 2, 4}},
		{"#.b", "a.b", []int{1, 2, 4}},
		{"a.#", "a.b", []int{1, 2, 4}},
		{"*.*", "a.b", []int{2, 4}},
	}
	for _, s := range steps {
		if !tr.Remove(s.pattern, 1) {
			t.Fatalf("Remove(%q, 1) = false", s.pattern)
		}
		if tr.Remove(s.pattern, 1) {
			t.Fatalf("second Remove(%q, 1) = true", s.pattern)
		}
		if got := sorted(tr.Match(s.key, nil)); !slices.Equal(got, s.want) {
			t.Fatalf("after Remove(%q, 1): Match(%q) = %v, want %v", s.pattern, s.key, got, s.want)
		}
		checkInvariants(t, tr)
	}
	for _, b := range []binding{{"a.b", 2}, {"#.c", 3}, {"a.*", 4}} {
		if !tr.Remove(b.pattern, b.v) {
			t.Fatalf("Remove(%q, %d) = false", b.pattern, b.v)
		}
	}
	if tr.Len() != 0 || len(tr.Match("a.b", nil)) != 0 {
		t.Fatal("trie not empty after removing everything")
	}
	checkInvariants(t, tr) // also checks that all nodes and ids were released
}

func TestManyValuesOnOnePattern(t *testing.T) {
	// Crosses the per-node index threshold in both directions.
	tr := New[int]()
	const n = 200
	for i := range n {
		tr.Add("#", i)
		tr.Add("a.*", i%50)
	}
	checkInvariants(t, tr)
	if got := tr.Match("a.b", nil); len(got) != n {
		t.Fatalf("got %d values, want %d", len(got), n)
	}
	for i := 0; i < n; i += 2 {
		if !tr.Remove("#", i) {
			t.Fatalf("Remove(#, %d) = false", i)
		}
	}
	checkInvariants(t, tr)
	got := sorted(tr.Match("a.b", nil))
	if len(got) != n/2+25 {
		t.Fatalf("got %d values, want %d", len(got), n/2+25)
	}
	for i := 1; i < n; i += 2 {
		tr.Remove("#", i)
	}
	checkInvariants(t, tr)
	if got := sorted(tr.Match("x", nil)); len(got) != 0 {
		t.Fatalf("Match(x) = %v", got)
	}
	if got := sorted(tr.Match("a.b", nil)); len(got) != 50 {
		t.Fatalf("got %d, want 50", len(got))
	}
}

func TestStringValues(t *testing.T) {
	tr := New[string]()
	tr.Add("orders.*.created", "q1")
	tr.Add("orders.#", "q2")
	tr.Add("#.created", "q1")
	got := tr.Match("orders.eu.created", make([]string, 0, 4))
	slices.Sort(got)
	if !slices.Equal(got, []string{"q1", "q2"}) {
		t.Fatalf("got %v", got)
	}
	checkInvariants(t, tr)
}

func TestZeroValueTrie(t *testing.T) {
	var tr Trie[int]
	if got := tr.Match("a", nil); got != nil {
		t.Fatalf("got %v", got)
	}
	if tr.Remove("a", 1) {
		t.Fatal("Remove on empty trie")
	}
	tr.Add("a", 1)
	if got := tr.Match("a", nil); !slices.Equal(got, []int{1}) {
		t.Fatalf("got %v", got)
	}
	var s Scratch
	if got := tr.MatchWith(nil, "a", nil); !slices.Equal(got, []int{1}) {
		t.Fatalf("MatchWith(nil) got %v", got)
	}
	if got := tr.MatchWith(&s, "b", nil); len(got) != 0 {
		t.Fatalf("got %v", got)
	}
}

// TestPolynomial would not terminate with naive backtracking.
func TestPolynomial(t *testing.T) {
	tr := New[int]()
	m := refModel{}
	patterns := []string{
		strings.Repeat("#.", 40) + "b",
		strings.Repeat("#.a.", 20) + "#.c",
		strings.Repeat("#.*.", 15) + "#.c",
		strings.Repeat("*.#.", 15) + "x",
		strings.Repeat("#.#.a.", 10) + "#",
	}
	for i, p := range patterns {
		tr.Add(p, i)
		m[binding{p, i}] = struct{}{}
	}
	var s Scratch
	for _, key := range []string{
		strings.Repeat("a.", 300) + "a",
		strings.Repeat("a.", 300) + "b",
		strings.Repeat("a.", 300) + "c",
		strings.Repeat("a.", 300) + "x",
		strings.Repeat("a.", 9) + "a",
	} {
		checkMatch(t, tr, &s, m, key)
	}
}

// TestProperty compares random tries against the reference model over a
// small alphabet, interleaving Add, Remove and Match.
func TestProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	patWords := []string{"a", "b", "c", "", "*", "#", "#", "*"}
	keyWords := []string{"a", "b", "c", "", "*"}
	gen := func(words []string, maxLen int) string {
		n := rng.IntN(maxLen + 1)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = words[rng.IntN(len(words))]
		}
		return strings.Join(parts, ".")
	}
	iters := 1000
	if testing.Short() {
		iters = 50
	}
	var s Scratch
	checks := 0
	for range iters {
		tr := New[int]()
		m := refModel{}
		var live []binding
		for op := range 150 {
			switch r := rng.IntN(10); {
			case r < 5 || len(live) == 0: // add
				b := binding{gen(patWords, 5), rng.IntN(8)}
				_, had := m[b]
				if got := tr.Add(b.pattern, b.v); got == had {
					t.Fatalf("Add(%q, %d) = %v, model had=%v", b.pattern, b.v, got, had)
				}
				if !had {
					m[b] = struct{}{}
					live = append(live, b)
				}
			case r < 8: // remove a live binding
				i := rng.IntN(len(live))
				b := live[i]
				live[i] = live[len(live)-1]
				live = live[:len(live)-1]
				delete(m, b)
				if !tr.Remove(b.pattern, b.v) {
					t.Fatalf("Remove(%q, %d) = false for live binding", b.pattern, b.v)
				}
			default: // remove a probably-absent binding
				b := binding{gen(patWords, 5), rng.IntN(8)}
				_, had := m[b]
				if got := tr.Remove(b.pattern, b.v); got != had {
					t.Fatalf("Remove(%q, %d) = %v, model had=%v", b.pattern, b.v, got, had)
				}
				if had {
					delete(m, b)
					live = slices.DeleteFunc(live, func(x binding) bool { return x == b })
				}
			}
			if tr.Len() != len(m) {
				t.Fatalf("Len = %d, model %d", tr.Len(), len(m))
			}
			if op%5 == 0 {
				for range 4 {
					checkMatch(t, tr, &s, m, gen(keyWords, 6))
					checks++
				}
			}
		}
		checkInvariants(t, tr)
		for _, b := range live {
			if !tr.Remove(b.pattern, b.v) {
				t.Fatalf("final Remove(%q, %d) = false", b.pattern, b.v)
			}
		}
		checkInvariants(t, tr)
	}
	t.Logf("%d key checks", checks)
}

// TestScratchGenerationWrap forces the stamp generations to wrap around.
func TestScratchGenerationWrap(t *testing.T) {
	tr := New[int]()
	m := refModel{}
	for i, p := range []string{"#", "#.a", "a.#", "#.#", "*.#.*", "a"} {
		tr.Add(p, i%3)
		m[binding{p, i % 3}] = struct{}{}
	}
	var s Scratch
	tr.MatchWith(&s, "a", nil)
	st := s.impl.(*state[int])
	st.hgen = math.MaxUint32 - 3
	st.vgen = math.MaxUint32 - 1
	for range 5 {
		for _, k := range []string{"a", "a.a", "b.a.c", "", "x.y"} {
			checkMatch(t, tr, &s, m, k)
		}
	}
}

// TestScratchAcrossTries reuses one Scratch for tries of different sizes and
// value types.
func TestScratchAcrossTries(t *testing.T) {
	var s Scratch
	small, big := New[int](), New[int]()
	small.Add("#", 1)
	for i := range 100 {
		big.Add(strings.Repeat("#.", i%7)+"a", i)
	}
	strs := New[string]()
	strs.Add("a.#", "x")
	for range 3 {
		if got := small.MatchWith(&s, "a", nil); !slices.Equal(got, []int{1}) {
			t.Fatalf("small: %v", got)
		}
		if got := big.MatchWith(&s, "a", nil); len(got) != 100 {
			t.Fatalf("big: %d values", len(got))
		}
		if got := strs.MatchWith(&s, "a", nil); !slices.Equal(got, []string{"x"}) {
			t.Fatalf("strs: %v", got)
		}
	}
}

// TestConcurrentMatch runs Match and MatchWith from many goroutines on a
// shared trie, as the broker does under a read lock; run with -race.
func TestConcurrentMatch(t *testing.T) {
	tr := New[int]()
	m := refModel{}
	rng := rand.New(rand.NewPCG(3, 4))
	words := []string{"a", "b", "c", "*", "#"}
	for i := range 300 {
		n := 1 + rng.IntN(4)
		parts := make([]string, n)
		for j := range parts {
			parts[j] = words[rng.IntN(len(words))]
		}
		b := binding{strings.Join(parts, "."), i % 40}
		tr.Add(b.pattern, b.v)
		m[b] = struct{}{}
	}
	keys := []string{"a", "a.b", "a.b.c", "c.c.c.c", "b.a", ""}
	want := make([][]int, len(keys))
	for i, k := range keys {
		want[i] = m.match(k)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			var s Scratch
			dst := make([]int, 0, 64)
			for i := range 500 {
				k := (i + g) % len(keys)
				if i%2 == 0 {
					dst = tr.Match(keys[k], dst[:0])
				} else {
					dst = tr.MatchWith(&s, keys[k], dst[:0])
				}
				if got := sorted(dst); !slices.Equal(got, want[k]) {
					t.Errorf("Match(%q) = %v, want %v", keys[k], got, want[k])
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestMatchDoesNotAllocate(t *testing.T) {
	tr := New[int]()
	for i := range 1000 {
		tr.Add("a.*.c", i)
		tr.Add(strings.Repeat("x.", 1+i%3)+"a.*.c", i) // never matches
		tr.Add("#.c", i%10)
		tr.Add("a.b.c", i%20)
	}
	dst := make([]int, 0, 2048)
	var s Scratch
	if n := testing.AllocsPerRun(100, func() { dst = tr.MatchWith(&s, "a.b.c", dst[:0]) }); n != 0 {
		t.Errorf("MatchWith allocates %v per run", n)
	}
	if len(dst) != 1000 {
		t.Errorf("matched %d values, want 1000", len(dst))
	}
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	if n := testing.AllocsPerRun(100, func() { dst = tr.Match("a.b.c", dst[:0]) }); n != 0 {
		t.Errorf("Match allocates %v per run", n)
	}
}
