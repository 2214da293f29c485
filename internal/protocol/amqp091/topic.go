package amqp091

import (
	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/protocol/amqp091/frame"
)

// allowTopic is RabbitMQ's topic authorisation: basic.publish to a topic
// exchange needs write on the routing key, queue.bind and exchange.bind
// to one read on the binding key, as the user's topic permissions allow
// (auth.CheckTopicAccess, the check every protocol shares). A refusal is
// channel error 403 ACCESS_REFUSED. AMQP 0-9-1 has no client id: a
// pattern's {client_id} stays unexpanded, as in RabbitMQ.
func (ch *channel) allowTopic(m frame.Method, kind auth.Kind, exchange, key string) error {
	c := ch.c
	err := auth.CheckTopicAccess(c.checker(), c.user, c.vhost.Name(), kind, exchange, key, auth.TopicVars{}, ch.exchangeKind)
	if err != nil {
		return channelError(frame.AccessRefused, m, "%s", err.Error())
	}
	return nil
}

// exchangeKind is the type of the channel's vhost's exchange name, or ""
// when there is none (the operation then fails on its own, 404).
func (ch *channel) exchangeKind(name string) string {
	if e, err := ch.c.vhost.Exchange(name); err == nil {
		return e.Kind()
	}
	return ""
}
