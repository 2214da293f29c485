package stomp

import (
	"github.com/heraldmq/herald/internal/auth"
)

// Permission checks, as RabbitMQ's STOMP plugin makes them through the
// AMQP operations each frame amounts to: a SEND is a basic.publish (write
// on the exchange; the default exchange for queue destinations), plus a
// queue.declare (configure) when it creates /queue/x; a SUBSCRIBE is a
// basic.consume (read on the queue), plus declare and queue.bind (write
// on the queue, read on the exchange) for /topic/ and /exchange/. On a
// topic exchange (/topic/k is amq.topic with key k) a SEND needs write and
// a SUBSCRIBE read on the key by the user's topic permissions
// (auth.CheckTopicAccess); STOMP has no client id, so {client_id} stays
// unexpanded, as in RabbitMQ. A refusal ends the connection with an ERROR
// frame carrying RabbitMQ's text, as RabbitMQ does. Checks go through the
// connection's checker: the user database, or a token's scopes.

// allow returns the ERROR a refusal of kind on the named resource gets.
func (c *conn) allow(kind auth.Kind, res auth.Resource, name string) error {
	if res == auth.Exchange {
		name = auth.ExchangeResource(name)
	}
	if err := c.checker().Check(c.user, c.vhost.Name(), kind, res, name); err != nil {
		return c.refused(err)
	}
	return nil
}

func (c *conn) refused(err error) error {
	c.log.Info("stomp access refused", "err", err)
	return &protoError{message: "access_refused", detail: "ACCESS_REFUSED - " + err.Error()}
}

// allowTopic is the topic check of key on exchange.
func (c *conn) allowTopic(kind auth.Kind, exchange, key string) error {
	if err := auth.CheckTopicAccess(c.checker(), c.user, c.vhost.Name(), kind, exchange, key, auth.TopicVars{}, c.exchangeKind); err != nil {
		return c.refused(err)
	}
	return nil
}

// exchangeKind is the type of the vhost's exchange name ("" if none).
func (c *conn) exchangeKind(name string) string {
	if e, err := c.vhost.Exchange(name); err == nil {
		return e.Kind()
	}
	return ""
}

// allowPublish is allow(write, exchange) with a one-entry cache valid
// until users or permissions change: it runs for every SEND. Then the
// topic check of key.
func (c *conn) allowPublish(exchange, key string) error {
	gen := c.h.users.Generation()
	if !c.pubAllowedOK || c.pubAllowedGen != gen || c.pubAllowed != exchange {
		if err := c.allow(auth.Write, auth.Exchange, exchange); err != nil {
			return err
		}
		c.pubAllowed, c.pubAllowedGen, c.pubAllowedOK = exchange, gen, true
	}
	return c.allowTopic(auth.Write, exchange, key)
}

// allowDeclared checks configure on a queue the core named itself (its
// name is only known after the declare); a refused one is deleted again.
func (c *conn) allowDeclared(name string) error {
	if err := c.allow(auth.Configure, auth.Queue, name); err != nil {
		_, _ = c.vhost.DeleteQueue(name, c.owner, false, false)
		return err
	}
	return nil
}
