package broker

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/heraldmq/herald/internal/store"
)

// VHost is an isolated namespace of exchanges, queues and bindings.
type VHost struct {
	name   string
	broker *Broker

	mu        sync.RWMutex // guards the maps; lock order: vhost, exchange, queue
	exchanges map[string]*Exchange
	queues    map[string]*Queue
	// owned indexes the exclusive queues by owner, so that a closing
	// connection finds its own without a scan of every queue (15,000
	// subscribers disconnecting would otherwise cost 15,000 scans of
	// 15,000 queues, under the vhost lock).
	owned    map[Owner][]*Queue
	policies map[string]*Policy
	// deleted is set (under mu) when DeleteVHost emptied the vhost:
	// declarations by connections not yet closed are refused.
	deleted bool
	// listeners are the connections waiting for their first per-user
	// message, by user (userqueue.go).
	listeners userListeners
}

// Built-in exchanges present in every virtual host, as in RabbitMQ.
var builtinExchanges = []struct{ name, kind string }{
	{"", KindDirect},
	{"amq.direct", KindDirect},
	{"amq.fanout", KindFanout},
	{"amq.topic", KindTopic},
	{"amq.headers", KindHeaders},
	{"amq.match", KindHeaders},
	{UserExchange, KindDirect}, // Herald's own: per-user messages (userqueue.go)
}

func newVHost(b *Broker, name string) *VHost {
	v := &VHost{name: name, broker: b, exchanges: make(map[string]*Exchange), queues: make(map[string]*Queue), owned: make(map[Owner][]*Queue), policies: make(map[string]*Policy)}
	for _, x := range builtinExchanges {
		v.exchanges[x.name] = newExchange(v, x.name, ExchangeOptions{Kind: x.kind, Durable: true})
	}
	return v
}

// Name is the virtual host's name.
func (v *VHost) Name() string { return v.name }

const reservedPrefix = "amq."

// DeclareExchange creates an exchange or checks an existing one is equivalent.
func (v *VHost) DeclareExchange(name string, o ExchangeOptions) (*Exchange, error) {
	if o.Passive {
		return v.Exchange(name)
	}
	r, err := v.run(DeclareExchange{VHost: v.name, Name: name, Kind: o.Kind, Durable: o.Durable,
		AutoDelete: o.AutoDelete, Internal: o.Internal, Args: o.Args})
	return r.Exchange, err
}

func (v *VHost) applyDeclareExchange(c DeclareExchange) (*Exchange, error) {
	e, created, err := v.declareExchange(c.Name, ExchangeOptions{Kind: c.Kind, Durable: c.Durable,
		AutoDelete: c.AutoDelete, Internal: c.Internal, Args: Table(c.Args)})
	if created {
		v.broker.changed(e.durable)
	}
	return e, err
}

func (v *VHost) declareExchange(name string, o ExchangeOptions) (e *Exchange, created bool, err error) {
	if o.Kind == KindDelayed {
		t, _ := o.Args["x-delayed-type"].(string)
		if !validKind(t) {
			return nil, false, errorf(CodePreconditionFailed, "invalid argument 'x-delayed-type' for exchange '%s': '%v' must be direct, fanout, topic or headers", name, o.Args["x-delayed-type"])
		}
	} else if !validKind(o.Kind) {
		return nil, false, errorf(CodeCommandInvalid, "invalid exchange type '%s' (use direct, fanout, topic, headers or x-delayed-message)", o.Kind)
	}
	if err := checkName("exchange", name); err != nil {
		return nil, false, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.deleted {
		return nil, false, v.deletedError()
	}
	if e, ok := v.exchanges[name]; ok {
		return e, false, e.equivalent(o)
	}
	if name == "" || strings.HasPrefix(name, reservedPrefix) {
		return nil, false, errorf(CodeAccessRefused, "exchange name '%s' contains reserved prefix 'amq.*'", name)
	}
	e = newExchange(v, name, o)
	v.exchanges[name] = e
	return e, true, nil
}

func (e *Exchange) equivalent(o ExchangeOptions) error {
	mismatch := func(arg string, got, cur any) error {
		return errorf(CodePreconditionFailed, "inequivalent arg '%s' for exchange '%s' in vhost '%s': received '%v' but current is '%v'", arg, e.name, e.vhost.name, got, cur)
	}
	switch {
	case o.Kind != e.kind:
		return mismatch("type", o.Kind, e.kind)
	case o.Durable != e.durable:
		return mismatch("durable", o.Durable, e.durable)
	case o.AutoDelete != e.autoDelete:
		return mismatch("auto_delete", o.AutoDelete, e.autoDelete)
	case o.Internal != e.internal:
		return mismatch("internal", o.Internal, e.internal)
	}
	return nil
}

// Exchange finds an exchange by name.
func (v *VHost) Exchange(name string) (*Exchange, error) {
	v.mu.RLock()
	e, ok := v.exchanges[name]
	v.mu.RUnlock()
	if !ok {
		return nil, errorf(CodeNotFound, "no exchange '%s' in vhost '%s'", name, v.name)
	}
	return e, nil
}

// Exchanges lists the exchanges sorted by name.
func (v *VHost) Exchanges() []*Exchange {
	v.mu.RLock()
	out := make([]*Exchange, 0, len(v.exchanges))
	for _, e := range v.exchanges {
		out = append(out, e)
	}
	v.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// DeleteExchange removes an exchange and every binding from or to it.
func (v *VHost) DeleteExchange(name string, ifUnused bool) error {
	_, err := v.run(DeleteExchange{VHost: v.name, Name: name, IfUnused: ifUnused})
	return err
}

func (v *VHost) applyDeleteExchange(c DeleteExchange) error {
	name, ifUnused := c.Name, c.IfUnused
	if name == "" || strings.HasPrefix(name, reservedPrefix) {
		return errorf(CodeAccessRefused, "operation not permitted on exchange '%s' in vhost '%s': the name is reserved", name, v.name)
	}
	notify := false
	defer func() { v.broker.changed(notify) }() // registered first: runs after the unlock
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.exchanges[name]
	if !ok {
		return errorf(CodeNotFound, "no exchange '%s' in vhost '%s'", name, v.name)
	}
	if ifUnused && e.bindingCount() > 0 {
		return errorf(CodePreconditionFailed, "exchange '%s' in vhost '%s' in use", name, v.name)
	}
	v.deleteExchangeLocked(e)
	notify = e.durable
	return nil
}

func (v *VHost) deleteExchangeLocked(e *Exchange) {
	delete(v.exchanges, e.name)
	e.stopDelayed()
	if e.kind == KindDelayed && e.durable && v.broker.store != nil {
		v.broker.store.AppendFunc([]store.Record{{Kind: store.KindQueueDelete, QueueID: e.delayQueueID()}}, noop)
	}
	v.unbindEverywhereLocked(e)
}

// unbindEverywhereLocked removes bindings to d from every exchange and
// deletes auto-delete exchanges left without bindings.
func (v *VHost) unbindEverywhereLocked(d destination) {
	for _, src := range v.exchanges {
		if removed, remaining := src.removeDestination(d); removed && remaining == 0 && src.autoDelete {
			v.deleteExchangeLocked(src)
		}
	}
}

// DeclareQueue creates a queue or checks that an existing one is equivalent.
// An empty name asks the broker to generate one ("amq.gen-...").
func (v *VHost) DeclareQueue(name string, o QueueOptions) (*Queue, error) {
	if o.Passive {
		q, err := v.Queue(name)
		if err != nil {
			return nil, err
		}
		return q, q.usableBy(o.Owner)
	}
	if err := checkName("queue", name); err != nil {
		return nil, err
	}
	if name == "" {
		name = generateName("amq.gen-")
	} else if strings.HasPrefix(name, reservedPrefix) {
		return nil, errorf(CodeAccessRefused, "queue name '%s' contains reserved prefix 'amq.*'", name)
	}
	r, err := v.run(DeclareQueue{VHost: v.name, Name: name, Durable: o.Durable, Exclusive: o.Exclusive,
		AutoDelete: o.AutoDelete, Args: o.Args, Owner: o.Owner})
	return r.Queue, err
}

func (v *VHost) applyDeclareQueue(c DeclareQueue) (*Queue, error) {
	name := c.Name
	o := QueueOptions{Durable: c.Durable, Exclusive: c.Exclusive, AutoDelete: c.AutoDelete, Args: Table(c.Args), Owner: c.Owner}
	if err := checkName("queue", name); err != nil {
		return nil, err
	}
	cfg, err := validateQueueArgs(o.Args)
	if err != nil {
		return nil, err
	}
	if err := checkQueueType(name, v.name, o, cfg); err != nil {
		return nil, err
	}
	if unknown := unknownArgs(o.Args); len(unknown) > 0 {
		v.broker.log.Debug("queue arguments stored but not interpreted", "queue", name, "vhost", v.name, "args", unknown)
	}
	notify := false
	defer func() { v.broker.changed(notify) }() // registered first: runs after the unlock
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.deleted {
		return nil, v.deletedError()
	}
	if q, ok := v.queues[name]; ok {
		if err := q.usableBy(o.Owner); err != nil {
			return nil, err
		}
		if err := q.equivalent(o); err != nil {
			return nil, err
		}
		q.kind.used()
		return q, nil
	}
	if err := v.checkQueueLimitLocked(name); err != nil {
		return nil, err
	}
	p := v.policyForLocked(name, applyToQueues)
	q, err := newQueue(v, name, o, v.queueConfig(o.Args, p), p)
	if err != nil {
		return nil, err
	}
	v.addQueueLocked(q)
	q.kind.used()
	notify = q.durable && !q.exclusive
	return q, nil
}

// declareInternalQueue creates a hidden exclusive queue with a generated
// name under prefix (direct reply-to).
func (v *VHost) declareInternalQueue(prefix string, owner Owner) *Queue {
	name := generateName(prefix)
	cfg, _ := validateQueueArgs(nil)
	q, _ := newQueue(v, name, QueueOptions{Exclusive: true, AutoDelete: true, Owner: owner}, cfg, nil) // classic: cannot fail
	q.internal = true
	v.mu.Lock()
	v.addQueueLocked(q)
	v.mu.Unlock()
	return q
}

func (q *Queue) equivalent(o QueueOptions) error {
	mismatch := func(arg string, got, cur any) error {
		return errorf(CodePreconditionFailed, "inequivalent arg '%s' for queue '%s' in vhost '%s': received '%v' but current is '%v'", arg, q.name, q.vhost.name, got, cur)
	}
	// RabbitMQ checks exclusivity strictly on redeclare, before the other
	// flags: a different exclusive flag is 405 RESOURCE_LOCKED (whose text
	// says so), not a 406 argument mismatch.
	if o.Exclusive != q.exclusive {
		return q.lockedError()
	}
	if t := queueTypeOf(o.Args); t != q.qtype {
		a, aok := o.Args["x-queue-type"]
		return mismatch("x-queue-type", fmtArg(a, aok), q.qtype)
	}
	switch {
	case o.Durable != q.durable:
		return mismatch("durable", o.Durable, q.durable)
	case o.AutoDelete != q.autoDelete:
		return mismatch("auto_delete", o.AutoDelete, q.autoDelete)
	}
	for _, k := range equivalenceArgs {
		a, aok := o.Args[k]
		b, bok := q.args[k]
		if aok != bok || (aok && !valuesEqual(a, b)) {
			return mismatch(k, fmtArg(a, aok), fmtArg(b, bok))
		}
	}
	return nil
}

// equivalenceArgs are the queue arguments RabbitMQ compares on redeclare.
var equivalenceArgs = []string{
	"x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
	"x-max-length", "x-max-length-bytes", "x-max-priority", "x-overflow",
	"x-queue-mode", "x-single-active-consumer", "x-delivery-limit",
}

func fmtArg(v any, ok bool) string {
	if !ok {
		return "none"
	}
	return fmt.Sprint(v)
}

// Queue finds a queue by name.
func (v *VHost) Queue(name string) (*Queue, error) {
	v.mu.RLock()
	q, ok := v.queues[name]
	v.mu.RUnlock()
	if !ok {
		return nil, errorf(CodeNotFound, "no queue '%s' in vhost '%s'", name, v.name)
	}
	return q, nil
}

// UsableQueue finds a queue that owner may use (exclusive queues are locked
// to their connection).
func (v *VHost) UsableQueue(name string, owner Owner) (*Queue, error) {
	q, err := v.Queue(name)
	if err != nil {
		return nil, err
	}
	return q, q.usableBy(owner)
}

// Queues lists the visible queues sorted by name.
func (v *VHost) Queues() []*Queue {
	v.mu.RLock()
	out := make([]*Queue, 0, len(v.queues))
	for _, q := range v.queues {
		if !q.internal {
			out = append(out, q)
		}
	}
	v.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// DeleteQueue deletes a queue and returns the number of messages it held.
func (v *VHost) DeleteQueue(name string, owner Owner, ifUnused, ifEmpty bool) (int, error) {
	r, err := v.run(DeleteQueue{VHost: v.name, Name: name, Owner: owner, IfUnused: ifUnused, IfEmpty: ifEmpty})
	return r.Count, err
}

func (v *VHost) applyDeleteQueue(c DeleteQueue) (int, error) {
	name, owner, ifUnused, ifEmpty := c.Name, c.Owner, c.IfUnused, c.IfEmpty
	q, err := v.UsableQueue(name, owner)
	if err != nil {
		return 0, err
	}
	s := q.Stats()
	if ifUnused && s.Consumers > 0 {
		return 0, errorf(CodePreconditionFailed, "queue '%s' in vhost '%s' in use", name, v.name)
	}
	if ifEmpty && s.Ready > 0 {
		return 0, errorf(CodePreconditionFailed, "queue '%s' in vhost '%s' is not empty", name, v.name)
	}
	return v.deleteQueue(q), nil
}

func (v *VHost) deleteQueue(q *Queue) int {
	v.mu.Lock()
	if v.queues[q.name] != q {
		v.mu.Unlock()
		return 0
	}
	delete(v.queues, q.name)
	if q.exclusive {
		mine := slices.DeleteFunc(v.owned[q.owner], func(x *Queue) bool { return x == q })
		if len(mine) == 0 {
			delete(v.owned, q.owner)
		} else {
			v.owned[q.owner] = mine
		}
	}
	v.unbindEverywhereLocked(q)
	n, _ := q.kind.markDeleted()
	v.mu.Unlock()
	v.broker.changed(q.durable && !q.exclusive)
	return n
}

// PurgeQueue drops a queue's ready messages and returns how many.
func (v *VHost) PurgeQueue(name string, owner Owner) (int, error) {
	r, err := v.run(PurgeQueue{VHost: v.name, Name: name, Owner: owner})
	return r.Count, err
}

// BindQueue binds queue to exchange with key and args.
func (v *VHost) BindQueue(queue, exchange, key string, args Table, owner Owner) error {
	_, err := v.run(Bind{VHost: v.name, Source: exchange, Destination: queue, RoutingKey: key, Args: args, Owner: owner})
	return err
}

// UnbindQueue removes a binding; removing one that does not exist is not an error.
func (v *VHost) UnbindQueue(queue, exchange, key string, args Table, owner Owner) error {
	_, err := v.run(Unbind{VHost: v.name, Source: exchange, Destination: queue, RoutingKey: key, Args: args, Owner: owner})
	return err
}

// BindExchange binds destination exchange to source exchange.
func (v *VHost) BindExchange(dest, source, key string, args Table) error {
	_, err := v.run(Bind{VHost: v.name, Source: source, Destination: dest, ToExchange: true, RoutingKey: key, Args: args})
	return err
}

// UnbindExchange removes an exchange-to-exchange binding.
func (v *VHost) UnbindExchange(dest, source, key string, args Table) error {
	_, err := v.run(Unbind{VHost: v.name, Source: source, Destination: dest, ToExchange: true, RoutingKey: key, Args: args})
	return err
}

func (v *VHost) applyBind(c Bind) error {
	return v.bind(c.Source, c.RoutingKey, Table(c.Args), v.bindingDestination(c))
}

func (v *VHost) applyUnbind(c Unbind) error {
	return v.unbind(c.Source, c.RoutingKey, Table(c.Args), v.bindingDestination(Bind(c)))
}

// bindingDestination finds c's destination under the vhost's lock.
func (v *VHost) bindingDestination(c Bind) func() (destination, error) {
	if c.ToExchange {
		return func() (destination, error) { return v.exchangeLocked(c.Destination) }
	}
	return func() (destination, error) {
		q, ok := v.queues[c.Destination]
		if !ok {
			return nil, errorf(CodeNotFound, "no queue '%s' in vhost '%s'", c.Destination, v.name)
		}
		return q, q.usableBy(c.Owner)
	}
}

func (v *VHost) exchangeLocked(name string) (*Exchange, error) {
	e, ok := v.exchanges[name]
	if !ok {
		return nil, errorf(CodeNotFound, "no exchange '%s' in vhost '%s'", name, v.name)
	}
	if name == "" {
		return nil, errorf(CodeAccessRefused, "operation not permitted on the default exchange")
	}
	return e, nil
}

func (v *VHost) bind(source, key string, args Table, dest func() (destination, error)) error {
	notify := false
	defer func() { v.broker.changed(notify) }() // registered first: runs after the unlock
	v.mu.Lock()
	defer v.mu.Unlock()
	d, err := dest()
	if err != nil {
		return err
	}
	src, err := v.exchangeLocked(source)
	if err != nil {
		return err
	}
	if src.kind == KindHeaders {
		if err := validateXMatch(args); err != nil {
			return err
		}
	}
	b := &Binding{Source: source, Destination: d.destName(), DestinationKind: "queue", RoutingKey: key, Args: args, dest: d}
	if _, ok := d.(*Exchange); ok {
		b.DestinationKind = "exchange"
	}
	if src.addBinding(b) {
		notify = durableBinding(src, d)
	}
	return nil
}

// durableBinding reports whether a binding survives a restart: both ends do.
func durableBinding(src *Exchange, d destination) bool {
	switch d := d.(type) {
	case *Queue:
		return src.durable && d.durable && !d.exclusive
	case *Exchange:
		return src.durable && d.durable
	}
	return false
}

func (v *VHost) unbind(source, key string, args Table, dest func() (destination, error)) error {
	notify := false
	defer func() { v.broker.changed(notify) }() // registered first: runs after the unlock
	v.mu.Lock()
	defer v.mu.Unlock()
	d, err := dest()
	if err != nil {
		return err
	}
	src, err := v.exchangeLocked(source)
	if err != nil {
		return err
	}
	if src.removeBinding(d, key, args) {
		notify = durableBinding(src, d)
		if src.autoDelete && src.bindingCount() == 0 {
			v.deleteExchangeLocked(src)
		}
	}
	return nil
}

func validateXMatch(args Table) error {
	m, ok := args["x-match"]
	if !ok {
		return nil
	}
	s, _ := m.(string)
	switch s {
	case "all", "any", "all-with-x", "any-with-x":
		return nil
	}
	return errorf(CodePreconditionFailed, "invalid x-match field value %v; expected one of [all, any, all-with-x, any-with-x]", m)
}

// releaseOwner deletes the exclusive queues owned by o.
func (v *VHost) releaseOwner(o Owner) {
	v.mu.RLock()
	mine := slices.Clone(v.owned[o])
	v.mu.RUnlock()
	for _, q := range mine {
		v.deleteQueue(q)
	}
}

// addQueueLocked adds q to the vhost's maps; v.mu must be held.
func (v *VHost) addQueueLocked(q *Queue) {
	v.queues[q.name] = q
	if q.exclusive {
		v.owned[q.owner] = append(v.owned[q.owner], q)
	}
}

func checkName(what, name string) error {
	if len(name) > 255 {
		return errorf(CodePreconditionFailed, "%s name is %d bytes long; the limit is 255", what, len(name))
	}
	return nil
}

func generateName(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}
