package mqtt

import (
	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/protocol/kit"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// Who a connection logged in as and what it is checked against: the user
// database for a password or certificate login, the token's scopes when
// the password is a JWT (RabbitMQ's OAuth 2 backend; the user name is
// then ignored, beyond its "vhost:" prefix). A token login is closed when
// the token expires: v5 DISCONNECT 0xA0 (maximum connect time, what
// RabbitMQ's MQTT plugin sends), 3.1.1 a plain close.

// loginState is the conn's part of it, set in the handshake.
type loginState struct {
	login kit.Login
	// pubTopicChecked: the user has topic permissions on amq.topic, as of
	// pubAllowedGen (access.go).
	pubTopicChecked bool
}

// setLogin records the user Authenticate returned and returns the name
// the connection runs as (a token's user).
func (c *conn) setLogin(usr *auth.User) string { return c.login.Set(c.h.users, usr) }

func (c *conn) checker() auth.Checker { return c.login.Checker(c.h.users) }

// watchExpiry arms the close at a token login's expiry; the returned func
// disarms it when the connection ends.
func (c *conn) watchExpiry() (stop func()) {
	return c.login.WatchExpiry(func() {
		c.logger().Warn("disconnecting mqtt client: credential expired")
		c.kick(packet.MaximumConnectTime)
	})
}
