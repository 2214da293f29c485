package broker

import (
	"sync"

	"github.com/heraldmq/herald/internal/topic"
)

// Exchange kinds.
const (
	KindDirect  = "direct"
	KindFanout  = "fanout"
	KindTopic   = "topic"
	KindHeaders = "headers"
)

func validKind(k string) bool {
	switch k {
	case KindDirect, KindFanout, KindTopic, KindHeaders:
		return true
	}
	return false
}

// ExchangeOptions configure an exchange declaration.
type ExchangeOptions struct {
	Kind       string
	Durable    bool
	AutoDelete bool
	Internal   bool
	Args       Table
	Passive    bool
}

// destination is where a binding leads: a *Queue or an *Exchange.
type destination interface{ destName() string }

func (q *Queue) destName() string    { return q.name }
func (e *Exchange) destName() string { return e.name }

// Binding is a route from an exchange to a queue or another exchange.
type Binding struct {
	Source          string
	Destination     string
	DestinationKind string // "queue" or "exchange"
	RoutingKey      string
	Args            Table

	dest destination
	pos  int // index in the source's bindings
	// listPos: index in the source's destList for it (the fanout list or
	// the direct key's)
	listPos int
}

// Exchange routes published messages to queues and exchanges.
type Exchange struct {
	name       string
	kind       string
	durable    bool
	autoDelete bool
	internal   bool
	args       Table
	alternate  string // alternate-exchange argument
	routeKind  string // how bindings match: kind, or x-delayed-type
	vhost      *VHost
	delays     delayQueue // x-delayed-message only

	// mu guards the routing tables below. Binding and unbinding are O(1)
	// in the number of bindings (plus the bindings to the same
	// destination): 15,000 subscribers of a broadcast, each with a queue
	// bound to one exchange, joining and leaving at once cost seconds under
	// the vhost's write lock while they were O(n) each.
	mu       sync.RWMutex
	bindings []*Binding // in binding order, nil where one was removed
	holes    int        // the nils in bindings
	byDest   map[destination][]*Binding
	direct   map[string]*destList
	topic    *topic.Trie[destination]
	fanout   destList
}

// destList is a route table's destinations, one per binding, with O(1)
// removal: a message goes to all of them, so their order does not matter.
type destList struct {
	dests []destination
	of    []*Binding
}

func (l *destList) add(b *Binding) {
	b.listPos = len(l.dests)
	l.dests = append(l.dests, b.dest)
	l.of = append(l.of, b)
}

func (l *destList) remove(b *Binding) {
	i, last := b.listPos, len(l.dests)-1
	l.dests[i], l.of[i] = l.dests[last], l.of[last]
	l.of[i].listPos = i
	l.dests[last], l.of[last] = nil, nil
	l.dests, l.of = l.dests[:last], l.of[:last]
}

func newExchange(v *VHost, name string, o ExchangeOptions) *Exchange {
	e := &Exchange{
		name: name, kind: o.Kind, durable: o.Durable, autoDelete: o.AutoDelete,
		internal: o.Internal, args: o.Args, vhost: v,
	}
	if ae, ok := o.Args["alternate-exchange"].(string); ok {
		e.alternate = ae
	}
	e.routeKind = o.Kind
	if o.Kind == KindDelayed {
		e.routeKind, _ = o.Args["x-delayed-type"].(string)
	}
	e.byDest = make(map[destination][]*Binding)
	switch e.routeKind {
	case KindDirect:
		e.direct = make(map[string]*destList)
	case KindTopic:
		e.topic = topic.New[destination]()
	}
	return e
}

// Name is the exchange's name ("" for the default exchange).
func (e *Exchange) Name() string { return e.name }

// Kind is direct, fanout, topic or headers.
func (e *Exchange) Kind() string { return e.kind }

// Durable reports whether the exchange survives a restart.
func (e *Exchange) Durable() bool { return e.durable }

// AutoDelete reports whether the exchange goes with its last binding.
func (e *Exchange) AutoDelete() bool { return e.autoDelete }

// Internal reports whether clients may not publish to it directly.
func (e *Exchange) Internal() bool { return e.internal }

// Args are the declaration arguments.
func (e *Exchange) Args() Table { return e.args }

// Bindings returns a copy of the exchange's bindings (as source), in the
// order they were made.
func (e *Exchange) Bindings() []Binding {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]Binding, 0, len(e.bindings)-e.holes)
	for _, b := range e.bindings {
		if b != nil {
			out = append(out, *b)
		}
	}
	return out
}

func (e *Exchange) findBinding(d destination, key string, args Table) *Binding {
	for _, b := range e.byDest[d] {
		if b.RoutingKey == key && tablesEqual(b.Args, args) {
			return b
		}
	}
	return nil
}

// addBinding returns false if an identical binding exists.
func (e *Exchange) addBinding(b *Binding) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.findBinding(b.dest, b.RoutingKey, b.Args) != nil {
		return false
	}
	b.pos = len(e.bindings)
	e.bindings = append(e.bindings, b)
	e.byDest[b.dest] = append(e.byDest[b.dest], b)
	switch e.routeKind {
	case KindDirect:
		l := e.direct[b.RoutingKey]
		if l == nil {
			l = &destList{}
			e.direct[b.RoutingKey] = l
		}
		l.add(b)
	case KindTopic:
		e.topic.Add(b.RoutingKey, b.dest)
	case KindFanout:
		e.fanout.add(b)
	}
	return true
}

// removeBinding returns false if no such binding exists.
func (e *Exchange) removeBinding(d destination, key string, args Table) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	b := e.findBinding(d, key, args)
	if b == nil {
		return false
	}
	e.removeLocked(b)
	return true
}

func (e *Exchange) removeLocked(b *Binding) {
	e.bindings[b.pos] = nil
	e.holes++
	if e.holes > 32 && e.holes > len(e.bindings)/2 {
		e.compactLocked()
	}
	rest := e.byDest[b.dest]
	for i, o := range rest {
		if o == b {
			rest = append(rest[:i], rest[i+1:]...)
			break
		}
	}
	if len(rest) == 0 {
		delete(e.byDest, b.dest)
	} else {
		e.byDest[b.dest] = rest
	}
	switch e.routeKind {
	case KindDirect:
		l := e.direct[b.RoutingKey]
		l.remove(b)
		if len(l.dests) == 0 {
			delete(e.direct, b.RoutingKey)
		}
	case KindTopic:
		// The same destination may be bound with the same pattern but
		// different arguments; keep it in the trie while one remains.
		for _, o := range rest {
			if o.RoutingKey == b.RoutingKey {
				return
			}
		}
		e.topic.Remove(b.RoutingKey, b.dest)
	case KindFanout:
		e.fanout.remove(b)
	}
}

// compactLocked drops the holes from bindings.
func (e *Exchange) compactLocked() {
	kept := e.bindings[:0]
	for _, b := range e.bindings {
		if b != nil {
			b.pos = len(kept)
			kept = append(kept, b)
		}
	}
	clear(e.bindings[len(kept):])
	e.bindings, e.holes = kept, 0
}

// removeDestination drops every binding to d and reports how many bindings remain.
func (e *Exchange) removeDestination(d destination) (removed bool, remaining int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	mine := e.byDest[d]
	for len(mine) > 0 {
		e.removeLocked(mine[len(mine)-1])
		mine = e.byDest[d]
		removed = true
	}
	return removed, len(e.bindings) - e.holes
}

func (e *Exchange) bindingCount() int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return len(e.bindings) - e.holes
}

// match appends the destinations m routes to from this exchange.
func (e *Exchange) match(m *Message, dst []destination) []destination {
	e.mu.RLock()
	switch e.routeKind {
	case KindDirect:
		if l := e.direct[m.RoutingKey]; l != nil {
			dst = append(dst, l.dests...)
		}
	case KindFanout:
		dst = append(dst, e.fanout.dests...)
	case KindTopic:
		dst = e.topic.Match(m.RoutingKey, dst)
	case KindHeaders:
		for _, b := range e.bindings {
			if b != nil && headersMatch(b.Args, m.Properties.Headers) {
				dst = append(dst, b.dest)
			}
		}
	}
	e.mu.RUnlock()
	return dst
}

func tablesEqual(a, b Table) bool {
	if len(a) != len(b) {
		return false
	}
	for k, av := range a {
		bv, ok := b[k]
		if !ok || !deepEqual(av, bv) {
			return false
		}
	}
	return true
}

func deepEqual(a, b any) bool {
	switch av := a.(type) {
	case Table:
		bv, ok := b.(Table)
		return ok && tablesEqual(av, bv)
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !deepEqual(av[i], bv[i]) {
				return false
			}
		}
		return true
	}
	return valuesEqual(a, b)
}
