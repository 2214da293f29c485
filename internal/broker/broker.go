// Package broker is Herald's protocol-neutral core: virtual hosts,
// exchanges, queues, bindings, consumers and acknowledgements. Protocol
// adapters (AMQP, MQTT, STOMP, HTTP) drive it through this small API and
// never see each other.
//
// Delivery needs no goroutine per queue: a publish enqueues and, under the
// queue's lock, hands the message straight to a consumer with credit; an
// ack frees credit and dispatches again. Consumers' sinks never block; a
// full sink refuses and resumes the queue when it drains.
package broker

import (
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/internal/store"
)

// DefaultVHost is the virtual host every broker starts with.
const DefaultVHost = "/"

// Options configure a Broker.
type Options struct {
	Logger *slog.Logger
	// Now is the clock; tests may replace it. Defaults to time.Now.
	Now func() time.Time
	// OnDefinitionsChange is called (without broker locks held) after a
	// change to what survives a restart: durable exchanges, queues and the
	// bindings between them, policies, vhosts. The caller persists
	// ExportDefinitions(true) before it returns, so a declare-ok means the
	// declaration is on disk.
	OnDefinitionsChange func()
	// Store, if set, makes persistent messages in durable queues survive a
	// restart; call RecoverMessages after restoring the definitions. A nil
	// *store.Log counts as unset.
	Store Storage
	// MemoryMessages bounds how many stored messages a durable queue keeps
	// in RAM (0 = DefaultMemoryMessages); the rest are read back from the
	// log as they near the head.
	MemoryMessages int
	// ConsumerTimeout is the default x-consumer-timeout of every queue:
	// an unacknowledged delivery older than this goes back to the queue and
	// its channel is closed. 0 = off (queues may still set their own).
	ConsumerTimeout time.Duration
	// StreamDir is where stream queues (x-queue-type: stream) keep their
	// logs, one directory per stream; "" refuses stream declarations.
	StreamDir string
}

// Broker holds the virtual hosts.
type Broker struct {
	log             *slog.Logger
	now             func() time.Time
	clockBase       time.Time // b.now() at New; see steadyNano
	consumerTimeout time.Duration
	onChange        func()
	store           Storage
	memoryMessages  int
	nextMsgID       atomic.Uint64
	alarms          alarms
	alarmOn         atomic.Bool
	owners          atomic.Uint64
	conns           connRegistry // open client connections (connections.go)
	keyed           keyedStores  // retained messages and session state per vhost (keyed.go)
	parallel        bool         // more than one core: large fanouts may use a helper (fanout.go)
	streamDir       string       // Options.StreamDir
	streams         atomic.Int64 // open stream queues: publishes look for stream targets only when > 0
	services        replyTable   // RPC requests awaiting their reply (services_stats.go)

	replicator atomic.Pointer[replicatorBox] // cluster mode: definitions changes go through it (replicate.go)
	quorum     atomic.Pointer[quorumCluster] // cluster mode: quorum queues are replicated (quorum_log.go)

	mu     sync.RWMutex // guards vhosts
	vhosts map[string]*VHost
}

// New returns a broker with the default virtual host "/".
func New(o Options) *Broker {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if l, ok := o.Store.(*store.Log); ok && l == nil {
		o.Store = nil // a caller's "no log" in its concrete type
	}
	b := &Broker{log: o.Logger, now: o.Now, consumerTimeout: o.ConsumerTimeout, onChange: o.OnDefinitionsChange, store: o.Store, memoryMessages: o.MemoryMessages, vhosts: make(map[string]*VHost), streamDir: o.StreamDir,
		parallel: runtime.GOMAXPROCS(0) > 1}
	b.clockBase = b.now()
	if o.Store != nil {
		b.nextMsgID.Store(o.Store.MaxMessageID())
	}
	b.vhosts[DefaultVHost] = newVHost(b, DefaultVHost)
	return b
}

// steadyNano is the wall clock in Unix nanoseconds as it was at New, moved
// on by the monotonic clock since. Due times of delayed messages are kept in
// it: they are stored as wall time (to outlive a restart), but a wall clock
// that steps or slews while the broker runs must not release a message early.
func (b *Broker) steadyNano() int64 {
	return b.clockBase.UnixNano() + int64(b.now().Sub(b.clockBase))
}

// VHost returns the named virtual host, or nil.
func (b *Broker) VHost(name string) *VHost {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.vhosts[name]
}

// AddVHost creates a virtual host if it does not exist.
func (b *Broker) AddVHost(name string) *VHost {
	r, _ := b.run(CreateVHost{VHost: name})
	return r.VHost
}

func (b *Broker) addVHost(name string) *VHost {
	b.mu.Lock()
	if v, ok := b.vhosts[name]; ok {
		b.mu.Unlock()
		return v
	}
	v := newVHost(b, name)
	b.vhosts[name] = v
	b.mu.Unlock()
	b.changed(true)
	return v
}

// changed reports a definitions change when durable says it matters.
func (b *Broker) changed(durable bool) {
	if durable && b.onChange != nil {
		b.onChange()
	}
}

// VHosts lists the virtual hosts sorted by name.
func (b *Broker) VHosts() []*VHost {
	b.mu.RLock()
	out := make([]*VHost, 0, len(b.vhosts))
	for _, v := range b.vhosts {
		out = append(out, v)
	}
	b.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// NewOwner returns a fresh owner identity for a connection.
func (b *Broker) NewOwner() Owner { return Owner(b.owners.Add(1)) }

// Close stops every timer the broker owns (message expiry, delayed
// messages, x-expires, consumer timeouts). The broker must not be used after.
func (b *Broker) Close() {
	for _, v := range b.VHosts() {
		v.close()
	}
}

// ReleaseOwner deletes everything exclusive to o (its exclusive queues);
// adapters call it when the connection closes.
func (b *Broker) ReleaseOwner(o Owner) {
	for _, v := range b.VHosts() {
		v.releaseOwner(o)
	}
}
