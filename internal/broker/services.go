package broker

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// The lookup service: the RPC services the broker carries, derived from the
// consumers of the queues named "rpc.<service>" (the wire convention of
// docs/rpc.md), with no registry of its own to keep in step. An instance
// of service S is a consumer of rpc.S; it announces itself in its consume
// arguments (x-service-*). The broker counts each service's traffic itself:
// requests delivered, replies by their x-rpc-status, requests that expired
// while queued, and the time from delivery to reply.
//
// Hooks into the core are a nil check on the queue's rpc field (set only
// for rpc.* queues) where a consumer joins, a message is delivered or
// expires, and one string-length check in Publisher.Publish for replies,
// so traffic that is not RPC pays nothing measurable.

// ServicePrefix is the prefix of a service's request queue: service S is
// served from the queue "rpc.S".
const ServicePrefix = "rpc."

// The consume arguments an instance announces itself with.
const (
	argServiceName        = "x-service-name"
	argServiceVersion     = "x-service-version"
	argServiceID          = "x-service-id"
	argServiceDescription = "x-service-description"
	argServiceEndpoints   = "x-service-endpoints"
	argServiceMetadata    = "x-service-metadata"
)

// RPCStatusHeader is the reply header that carries a gRPC status code name
// ("OK", "NOT_FOUND", ...); a publish that carries it answers a request.
const RPCStatusHeader = "x-rpc-status"

// ServiceInfo describes one service for the lookup API.
type ServiceInfo struct {
	Name        string
	VHost       string
	Description string // the first instance's x-service-description
	Instances   []InstanceInfo
	Stats       ServiceStats
}

// InstanceInfo describes one instance (a consumer of rpc.S).
type InstanceInfo struct {
	ID          string // x-service-id, else the consumer tag
	Version     string
	Description string
	Endpoints   []string
	Metadata    map[string]string
	Owner       Owner // the connection that serves it (see ConnectionInfo.Owner)
	Tag         string
	Prefetch    int
	Unacked     int
	Since       time.Time
	Stats       ServiceStats
}

// serviceQueue is the lookup service's state for one rpc.S queue. Its
// lock may be taken under the queue's lock (delivery, consume), never the
// other way round, and never together with the reply table's.
type serviceQueue struct {
	name string // the service: the queue name without ServicePrefix

	mu        sync.Mutex // guards everything below
	stats     callStats
	instances map[*Consumer]*instance
}

// instance is what the lookup service keeps of one consumer.
type instance struct {
	since time.Time
	// The announcement, parsed once when the consumer joined.
	id, version, description string
	endpoints                []string
	metadata                 map[string]string
	stats                    callStats // guarded by the serviceQueue's lock
}

// newServiceQueue returns the lookup state for a queue named rpc.S, or nil
// for any other queue.
func newServiceQueue(name string) *serviceQueue {
	if len(name) <= len(ServicePrefix) || !strings.HasPrefix(name, ServicePrefix) {
		return nil
	}
	return &serviceQueue{name: name[len(ServicePrefix):], instances: make(map[*Consumer]*instance)}
}

// joined records a consumer of the queue; called under the queue's lock.
// Records of consumers that left are dropped here and when listing, so
// the map holds the live consumers and at most the ones that left since.
func (s *serviceQueue) joined(c *Consumer, now time.Time) {
	in := &instance{since: now, id: c.tag}
	a := c.args
	if v, ok := a[argServiceID].(string); ok && v != "" {
		in.id = v
	}
	in.version, _ = a[argServiceVersion].(string)
	in.description, _ = a[argServiceDescription].(string)
	if eps, ok := a[argServiceEndpoints].([]any); ok {
		for _, e := range eps {
			if name := asString(e); name != "" {
				in.endpoints = append(in.endpoints, name)
			}
		}
	}
	if md, ok := a[argServiceMetadata].(Table); ok {
		in.metadata = make(map[string]string, len(md))
		for k, v := range md {
			if str := asString(v); str != "" {
				in.metadata[k] = str
			} else {
				in.metadata[k] = fmt.Sprint(v)
			}
		}
	}
	s.mu.Lock()
	for k := range s.instances {
		if k.cancelled.Load() {
			delete(s.instances, k)
		}
	}
	s.instances[c] = in
	s.mu.Unlock()
}

func asString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

// delivered counts a request handed to consumer c and, if it can be
// answered, remembers it until its reply; called under the queue's lock,
// before the delivery goes out: the reply may come back (on the
// instance's connection) before Deliver has returned.
func (s *serviceQueue) delivered(v *VHost, c *Consumer, m *Message) {
	now := v.broker.now().UnixNano()
	s.mu.Lock()
	in := s.instances[c]
	s.stats.requests++
	if in != nil {
		in.stats.requests++
	}
	s.mu.Unlock()
	if m.Properties.ReplyTo != "" && m.Properties.CorrelationID != "" {
		v.broker.services.expect(replyKey{v, m.Properties.ReplyTo, m.Properties.CorrelationID}, pending{svc: s, in: in, at: now})
	}
}

// undelivered takes delivered back for a delivery that consumer c then
// refused (its outbox was full or closed).
func (s *serviceQueue) undelivered(v *VHost, c *Consumer, m *Message) {
	s.mu.Lock()
	s.stats.requests--
	if in := s.instances[c]; in != nil {
		in.stats.requests--
	}
	s.mu.Unlock()
	if m.Properties.ReplyTo != "" && m.Properties.CorrelationID != "" {
		v.broker.services.forget(replyKey{v, m.Properties.ReplyTo, m.Properties.CorrelationID})
	}
}

// expired counts a request that expired while queued.
func (s *serviceQueue) expired() {
	s.mu.Lock()
	s.stats.expired++
	s.mu.Unlock()
}

// replied records a reply to a request delivered at the time p.at.
func (s *serviceQueue) replied(p pending, status string, now int64) {
	d := time.Duration(now - p.at)
	s.mu.Lock()
	s.stats.reply(status, d)
	if p.in != nil {
		p.in.stats.reply(status, d)
	}
	s.mu.Unlock()
}

// noteReply is Publish's hook: a message with a correlation id may answer
// a request the lookup service is waiting on.
func (p *Publisher) noteReply(m *Message) {
	t := &p.vhost.broker.services
	if t.size.Load() == 0 {
		return
	}
	status := asString(m.Properties.Headers[RPCStatusHeader])
	if status == "" {
		return
	}
	if m.Exchange != "" {
		return // replies go through the default exchange, keyed by reply_to
	}
	t.answer(replyKey{p.vhost, m.RoutingKey, m.Properties.CorrelationID}, status, p.vhost.broker.now().UnixNano())
}

// Services lists the services of a virtual host ("" = every vhost),
// sorted by vhost and name. A service is listed while its queue has at
// least one consumer.
func (b *Broker) Services(vhost string) []ServiceInfo {
	var out []ServiceInfo
	for _, v := range b.VHosts() {
		if vhost != "" && v.name != vhost {
			continue
		}
		for _, q := range v.serviceQueues() {
			if si, ok := q.serviceInfo(); ok {
				out = append(out, si)
			}
		}
	}
	return out
}

// Service describes one service; false if no instance serves it.
func (b *Broker) Service(vhost, name string) (ServiceInfo, bool) {
	v := b.VHost(vhost)
	if v == nil {
		return ServiceInfo{}, false
	}
	q, err := v.Queue(ServicePrefix + name)
	if err != nil || q.rpc == nil {
		return ServiceInfo{}, false
	}
	return q.serviceInfo()
}

// serviceQueues are the vhost's rpc.* queues, sorted by name.
func (v *VHost) serviceQueues() []*Queue {
	v.mu.RLock()
	var out []*Queue
	for _, q := range v.queues {
		if q.rpc != nil {
			out = append(out, q)
		}
	}
	v.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// serviceInfo snapshots the service served from q; false without consumers.
func (h *Queue) serviceInfo() (ServiceInfo, bool) {
	q, ok := h.kind.(*classicQueue)
	if !ok {
		return ServiceInfo{}, false
	}
	s := q.rpc
	q.mu.Lock()
	deleted := q.deleted
	cs := append([]*Consumer(nil), q.consumers...)
	q.mu.Unlock()
	if deleted || len(cs) == 0 {
		return ServiceInfo{}, false
	}
	si := ServiceInfo{Name: s.name, VHost: q.vhost.name}
	live := make(map[*Consumer]bool, len(cs))
	s.mu.Lock()
	for _, c := range cs {
		live[c] = true
		in := s.instances[c]
		if in == nil {
			continue // joining right now
		}
		si.Instances = append(si.Instances, InstanceInfo{ID: in.id, Version: in.version, Description: in.description,
			Endpoints: in.endpoints, Metadata: in.metadata, Owner: c.owner, Tag: c.tag, Prefetch: int(c.prefetch),
			Unacked: c.Unacked(), Since: in.since, Stats: in.stats.snapshot()})
		if si.Description == "" {
			si.Description = in.description
		}
	}
	for c := range s.instances {
		if !live[c] {
			delete(s.instances, c)
		}
	}
	si.Stats = s.stats.snapshot()
	s.mu.Unlock()
	sort.SliceStable(si.Instances, func(i, j int) bool { return si.Instances[i].ID < si.Instances[j].ID })
	return si, len(si.Instances) > 0
}
