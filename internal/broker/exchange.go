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

	mu       sync.RWMutex // guards the routing tables below
	bindings []*Binding
	direct   map[string][]destination
	topic    *topic.Trie[destination]
	fanout   []destination
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
	switch e.routeKind {
	case KindDirect:
		e.direct = make(map[string][]destination)
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

// Bindings returns a copy of the exchange's bindings (as source).
func (e *Exchange) Bindings() []Binding {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]Binding, len(e.bindings))
	for i, b := range e.bindings {
		out[i] = *b
	}
	return out
}

func (e *Exchange) findBinding(d destination, key string, args Table) int {
	for i, b := range e.bindings {
		if b.dest == d && b.RoutingKey == key && tablesEqual(b.Args, args) {
			return i
		}
	}
	return -1
}

// addBinding returns false if an identical binding exists.
func (e *Exchange) addBinding(b *Binding) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.findBinding(b.dest, b.RoutingKey, b.Args) >= 0 {
		return false
	}
	e.bindings = append(e.bindings, b)
	switch e.routeKind {
	case KindDirect:
		e.direct[b.RoutingKey] = append(e.direct[b.RoutingKey], b.dest)
	case KindTopic:
		e.topic.Add(b.RoutingKey, b.dest)
	case KindFanout:
		e.fanout = append(e.fanout, b.dest)
	}
	return true
}

// removeBinding returns false if no such binding exists.
func (e *Exchange) removeBinding(d destination, key string, args Table) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	i := e.findBinding(d, key, args)
	if i < 0 {
		return false
	}
	e.removeAtLocked(i)
	return true
}

func (e *Exchange) removeAtLocked(i int) {
	b := e.bindings[i]
	e.bindings = append(e.bindings[:i], e.bindings[i+1:]...)
	switch e.routeKind {
	case KindDirect:
		e.direct[b.RoutingKey] = removeDest(e.direct[b.RoutingKey], b.dest)
		if len(e.direct[b.RoutingKey]) == 0 {
			delete(e.direct, b.RoutingKey)
		}
	case KindTopic:
		// The same destination may be bound with the same pattern but
		// different arguments; keep it in the trie while one remains.
		still := false
		for _, o := range e.bindings {
			if o.dest == b.dest && o.RoutingKey == b.RoutingKey {
				still = true
				break
			}
		}
		if !still {
			e.topic.Remove(b.RoutingKey, b.dest)
		}
	case KindFanout:
		e.fanout = removeDest(e.fanout, b.dest)
	}
}

// removeDestination drops every binding to d and reports how many bindings remain.
func (e *Exchange) removeDestination(d destination) (removed bool, remaining int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.bindings) - 1; i >= 0; i-- {
		if e.bindings[i].dest == d {
			e.removeAtLocked(i)
			removed = true
		}
	}
	return removed, len(e.bindings)
}

func (e *Exchange) bindingCount() int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return len(e.bindings)
}

func removeDest(ds []destination, d destination) []destination {
	for i, x := range ds {
		if x == d {
			return append(ds[:i], ds[i+1:]...)
		}
	}
	return ds
}

// match appends the destinations m routes to from this exchange.
func (e *Exchange) match(m *Message, dst []destination) []destination {
	e.mu.RLock()
	switch e.routeKind {
	case KindDirect:
		dst = append(dst, e.direct[m.RoutingKey]...)
	case KindFanout:
		dst = append(dst, e.fanout...)
	case KindTopic:
		dst = e.topic.Match(m.RoutingKey, dst)
	case KindHeaders:
		for _, b := range e.bindings {
			if headersMatch(b.Args, m.Properties.Headers) {
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
