package topic

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// benchTrie builds n bindings of mixed shapes over a 100-word vocabulary:
// one third "wA.*.wC", one third "#.wX", one third exact "wA.wB.wC"; each
// bound to its own value.
func benchTrie(n int) (*Trie[int], []string) {
	rng := rand.New(rand.NewPCG(42, 42))
	word := func() string { return fmt.Sprintf("w%d", rng.IntN(100)) }
	tr := New[int]()
	for i := 0; tr.Len() < n; i++ {
		var p string
		switch i % 3 {
		case 0:
			p = word() + ".*." + word()
		case 1:
			p = "#." + word()
		default:
			p = word() + "." + word() + "." + word()
		}
		tr.Add(p, i)
	}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = word() + "." + word() + "." + word()
	}
	return tr, keys
}

func BenchmarkMatch(b *testing.B) {
	tr, keys := benchTrie(10_000)
	dst := make([]int, 0, 1024)
	b.Run("Match", func(b *testing.B) {
		b.ReportAllocs()
		i, total := 0, 0
		for b.Loop() {
			dst = tr.Match(keys[i&1023], dst[:0])
			total += len(dst)
			i++
		}
		b.ReportMetric(float64(total)/float64(i), "values/op")
	})
	b.Run("MatchWith", func(b *testing.B) {
		b.ReportAllocs()
		var s Scratch
		i, total := 0, 0
		for b.Loop() {
			dst = tr.MatchWith(&s, keys[i&1023], dst[:0])
			total += len(dst)
			i++
		}
		b.ReportMetric(float64(total)/float64(i), "values/op")
	})
	b.Run("Parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			dst := make([]int, 0, 1024)
			i := 0
			for pb.Next() {
				dst = tr.Match(keys[i&1023], dst[:0])
				i++
			}
		})
	})
}

// BenchmarkMatchHashChain is the adversarial case for backtracking matchers:
// alternating "#" and literal words against a long key that almost matches.
func BenchmarkMatchHashChain(b *testing.B) {
	tr := New[int]()
	tr.Add(strings.Repeat("#.a.", 10)+"#.b", 1)
	tr.Add(strings.Repeat("#.", 20)+"c", 2)
	key := strings.Repeat("a.", 63) + "a"
	dst := make([]int, 0, 4)
	var s Scratch
	b.ReportAllocs()
	for b.Loop() {
		dst = tr.MatchWith(&s, key, dst[:0])
	}
}

// BenchmarkChurn adds one binding and removes another per op on a trie kept
// at 10k bindings.
func BenchmarkChurn(b *testing.B) {
	tr, _ := benchTrie(10_000)
	rng := rand.New(rand.NewPCG(7, 7))
	const ring = 1 << 12
	pats := make([]string, ring)
	for i := range pats {
		w := func() string { return fmt.Sprintf("w%d", rng.IntN(100)) }
		switch i % 3 {
		case 0:
			pats[i] = w() + ".*." + w() + ".churn"
		case 1:
			pats[i] = "#.churn." + w()
		default:
			pats[i] = "churn." + w() + "." + w()
		}
	}
	// Keep ring/2 churn bindings live: op i adds binding i and removes
	// binding i-ring/2.
	for i := range ring / 2 {
		tr.Add(pats[i], -1-i)
	}
	b.ReportAllocs()
	i := ring / 2
	for b.Loop() {
		tr.Add(pats[i%ring], -1-i)
		j := i - ring/2
		tr.Remove(pats[j%ring], -1-j)
		i++
	}
}
