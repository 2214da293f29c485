package mqtt

import (
	"sync/atomic"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// A broadcast hands the same *broker.Message to every subscriber's queue,
// and at QoS 0 the PUBLISH each of them gets is byte for byte the same
// (no packet id, no per-subscription properties). pubCache keeps the last
// such encoding, so a fanout to 15,000 subscribers encodes the packet once
// and each writer only copies its bytes. It holds one entry: the fanout
// goroutines all deliver the same message one after the other, so the
// newest one is the one they ask for; messages interleaving from several
// publishers only cost an encode each, as before.
type pubCache struct {
	last atomic.Pointer[encodedPub]
}

// encodedPub is one message's QoS 0 PUBLISH for one protocol version,
// topic and retain flag. Immutable once stored.
type encodedPub struct {
	m       *broker.Message
	topic   string
	version byte
	retain  bool
	b       []byte
}

// maxCachedPub bounds what the cache holds on to: it keeps the message
// (and its encoding) alive until the next one replaces it.
const maxCachedPub = 64 << 10

// get returns the cached encoding of m's QoS 0 PUBLISH on topic, or nil.
func (c *pubCache) get(m *broker.Message, topic string, version byte, retain bool) []byte {
	e := c.last.Load()
	if e == nil || e.m != m || e.version != version || e.retain != retain || e.topic != topic {
		return nil
	}
	return e.b
}

// encode returns p (QoS 0, no subscription ids, no topic alias, and at v5
// properties that depend on m alone) encoded for m, from the cache or
// encoded now and cached.
func (c *pubCache) encode(m *broker.Message, p *packet.Publish, version byte) []byte {
	if b := c.get(m, p.Topic, version, p.Retain); b != nil {
		return b
	}
	b := p.Encode(nil, version)
	if len(b) <= maxCachedPub {
		c.last.Store(&encodedPub{m: m, topic: p.Topic, version: version, retain: p.Retain, b: b})
	}
	return b
}
