package stomp

import (
	"time"

	"github.com/heraldmq/herald/internal/auth"
)

// Who a connection logged in as and what it is checked against: the user
// database for a password or certificate login, the token's scopes when
// the passcode is a JWT (RabbitMQ's OAuth 2 backend; the login header is
// then ignored). A token login gets an ERROR frame and is closed when
// the token expires.

// loginState is the conn's part of it, set in the handshake.
type loginState struct {
	login  *auth.User
	access auth.Checker // nil: the user database
}

// setLogin records the user Authenticate returned and returns the name
// the connection runs as (a token's user).
func (c *conn) setLogin(usr *auth.User) string {
	c.login = usr
	c.access = c.h.users.CheckerFor(usr)
	return usr.Name
}

func (c *conn) checker() auth.Checker {
	if c.access == nil {
		return c.h.users
	}
	return c.access
}

// watchExpiry arms the close at a token login's expiry; the returned func
// disarms it when the connection ends.
func (c *conn) watchExpiry() (stop func()) {
	d, ok := c.login.ExpiresIn(time.Now())
	if !ok {
		return func() {}
	}
	t := time.AfterFunc(d, func() {
		c.log.Warn("closing stomp connection: credential expired")
		c.shuttingDown.Store(true)
		c.out.push(outItem{f: errorFrame("credential expired", "The access token expired; reconnect with a new one.", ""), close: true})
		_ = c.nc.SetWriteDeadline(time.Now().Add(closeTimeout))
	})
	return func() { t.Stop() }
}
