package broker

import (
	"strings"
)

// Replicator carries commands to every node of a cluster. When one is set
// (cluster mode), the exported methods that change definitions hand their
// command to it instead of applying it: it appends the command to the
// replicated log, every node's log applies it with Broker.Apply, and
// Replicate returns what that produced on this node. Single-node mode has
// none and applies directly. The broker declares the seam; the cluster
// package implements it, so the core never imports the consensus library.
type Replicator interface {
	Replicate(c Command) (Result, error)
}

// replicatorBox lets an interface value live in an atomic.Pointer.
type replicatorBox struct{ r Replicator }

// SetReplicator makes every later definitions change go through r; nil
// returns to applying directly. Call it once the durable state is
// restored: what was restored from this node's disk is not replayed.
func (b *Broker) SetReplicator(r Replicator) {
	if r == nil {
		b.replicator.Store(nil)
		return
	}
	b.replicator.Store(&replicatorBox{r: r})
}

// run applies c through the replicator when there is one and c concerns
// every node, else directly on v.
func (v *VHost) run(c Command) (Result, error) {
	if box := v.broker.replicator.Load(); box != nil {
		if rc, ok := v.replicable(c); ok {
			return box.r.Replicate(rc)
		}
	}
	return v.apply(c)
}

// run is VHost.run for the broker-wide commands (vhosts).
func (b *Broker) run(c Command) (Result, error) {
	if box := b.replicator.Load(); box != nil {
		return box.r.Replicate(c)
	}
	return b.Apply(c)
}

// replicable says whether c goes to every node and returns it in the form
// it is replicated in. Queues whose life is tied to this node's clients
// stay local, with every command about them: an exclusive queue belongs to
// one connection, and an auto-delete queue goes when its last consumer
// here leaves, a deletion the other nodes would never see. Owners are
// node-local numbers, so a replicated command carries none (they only
// matter to exclusive queues). Broker-generated names (amq.gen-...) are in
// the command already.
func (v *VHost) replicable(c Command) (Command, bool) {
	switch c := c.(type) {
	case DeclareQueue:
		if c.Exclusive || c.AutoDelete {
			return c, false
		}
		c.Owner = 0
		return c, !v.localQueue(c.Name)
	case DeleteQueue:
		c.Owner = 0
		return c, !v.localQueue(c.Name)
	case PurgeQueue:
		c.Owner = 0
		return c, !v.localQueue(c.Name)
	case Bind:
		c.Owner = 0
		return c, c.ToExchange || !v.localQueue(c.Destination)
	case Unbind:
		c.Owner = 0
		return c, c.ToExchange || !v.localQueue(c.Destination)
	}
	return c, true
}

// localQueue reports whether the named queue exists here and is one that
// stays on this node (exclusive or auto-delete).
func (v *VHost) localQueue(name string) bool {
	v.mu.RLock()
	q := v.queues[name]
	v.mu.RUnlock()
	return q != nil && (q.exclusive || q.autoDelete)
}

// Commands returns the commands that create what d describes, in an order
// that applies: vhosts, exchanges, queues, bindings, policies. A cluster
// node restoring a snapshot applies them with Apply (not through the
// replicator). Reserved exchanges (amq.*, the default) are left out: every
// vhost has them.
func (d Definitions) Commands() []Command {
	vh := func(name string) string {
		if name == "" {
			return DefaultVHost
		}
		return name
	}
	var out []Command
	for _, v := range d.VHosts {
		if v.Name != "" {
			out = append(out, CreateVHost{VHost: v.Name})
		}
	}
	for _, e := range d.Exchanges {
		if e.Name == "" || strings.HasPrefix(e.Name, reservedPrefix) {
			continue
		}
		out = append(out, DeclareExchange{VHost: vh(e.VHost), Name: e.Name, Kind: e.Type, Durable: e.Durable,
			AutoDelete: e.AutoDelete, Internal: e.Internal, Args: tableValue(emptyToNil(e.Arguments))})
	}
	for _, q := range d.Queues {
		out = append(out, DeclareQueue{VHost: vh(q.VHost), Name: q.Name, Durable: q.Durable, AutoDelete: q.AutoDelete,
			Args: tableValue(emptyToNil(q.Arguments))})
	}
	for _, bd := range d.Bindings {
		out = append(out, Bind{VHost: vh(bd.VHost), Source: bd.Source, Destination: bd.Destination,
			ToExchange: bd.DestinationType == "exchange", RoutingKey: bd.RoutingKey, Args: tableValue(emptyToNil(bd.Arguments))})
	}
	for _, p := range d.Policies {
		out = append(out, PutPolicy{VHost: vh(p.VHost), Name: p.Name, Pattern: p.Pattern, ApplyTo: p.ApplyTo,
			Priority: p.Priority, Definition: tableValue(normalizeJSONNumbers(p.Definition))})
	}
	return out
}
