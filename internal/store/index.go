package store

import (
	"iter"
	"math/bits"
	"slices"
)

// idIndex maps uint64 ids to small values, for the live-state index that
// must hold millions of parked messages (see state.go). The broker allocates
// message ids from a counter, so live ids come in dense runs; a Go map would
// spend 25-56 bytes of slots per 16-byte value depending on where its load
// factor stands, while idIndex groups ids by id/64 into chunks that store
// only the present values, packed in id order and found by a popcount over
// the chunk's bitmap: a dense run costs the values plus ~1 byte per id.
// Values must be pointer-free so the GC does not scan them.
type idIndex[V any] struct {
	chunks map[uint64]*idChunk[V] // by id / chunkIDs
	n      int
}

const chunkIDs = 64 // ids per chunk: the bits of idChunk.bits

type idChunk[V any] struct {
	bits uint64 // bit i: id chunk*64+i is present
	vals []V    // one per set bit, in bit order
}

func newIDIndex[V any]() *idIndex[V] {
	return &idIndex[V]{chunks: map[uint64]*idChunk[V]{}}
}

// Len returns the number of ids present.
func (x *idIndex[V]) Len() int { return x.n }

// rank returns the position in c.vals of bit i, and whether it is set.
func (c *idChunk[V]) rank(i uint) (int, bool) {
	return bits.OnesCount64(c.bits & (1<<i - 1)), c.bits&(1<<i) != 0
}

// Get returns the value of id.
func (x *idIndex[V]) Get(id uint64) (V, bool) {
	if c := x.chunks[id/chunkIDs]; c != nil {
		if r, ok := c.rank(uint(id % chunkIDs)); ok {
			return c.vals[r], true
		}
	}
	var zero V
	return zero, false
}

// Set stores v as the value of id.
func (x *idIndex[V]) Set(id uint64, v V) {
	c := x.chunks[id/chunkIDs]
	if c == nil {
		c = &idChunk[V]{}
		x.chunks[id/chunkIDs] = c
	}
	i := uint(id % chunkIDs)
	r, ok := c.rank(i)
	if ok {
		c.vals[r] = v
		return
	}
	c.vals = slices.Insert(c.vals, r, v)
	c.bits |= 1 << i
	x.n++
}

// Delete removes id.
func (x *idIndex[V]) Delete(id uint64) {
	c := x.chunks[id/chunkIDs]
	if c == nil {
		return
	}
	i := uint(id % chunkIDs)
	r, ok := c.rank(i)
	if !ok {
		return
	}
	x.n--
	c.bits &^= 1 << i
	if c.bits == 0 {
		delete(x.chunks, id/chunkIDs)
		return
	}
	c.vals = slices.Delete(c.vals, r, r+1)
	// A chunk thinned out by acks gives its spare capacity back, or one
	// survivor could keep a whole chunk's worth of memory alive.
	if len(c.vals) <= cap(c.vals)/4 {
		c.vals = slices.Clone(c.vals)
	}
}

// All yields every id and its value, in no particular order. The loop body
// may delete any id and set the value of any present id; it must not add ids.
func (x *idIndex[V]) All() iter.Seq2[uint64, V] {
	return func(yield func(uint64, V) bool) {
		for k, c := range x.chunks {
			for b := c.bits; b != 0; b &= b - 1 {
				i := uint(bits.TrailingZeros64(b))
				r, ok := c.rank(i) // c may have changed under the loop body
				if ok && !yield(k*chunkIDs+uint64(i), c.vals[r]) {
					return
				}
			}
		}
	}
}
