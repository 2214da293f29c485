package kit

import (
	"time"

	"github.com/heraldmq/herald/internal/auth"
)

// Login is who a connection logged in as and what its operations are
// checked against: the user database for a password or certificate
// login, the token's scopes when the password was a JWT (RabbitMQ's
// OAuth 2 backend; the user name sent is then ignored).
type Login struct {
	users  *auth.Users
	user   *auth.User
	access auth.Checker // nil: the user database
}

// Set records the user Authenticate returned and returns the name the
// connection runs as (a token's user).
func (l *Login) Set(users *auth.Users, u *auth.User) string {
	l.users, l.user, l.access = users, u, users.CheckerFor(u)
	return u.Name
}

// Checker is what permissions are checked against; users when Set was
// never called (a certificate or anonymous login).
func (l *Login) Checker(users *auth.Users) auth.Checker {
	if l.access == nil {
		return users
	}
	return l.access
}

// WatchExpiry calls expired when a token login's token expires; for any
// other login it never does. The returned func disarms it.
func (l *Login) WatchExpiry(expired func()) (stop func()) {
	d, ok := l.user.ExpiresIn(time.Now())
	if !ok {
		return func() {}
	}
	t := time.AfterFunc(d, expired)
	return func() { t.Stop() }
}
