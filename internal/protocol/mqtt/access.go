package mqtt

import (
	"github.com/heraldmq/herald/internal/auth"
)

// Permission checks, as RabbitMQ's MQTT plugin makes them: the session
// queue needs configure (declare) and read (consume); a subscription is a
// queue.bind, so write on the queue and read on amq.topic; a publish needs
// write on amq.topic. Then topic authorisation (RabbitMQ's topic
// permissions, auth.CheckTopicAccess): a PUBLISH needs write and a
// SUBSCRIBE read on the topic as a routing key ("a/b/+" is "a.b.*"), with
// {client_id} expanded to the MQTT client id. Checks go through the
// connection's checker: the user database, or a token's scopes.

// allow reports the refusal of kind on the named resource, or nil.
func (c *conn) allow(kind auth.Kind, res auth.Resource, name string) error {
	return c.checker().Check(c.user, c.vhost.Name(), kind, res, name)
}

// allowTopic is the topic check of a key on amq.topic (a topic exchange
// in every vhost, so no lookup of its type is needed).
func (c *conn) allowTopic(kind auth.Kind, key string) error {
	return auth.CheckTopicAccess(c.checker(), c.user, c.vhost.Name(), kind, topicExchange, key,
		auth.TopicVars{ClientID: c.clientID}, nil)
}

// allowQueue checks configure and read on a queue the connection declares
// and consumes (its session queue, a shared subscription's queue).
func (c *conn) allowQueue(name string) error {
	if err := c.allow(auth.Configure, auth.Queue, name); err != nil {
		return err
	}
	return c.allow(auth.Read, auth.Queue, name)
}

// allowSubscribe checks the bind of queue to amq.topic with key.
func (c *conn) allowSubscribe(queue, key string) error {
	if err := c.allow(auth.Write, auth.Queue, queue); err != nil {
		return err
	}
	if err := c.allow(auth.Read, auth.Exchange, topicExchange); err != nil {
		return err
	}
	return c.allowTopic(auth.Read, key)
}

// allowPublish checks write on amq.topic, cached until users or
// permissions change: it runs for every PUBLISH; then the topic, when the
// user has topic permissions on amq.topic (cached likewise, so that an
// unrestricted publish does not build the key).
func (c *conn) allowPublish(topic string) error {
	gen := c.h.users.Generation()
	if !c.pubAllowed || c.pubAllowedGen != gen {
		if err := c.allow(auth.Write, auth.Exchange, topicExchange); err != nil {
			return err
		}
		c.pubAllowed, c.pubAllowedGen = true, gen
		c.pubTopicChecked = c.h.users.HasTopicPermissions(c.user, c.vhost.Name(), topicExchange)
	}
	if !c.pubTopicChecked {
		return nil
	}
	return c.allowTopic(auth.Write, topicToKey(topic))
}

// allowWill checks a last will as the PUBLISH it is (RabbitMQ publishes
// it through the same checks), when it is due: write on amq.topic and on
// its topic. A refused will is dropped.
func (c *conn) allowWill(topic string) error {
	if err := c.allow(auth.Write, auth.Exchange, topicExchange); err != nil {
		return err
	}
	return c.allowTopic(auth.Write, topicToKey(topic))
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
