package broker

// UserExchange is Herald's built-in direct exchange for per-user messages:
// a message published to it with a user's name as routing key reaches
// every connection of that user that has a user queue (every /ws socket).
// Backends reach users over AMQP by publishing to it (write on the
// exchange); the web layer checks its own per-user permission first.
const UserExchange = "amq.herald.user"

// userQueuePrefix names user queues. They are internal: hidden from the
// queue lists and unreachable through the default exchange, so that only
// UserExchange feeds them.
const userQueuePrefix = "amq.herald.user-"

// DeclareUserQueue creates a connection's hidden exclusive queue for the
// messages sent to user, bound to UserExchange under the user's name. It
// goes away with owner (ReleaseOwner), as any exclusive queue.
func (v *VHost) DeclareUserQueue(user string, owner Owner) (*Queue, error) {
	q := v.declareInternalQueue(userQueuePrefix, owner)
	if err := v.BindQueue(q.Name(), UserExchange, user, nil, owner); err != nil {
		_, _ = v.DeleteQueue(q.Name(), owner, false, false)
		return nil, err
	}
	return q, nil
}
