package broker

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// The connection registry: every protocol adapter registers its client
// connections so that operators can list and close them (the management
// API's /api/connections). The core never uses it for routing.

// ConnectionInfo describes a client connection.
type ConnectionInfo struct {
	// ID is assigned by RegisterConnection.
	ID uint64
	// Name is unique among open connections; RegisterConnection derives
	// it as RabbitMQ does ("127.0.0.1:5555 -> 127.0.0.1:5672") when empty.
	Name        string
	Protocol    string // "AMQP 0-9-1", "MQTT 3.1.1", "STOMP 1.2", "Web"
	User        string
	VHost       string
	Peer        string // the client's address
	Local       string // the server's address
	ConnectedAt time.Time
	// Owner is the connection's broker owner, which links its consumers
	// and exclusive queues to it.
	Owner Owner
	// Channels is the number of open channels (AMQP; sessions elsewhere),
	// as the adapter last reported it.
	Channels int
	// ChannelList, when set, snapshots the connection's channels (AMQP)
	// for the management API. It is called from any goroutine, must not
	// block on the connection's I/O, and may return nil once the
	// connection has ended. (Named so because Channels is the count.)
	ChannelList func() []ChannelInfo `json:"-"`
	// ClientProperties are the properties the client sent about itself
	// (AMQP connection.start-ok: product, version, connection_name, ...);
	// nil for protocols that have none. Read only.
	ClientProperties Table `json:"-"`
	// Close asks the connection to close with the protocol's proper
	// signal (AMQP: connection.close 320 CONNECTION_FORCED with reason);
	// it must not block.
	Close func(reason string) `json:"-"`
}

// ChannelInfo describes one channel of a connection, for operators.
type ChannelInfo struct {
	Number              int
	ConsumerCount       int
	PrefetchCount       int // per consumer (basic.qos global=false)
	GlobalPrefetchCount int // shared by the channel (basic.qos global=true)
	UnackedCount        int
	Confirm             bool
	Transactional       bool
}

// Connection is a registered connection; the adapter updates its counters.
type Connection struct {
	info     ConnectionInfo
	channels atomic.Int64
	gone     atomic.Bool // unregistered
	// Message counters, bumped by the adapter (one atomic add each) and
	// summed per protocol at scrape time by ProtocolCounters.
	published, delivered, acked atomic.Uint64
}

// MessageCounts are the messages a protocol's clients published, were
// delivered and acknowledged.
type MessageCounts struct {
	Published, Delivered, Acked uint64
}

func (m *MessageCounts) add(o MessageCounts) {
	m.Published += o.Published
	m.Delivered += o.Delivered
	m.Acked += o.Acked
}

func (c *Connection) counts() MessageCounts {
	return MessageCounts{Published: c.published.Load(), Delivered: c.delivered.Load(), Acked: c.acked.Load()}
}

// CountPublish counts one message the client published. Like the other
// counters it is safe on a nil Connection and from any goroutine.
func (c *Connection) CountPublish() {
	if c != nil {
		c.published.Add(1)
	}
}

// CountDeliver counts n messages delivered to the client.
func (c *Connection) CountDeliver(n int) {
	if c != nil {
		c.delivered.Add(uint64(n))
	}
}

// CountAck counts n deliveries the client acknowledged.
func (c *Connection) CountAck(n int) {
	if c != nil {
		c.acked.Add(uint64(n))
	}
}

// ID is the connection's registry id.
func (c *Connection) ID() uint64 { return c.info.ID }

// AddChannels adjusts the open channel count by delta.
func (c *Connection) AddChannels(delta int) { c.channels.Add(int64(delta)) }

// SetChannels sets the open channel count; a nil Connection ignores it,
// so adapters need not check whether they registered.
func (c *Connection) SetChannels(n int) {
	if c != nil {
		c.channels.Store(int64(n))
	}
}

// connRegistry holds the open connections; the zero value is ready.
type connRegistry struct {
	next  atomic.Uint64
	mu    sync.Mutex // guards conns
	conns map[uint64]*Connection
	// closed keeps the message counts of connections that ended, by
	// ConnectionInfo.Protocol, so that the per-protocol totals never go
	// back (guarded by mu).
	closed map[string]MessageCounts
	// detached holds the counters of requests that belong to no
	// connection (plain HTTP), by protocol name (guarded by mu).
	detached map[string]*Connection
	// locals interns ConnectionInfo.Local: the connections of one
	// listener share its address, one string instead of one each
	// (guarded by mu).
	locals map[string]string
	lim    limitState
}

// RegisterConnection adds a connection to the registry; the adapter calls
// unregister (idempotent) when the connection ends.
//
// Every idle connection holds its entry, so the entry is kept small: the
// info is stored once (nothing else captures it), a Name derived from the
// addresses is made when the connection is listed, and the Local address
// is shared with the other connections of its listener.
func (b *Broker) RegisterConnection(info ConnectionInfo) (c *Connection, unregister func()) {
	r := &b.conns
	info.ID = r.next.Add(1)
	if info.ConnectedAt.IsZero() {
		info.ConnectedAt = b.now()
	}
	c = &Connection{info: info}
	r.mu.Lock()
	if r.conns == nil {
		r.conns = make(map[uint64]*Connection)
	}
	if l, ok := r.locals[c.info.Local]; ok {
		c.info.Local = l
	} else if len(r.locals) < maxInternedLocals {
		if r.locals == nil {
			r.locals = make(map[string]string)
		}
		r.locals[c.info.Local] = c.info.Local
	}
	r.conns[c.info.ID] = c
	r.mu.Unlock()
	if c.info.Close != nil && b.vhostGone(c.info.VHost) {
		// DeleteVHost ran between the login and now, after it closed the
		// vhost's registered connections: close this one too.
		c.info.Close(vhostDeletedReason(c.info.VHost))
	}
	return c, func() { r.unregister(c) }
}

// maxInternedLocals bounds the interned local addresses: a broker has a
// few listeners, but one bound to every address of a host sees one local
// address per address the clients dial.
const maxInternedLocals = 64

// unregister removes c, once.
func (r *connRegistry) unregister(c *Connection) {
	if c.gone.Swap(true) {
		return
	}
	r.mu.Lock()
	delete(r.conns, c.info.ID)
	if r.closed == nil {
		r.closed = make(map[string]MessageCounts)
	}
	t := r.closed[c.info.Protocol]
	t.add(c.counts())
	r.closed[c.info.Protocol] = t
	r.mu.Unlock()
}

// listed is c's info as Connections lists it.
func (c *Connection) listed() ConnectionInfo {
	info := c.info
	info.Channels = int(c.channels.Load())
	if info.Name == "" {
		// RabbitMQ's form, "127.0.0.1:5555 -> 127.0.0.1:5672".
		info.Name = info.Peer + " -> " + info.Local
	}
	return info
}

// Connections lists the open connections, oldest first.
func (b *Broker) Connections() []ConnectionInfo {
	r := &b.conns
	r.mu.Lock()
	out := make([]ConnectionInfo, 0, len(r.conns))
	for _, c := range r.conns {
		out = append(out, c.listed())
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// CloseConnection asks the named connection to close and reports whether
// it was found.
func (b *Broker) CloseConnection(name, reason string) bool {
	for _, c := range b.Connections() {
		if c.Name == name && c.Close != nil {
			c.Close(reason)
			return true
		}
	}
	return false
}

// ProtocolCounters sums the message counts of every connection, open or
// closed, by ConnectionInfo.Protocol, and the open channels likewise.
// Counts an adapter adds after unregistering are not seen; adapters
// unregister last.
func (b *Broker) ProtocolCounters() (counts map[string]MessageCounts, channels map[string]int) {
	r := &b.conns
	counts, channels = make(map[string]MessageCounts), make(map[string]int)
	r.mu.Lock()
	defer r.mu.Unlock()
	for p, t := range r.closed {
		counts[p] = t
	}
	for _, c := range r.conns {
		t := counts[c.info.Protocol]
		t.add(c.counts())
		counts[c.info.Protocol] = t
		channels[c.info.Protocol] += int(c.channels.Load())
	}
	for p, c := range r.detached {
		t := counts[p]
		t.add(c.counts())
		counts[p] = t
	}
	return counts, channels
}

// ProtocolCounter returns the message counters of a protocol whose
// clients have no connection to register (plain HTTP requests: publish,
// get, long-polling fetch). Its CountPublish, CountDeliver and CountAck
// add to ProtocolCounters under protocol, as a registered connection's
// do; it is not listed by Connections. The same protocol gives the same
// counter.
func (b *Broker) ProtocolCounter(protocol string) *Connection {
	r := &b.conns
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.detached[protocol]; ok {
		return c
	}
	if r.detached == nil {
		r.detached = make(map[string]*Connection)
	}
	c := &Connection{info: ConnectionInfo{Protocol: protocol}}
	r.detached[protocol] = c
	return c
}
