package amqp091

import (
	"errors"
	"fmt"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/protocol/amqp091/frame"
)

// Who a connection logged in as, and the permissions it is checked
// against: the user database for a password or certificate login, the
// token's scopes for a JWT given as the password (RabbitMQ's OAuth 2
// backend). A token login is closed when the token expires, with
// connection.close 320 CONNECTION_FORCED "credential expired" as RabbitMQ
// sends, unless connection.update-secret brought a new token first.

// errLoginRefused marks a refused login the handshake logged already
// (with the reason: a bad password, a token for another audience), so
// that serve does not log it a second time.
var errLoginRefused = errors.New("login refused")

func loggedRefusal(err error) error { return fmt.Errorf("%w: %w", errLoginRefused, err) }

// loginState is the conn's part of it; the read loop owns it.
type loginState struct {
	login  *auth.User   // nil for a certificate (EXTERNAL) login
	access auth.Checker // nil until the handshake authenticated
	expiry *time.Timer  // a token login's expiry; nil otherwise
}

// setLogin records the user Authenticate returned; a token's user name
// replaces the one the client sent.
func (c *conn) setLogin(usr *auth.User) {
	c.login = usr
	c.access = c.h.users.CheckerFor(usr)
	c.user = usr.Name
}

// checker is the permissions the connection's operations are checked
// against.
func (c *conn) checker() auth.Checker {
	if c.access == nil {
		return c.h.users
	}
	return c.access
}

// watchExpiry arms the close at the token's expiry; the returned func
// disarms it when the connection ends.
func (c *conn) watchExpiry() (stop func()) {
	c.armExpiry()
	return func() {
		if c.expiry != nil {
			c.expiry.Stop()
		}
	}
}

func (c *conn) armExpiry() {
	if c.expiry != nil {
		c.expiry.Stop()
		c.expiry = nil
	}
	d, ok := c.login.ExpiresIn(time.Now())
	if !ok {
		return
	}
	c.expiry = time.AfterFunc(d, func() {
		c.log.Warn("closing amqp connection: credential has expired")
		c.forceClose("credential expired")
	})
}

// updateSecret handles connection.update-secret as RabbitMQ does: a token
// login takes the new token (same user, still allowed in the vhost) and
// its expiry; a password login has nothing to renew and is answered ok.
// A refused secret closes the connection with 530 NOT_ALLOWED.
func (c *conn) updateSecret(m *frame.ConnectionUpdateSecret) error {
	if c.login.IsToken() {
		usr, err := c.h.users.VerifyToken(m.NewSecret)
		if err == nil && usr.Name != c.user {
			err = &auth.TokenError{Reason: "the new token names user '" + usr.Name + "'"}
		}
		var access auth.Checker
		if err == nil {
			access = c.h.users.CheckerFor(usr)
			err = access.CheckVHost(usr.Name, c.vhost.Name())
		}
		if err != nil {
			c.log.Info("amqp secret update refused", "err", err)
			return connectionError(frame.NotAllowed, m, "New secret was refused by one of the backends")
		}
		c.login, c.access = usr, access
		for _, ch := range c.channels {
			ch.pubAllowedOK = false // the cached publish check was the old token's
			ch.recheckConsumers()
		}
		c.armExpiry()
		c.log.Info("amqp secret updated", "reason", m.Reason)
	}
	c.out.push(outItem{kind: itemMethod, method: &frame.ConnectionUpdateSecretOk{}})
	return nil
}

// recheckConsumers cancels the channel's consumers whose queue the new
// token no longer allows to read, as RabbitMQ does after update-secret:
// the client hears basic.cancel if it announced consumer_cancel_notify.
func (ch *channel) recheckConsumers() {
	var revoked []*consumerSink
	ch.mu.Lock()
	for tag, s := range ch.consumers {
		if tag == ch.replyConsumer {
			continue // direct reply-to: no queue of the user's
		}
		if ch.c.access.Check(ch.c.user, ch.c.vhost.Name(), auth.Read, auth.Queue, s.bc.Queue().Name()) != nil {
			delete(ch.consumers, tag)
			revoked = append(revoked, s)
		}
	}
	ch.mu.Unlock()
	for _, s := range revoked {
		s.bc.Cancel()
		ch.c.log.Info("amqp consumer cancelled: the new secret does not allow its queue", "channel", ch.id, "consumer", s.tag)
		if ch.c.caps.consumerCancelNotify {
			ch.send(&frame.BasicCancel{ConsumerTag: s.tag, NoWait: true})
		}
	}
}
