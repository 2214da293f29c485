package broker

// ring is a growable FIFO ring buffer. Entries are stored by value so a
// queue of a million messages is one slice, not a million small objects.
type ring[T any] struct {
	buf  []T
	head int
	n    int
}

func (r *ring[T]) Len() int { return r.n }

func (r *ring[T]) PushBack(v T) {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = v
	r.n++
}

// Front returns a pointer to the first element; valid until the next push.
func (r *ring[T]) Front() *T { return &r.buf[r.head] }

func (r *ring[T]) PopFront() T {
	var zero T
	v := r.buf[r.head]
	r.buf[r.head] = zero
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	if r.n == 0 {
		r.head = 0
		if len(r.buf) > 1024 {
			r.buf = nil // give memory back after a burst
		}
	}
	return v
}

func (r *ring[T]) Clear() { *r = ring[T]{} }

// At returns a pointer to the i-th element from the front.
func (r *ring[T]) At(i int) *T { return &r.buf[(r.head+i)&(len(r.buf)-1)] }

// Each calls fn for every element front to back.
func (r *ring[T]) Each(fn func(*T)) {
	for i := 0; i < r.n; i++ {
		fn(&r.buf[(r.head+i)&(len(r.buf)-1)])
	}
}

// ringStart is a ring's first capacity: small, because many queues only
// ever hold a message or two at a time (a WebSocket subscriber's private
// queue, 15,000 of them on one broadcast, keeps whatever it grew to).
const ringStart = 2

func (r *ring[T]) grow() {
	size := len(r.buf) * 2
	if size == 0 {
		size = ringStart
	}
	buf := make([]T, size)
	for i := 0; i < r.n; i++ {
		buf[i] = r.buf[(r.head+i)&(len(r.buf)-1)]
	}
	r.buf, r.head = buf, 0
}

// seqHeap is a heap of requeued entries: higher priority first, then lower
// sequence number, so that they go back out in their original order.
type seqHeap []entry

func before(a, b *entry) bool {
	if a.prio != b.prio {
		return a.prio > b.prio
	}
	return a.seq < b.seq
}

func (h *seqHeap) Len() int { return len(*h) }

func (h *seqHeap) Push(e entry) {
	*h = append(*h, e)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !before(&s[i], &s[p]) {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *seqHeap) Min() *entry { return &(*h)[0] }

func (h *seqHeap) Pop() entry {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s[last] = entry{}
	s = s[:last]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(s) && before(&s[l], &s[m]) {
			m = l
		}
		if r < len(s) && before(&s[r], &s[m]) {
			m = r
		}
		if m == i {
			break
		}
		s[m], s[i] = s[i], s[m]
		i = m
	}
	*h = s
	return top
}
