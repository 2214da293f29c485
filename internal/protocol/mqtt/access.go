package mqtt

import (
	"github.com/heraldmq/herald/internal/auth"
)

// Permission checks, as RabbitMQ's MQTT plugin makes them: the session
// queue needs configure (declare) and read (consume); a subscription is a
// queue.bind, so write on the queue and read on amq.topic; a publish needs
// write on amq.topic. Topic-level authorisation (RabbitMQ's topic
// permissions on routing keys) is not built.

// allow reports the refusal of kind on the named resource, or nil.
func (c *conn) allow(kind auth.Kind, res auth.Resource, name string) error {
	return c.h.users.Check(c.user, c.vhost.Name(), kind, res, name)
}

// allowQueue checks configure and read on a queue the connection declares
// and consumes (its session queue, a shared subscription's queue).
func (c *conn) allowQueue(name string) error {
	if err := c.allow(auth.Configure, auth.Queue, name); err != nil {
		return err
	}
	return c.allow(auth.Read, auth.Queue, name)
}

// allowSubscribe checks the bind of queue to amq.topic.
func (c *conn) allowSubscribe(queue string) error {
	if err := c.allow(auth.Write, auth.Queue, queue); err != nil {
		return err
	}
	return c.allow(auth.Read, auth.Exchange, topicExchange)
}

// allowPublish checks write on amq.topic, cached until users or
// permissions change: it runs for every PUBLISH.
func (c *conn) allowPublish() error {
	gen := c.h.users.Generation()
	if c.pubAllowed && c.pubAllowedGen == gen {
		return nil
	}
	if err := c.allow(auth.Write, auth.Exchange, topicExchange); err != nil {
		return err
	}
	c.pubAllowed, c.pubAllowedGen = true, gen
	return nil
}

// sessionQueueFor is the session queue a CONNECT will use, checked before
// it is declared.
func (c *conn) sessionQueueFor(cleanStart bool) string {
	durable := sessionQueueName(c.clientID, true)
	if !cleanStart {
		if q, _ := c.vhost.Queue(durable); q != nil {
			return durable
		}
	}
	return sessionQueueName(c.clientID, c.persistent)
}
