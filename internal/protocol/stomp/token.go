package stomp

import (
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/protocol/kit"
)

// Who a connection logged in as and what it is checked against: the user
// database for a password or certificate login, the token's scopes when
// the passcode is a JWT (RabbitMQ's OAuth 2 backend; the login header is
// then ignored). A token login gets an ERROR frame and is closed when
// the token expires.

// loginState is the conn's part of it, set in the handshake.
type loginState struct {
	login kit.Login
}

// setLogin records the user Authenticate returned and returns the name
// the connection runs as (a token's user).
func (c *conn) setLogin(usr *auth.User) string { return c.login.Set(c.h.users, usr) }

func (c *conn) checker() auth.Checker { return c.login.Checker(c.h.users) }

// watchExpiry arms the close at a token login's expiry; the returned func
// disarms it when the connection ends.
func (c *conn) watchExpiry() (stop func()) {
	return c.login.WatchExpiry(func() {
		c.log.Warn("closing stomp connection: credential expired")
		c.shuttingDown.Store(true)
		c.out.push(outItem{f: errorFrame("credential expired", "The access token expired; reconnect with a new one.", ""), close: true})
		_ = c.nc.SetWriteDeadline(time.Now().Add(closeTimeout))
	})
}
