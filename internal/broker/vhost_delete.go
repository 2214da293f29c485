package broker

import (
	"fmt"

	"github.com/heraldmq/herald/internal/store"
)

// DeleteVHost deletes a virtual host the way RabbitMQ does: the vhost
// stops being found at once (new logins to it are refused), every client
// connection on it is closed (AMQP: connection.close 320
// CONNECTION_FORCED "vhost 'name' is deleted"), and its queues (with
// their messages, persisted ones included: the log learns the queue is
// gone), exchanges, bindings, policies and vhost limits are deleted; the
// definitions change is persisted through OnDefinitionsChange before it
// returns. The default vhost "/" may be deleted too. Users' permissions
// in the vhost live outside the core: callers clear them (RabbitMQ
// clears them first, so that nobody logs in meanwhile).
//
// It returns how many queues were deleted, or a 404 *Error when there is
// no such vhost.
func (b *Broker) DeleteVHost(name string) (queues int, err error) {
	r, err := b.run(DeleteVHost{VHost: name})
	return r.Count, err
}

func (b *Broker) deleteVHost(name string) (queues int, err error) {
	b.mu.Lock()
	v, ok := b.vhosts[name]
	if ok {
		delete(b.vhosts, name)
	}
	b.mu.Unlock()
	if !ok {
		return 0, errorf(CodeNotFound, "no vhost '%s'", name)
	}
	// Connections first, so that clients learn why before their consumers
	// are cancelled by the queue deletions. A connection that registers
	// from now on is closed by RegisterConnection (the vhost is gone).
	reason := vhostDeletedReason(name)
	for _, c := range b.Connections() {
		if c.VHost == name && c.Close != nil {
			c.Close(reason)
		}
	}
	queues = v.destroy()
	b.dropKeyedStores(name) // MQTT retained messages and session records
	l := &b.conns.lim
	l.mu.Lock()
	delete(l.vhost, name)
	l.mu.Unlock()
	b.changed(true)
	return queues, nil
}

// vhostDeletedReason is the close reason of connections on a deleted
// vhost, RabbitMQ's wording.
func vhostDeletedReason(name string) string {
	return fmt.Sprintf("vhost '%s' is deleted", name)
}

// vhostGone reports whether name no longer names a vhost (it was deleted
// after the connection resolved it).
func (b *Broker) vhostGone(name string) bool {
	return name != "" && b.VHost(name) == nil
}

// destroy empties a vhost that has been removed from the broker: every
// queue is deleted as DeleteQueue deletes one (consumers cancelled,
// timers stopped, the log told), every exchange as DeleteExchange does
// (delayed messages dropped), and the policies forgotten. Later
// declarations on the vhost fail (deleted). It returns the number of
// queues deleted, internal ones included.
func (v *VHost) destroy() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.deleted = true
	queues := v.queues
	exchanges := v.exchanges
	v.queues = make(map[string]*Queue)
	v.owned = make(map[Owner][]*Queue)
	v.exchanges = make(map[string]*Exchange)
	v.policies = make(map[string]*Policy)
	for _, q := range queues {
		q.kind.markDeleted()
	}
	for _, e := range exchanges {
		e.stopDelayed()
		if e.kind == KindDelayed && e.durable && v.broker.store != nil {
			v.broker.store.AppendFunc([]store.Record{{Kind: store.KindQueueDelete, QueueID: e.delayQueueID()}}, noop)
		}
	}
	return len(queues)
}

// deletedError is the answer to a declaration on a deleted vhost.
func (v *VHost) deletedError() error {
	return errorf(CodeNotFound, "vhost '%s' is deleted", v.name)
}
