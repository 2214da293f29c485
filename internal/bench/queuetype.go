package bench

import amqp "github.com/rabbitmq/amqp091-go"

// queueDecl is how the throughput, latency and fanout scenarios declare
// their queues: a quorum queue (--queue-type quorum) must be durable and
// may not be auto-delete (the run deletes it at the end); others are
// auto-delete, durable with --persistent.
func queueDecl(cfg Config) (durable, autoDelete bool, args amqp.Table) {
	if cfg.QueueType == "" || cfg.QueueType == "classic" {
		return cfg.Persistent, true, nil
	}
	return true, cfg.QueueType != "quorum", amqp.Table{"x-queue-type": cfg.QueueType}
}
