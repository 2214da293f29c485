// Package auth holds Herald's users and checks their credentials.
//
// Passwords are stored as salted SHA-256 hashes, the scheme RabbitMQ uses
// by default (rabbit_password_hashing_sha256), so that a login costs
// microseconds, not the tens of milliseconds of bcrypt.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"sync"
)

// Errors returned by Authenticate. Both mean "refuse the login"; the
// difference is only for the log.
var (
	ErrInvalidCredentials = errors.New("invalid username or password")
	ErrLoopbackOnly       = errors.New("user may only connect from localhost")
)

// User is a broker user.
type User struct {
	Name string
	Tags []string
	// LoopbackOnly restricts logins to loopback addresses (RabbitMQ's
	// loopback_users, which holds guest by default).
	LoopbackOnly bool

	salt [4]byte
	hash [32]byte
}

// Users is the user database.
type Users struct {
	mu    sync.RWMutex
	users map[string]*User
}

// NewUsers returns an empty user database.
func NewUsers() *Users { return &Users{users: make(map[string]*User)} }

// NewDefaultUsers returns a database with RabbitMQ's default user
// guest/guest, restricted to loopback connections.
func NewDefaultUsers() *Users {
	u := NewUsers()
	u.Put("guest", "guest", true, "administrator")
	return u
}

// Put creates or replaces a user.
func (u *Users) Put(name, password string, loopbackOnly bool, tags ...string) {
	usr := &User{Name: name, Tags: tags, LoopbackOnly: loopbackOnly}
	_, _ = rand.Read(usr.salt[:])
	usr.hash = hashPassword(usr.salt, password)
	u.mu.Lock()
	u.users[name] = usr
	u.mu.Unlock()
}

// Delete removes a user.
func (u *Users) Delete(name string) {
	u.mu.Lock()
	delete(u.users, name)
	u.mu.Unlock()
}

// Authenticate checks a username and password for a client at remote.
func (u *Users) Authenticate(name, password string, remote net.Addr) (*User, error) {
	u.mu.RLock()
	usr, ok := u.users[name]
	u.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("user '%s': %w", name, ErrInvalidCredentials)
	}
	h := hashPassword(usr.salt, password)
	if subtle.ConstantTimeCompare(h[:], usr.hash[:]) != 1 {
		return nil, fmt.Errorf("user '%s': %w", name, ErrInvalidCredentials)
	}
	if usr.LoopbackOnly && !isLoopback(remote) {
		return nil, fmt.Errorf("user '%s' from %v: %w", name, remote, ErrLoopbackOnly)
	}
	return usr, nil
}

func hashPassword(salt [4]byte, password string) [32]byte {
	h := sha256.New()
	h.Write(salt[:])
	h.Write([]byte(password))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func isLoopback(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	case nil:
		return false
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
