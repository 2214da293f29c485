package broker

// Quorum queues (x-queue-type: quorum) on one node. RabbitMQ replicates a
// quorum queue's every state change through Raft; a single Herald node has
// nobody to replicate to, so a quorum queue is the classic engine under
// quorum's rules: always durable, never exclusive or auto-delete, no
// priorities, a delivery limit by default, and a type that a redeclaration
// may not change. The clustering work replaces the engine behind the same
// queueKind seam: in cluster mode (Broker.EnableReplicatedQuorum) a quorum
// queue is replicated through the cluster's Raft log (quorum_log.go).

// DefaultQuorumDeliveryLimit is x-delivery-limit for a quorum queue that
// sets none, as in RabbitMQ 4: past it a message is dead-lettered (reason
// delivery_limit) or dropped.
const DefaultQuorumDeliveryLimit = 20

// newQuorum builds a quorum queue's engine: on one node, the classic one
// (its configuration already carries the quorum defaults); in cluster mode
// the replicated one (quorum_replicated.go).
func newQuorum(q *Queue, cfg queueConfig, p *Policy) queueKind {
	if qc := q.vhost.broker.quorum.Load(); qc != nil {
		return newRaftQuorum(q, qc, cfg, p)
	}
	return newClassic(q, cfg, p)
}

// checkQueueType refuses a declaration its queue type does not allow, as
// RabbitMQ does (406, never silently coerced).
func checkQueueType(name, vhost string, o QueueOptions, cfg queueConfig) error {
	if cfg.queueType == QueueTypeStream {
		return checkStreamDeclare(name, vhost, o)
	}
	if cfg.queueType != QueueTypeQuorum {
		return nil
	}
	bad := func(what string) error {
		return errorf(CodePreconditionFailed, "invalid property '%s' for queue '%s' in vhost '%s'", what, name, vhost)
	}
	switch {
	case !o.Durable:
		return bad("non-durable")
	case o.Exclusive:
		return bad("exclusive-owner")
	case o.AutoDelete:
		return bad("auto-delete")
	}
	if _, ok := o.Args["x-max-priority"]; ok {
		return errorf(CodePreconditionFailed, "invalid arg 'x-max-priority' for queue '%s' in vhost '%s': quorum queues have no priorities", name, vhost)
	}
	return nil
}

// queueTypeOf is the type a declaration asks for: an absent x-queue-type
// means classic, so the two are equivalent on redeclaration.
func queueTypeOf(args Table) string {
	switch s := args["x-queue-type"].(type) {
	case string:
		return s
	case []byte:
		return string(s)
	}
	return QueueTypeClassic
}
