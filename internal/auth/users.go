// Package auth holds Herald's users, their tags and their per-vhost
// permissions, and checks credentials and access.
//
// Passwords are stored as salted SHA-256 hashes, the scheme RabbitMQ uses
// by default (rabbit_password_hashing_sha256: base64(salt(4) ||
// sha256(salt || password))), so that a login costs microseconds, not the
// tens of milliseconds of bcrypt, and hashes move unchanged between
// RabbitMQ's and Herald's definitions files.
//
// Permissions follow RabbitMQ's access control: per user and vhost, three
// regular expressions (configure, write, read) matched against resource
// names; see permissions.go for which operation needs what.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
)

// Errors returned by Authenticate. Both mean "refuse the login"; the
// difference is only for the log.
var (
	ErrInvalidCredentials = errors.New("invalid username or password")
	ErrLoopbackOnly       = errors.New("user may only connect from localhost")
	// ErrNoSuchUser is returned by the management operations.
	ErrNoSuchUser = errors.New("no such user")
)

// User tags, RabbitMQ's: they grant access to the management API, not to
// messaging (permissions do that).
const (
	TagAdministrator = "administrator"
	TagManagement    = "management"
	TagMonitoring    = "monitoring"
	TagPolicymaker   = "policymaker"
)

// HashingAlgorithm is the only password hashing scheme Herald knows.
const HashingAlgorithm = "rabbit_password_hashing_sha256"

// User is a broker user. A *User returned by Authenticate is a snapshot:
// later changes replace it rather than mutate it.
type User struct {
	Name string
	Tags []string
	// LoopbackOnly restricts logins to loopback addresses (RabbitMQ's
	// loopback_users, which holds guest by default).
	LoopbackOnly bool

	salt [4]byte
	hash [32]byte
}

// HasTag reports whether the user carries tag.
func (u *User) HasTag(tag string) bool { return u != nil && slices.Contains(u.Tags, tag) }

// PasswordHash is the user's hash in RabbitMQ's encoding.
func (u *User) PasswordHash() string {
	b := make([]byte, 0, 36)
	b = append(b, u.salt[:]...)
	b = append(b, u.hash[:]...)
	return base64.StdEncoding.EncodeToString(b)
}

// Users is the user and permission database. Every method is safe for
// concurrent use.
type Users struct {
	mu    sync.RWMutex
	users map[string]*User
	// perms is user -> vhost -> compiled permissions; guarded by mu.
	perms map[string]map[string]*grant
	// gen counts changes, so that adapters can cache an allowed check
	// and notice a revocation with one atomic load.
	gen atomic.Uint64

	hookMu   sync.Mutex
	onChange func()
}

// NewUsers returns an empty user database.
func NewUsers() *Users {
	return &Users{users: make(map[string]*User), perms: make(map[string]map[string]*grant)}
}

// NewDefaultUsers returns a database with RabbitMQ's default user
// guest/guest: administrator, loopback only, all permissions on "/".
func NewDefaultUsers() *Users {
	u := NewUsers()
	u.Put("guest", "guest", true, TagAdministrator)
	return u
}

// Put creates or replaces a user and gives it full permissions (.* .* .*)
// on the default vhost "/". It is the convenience for embedding and tests,
// where a user that can log in is meant to work; PutUser is RabbitMQ's
// add_user, which grants nothing.
func (u *Users) Put(name, password string, loopbackOnly bool, tags ...string) {
	usr := newUser(name, loopbackOnly, tags)
	_, _ = rand.Read(usr.salt[:])
	usr.hash = hashPassword(usr.salt, password)
	u.mu.Lock()
	u.users[name] = usr
	g, _ := compile(AllPermissions)
	u.setGrantLocked(name, "/", g)
	u.mu.Unlock()
	u.changed()
}

// PutUser creates or replaces a user with a password. A new user has no
// permissions; a replaced one keeps its permissions and loopback flag.
func (u *Users) PutUser(name, password string, tags []string) {
	var salt [4]byte
	_, _ = rand.Read(salt[:])
	u.putHashed(name, salt, hashPassword(salt, password), tags)
}

// PutUserHash creates or replaces a user from a password hash in RabbitMQ's
// encoding (base64 of a 4-byte salt and the SHA-256 digest); algorithm ""
// means rabbit_password_hashing_sha256, the only one supported. An empty
// hash creates a user that cannot log in with a password, as RabbitMQ.
func (u *Users) PutUserHash(name, hash, algorithm string, tags []string) error {
	if algorithm != "" && algorithm != HashingAlgorithm {
		return fmt.Errorf("user '%s': hashing algorithm %q is not supported (only %s)", name, algorithm, HashingAlgorithm)
	}
	var salt [4]byte
	var sum [32]byte
	if hash == "" {
		// No password: a random salt and digest nothing hashes to.
		_, _ = rand.Read(salt[:])
		_, _ = rand.Read(sum[:])
	} else {
		raw, err := base64.StdEncoding.DecodeString(hash)
		if err != nil || len(raw) != 36 {
			return fmt.Errorf("user '%s': password_hash must be base64 of 36 bytes (4 salt + 32 SHA-256)", name)
		}
		copy(salt[:], raw[:4])
		copy(sum[:], raw[4:])
	}
	u.putHashed(name, salt, sum, tags)
	return nil
}

func (u *Users) putHashed(name string, salt [4]byte, sum [32]byte, tags []string) {
	u.mu.Lock()
	loopback := name == "guest" // RabbitMQ's default loopback_users
	if old, ok := u.users[name]; ok {
		loopback = old.LoopbackOnly
	}
	usr := newUser(name, loopback, tags)
	usr.salt, usr.hash = salt, sum
	u.users[name] = usr
	u.mu.Unlock()
	u.changed()
}

func newUser(name string, loopback bool, tags []string) *User {
	t := make([]string, 0, len(tags))
	for _, tag := range tags {
		if tag != "" && !slices.Contains(t, tag) {
			t = append(t, tag)
		}
	}
	return &User{Name: name, Tags: t, LoopbackOnly: loopback}
}

// Delete removes a user and its permissions; it reports whether it existed.
func (u *Users) Delete(name string) bool {
	u.mu.Lock()
	_, ok := u.users[name]
	delete(u.users, name)
	delete(u.perms, name)
	u.mu.Unlock()
	if ok {
		u.changed()
	}
	return ok
}

// User returns a user by name.
func (u *Users) User(name string) (*User, bool) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	usr, ok := u.users[name]
	return usr, ok
}

// List returns every user sorted by name.
func (u *Users) List() []*User {
	u.mu.RLock()
	out := make([]*User, 0, len(u.users))
	for _, usr := range u.users {
		out = append(out, usr)
	}
	u.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// OnChange sets f to be called after every change to users or
// permissions (outside any lock), e.g. to save the definitions file.
func (u *Users) OnChange(f func()) {
	u.hookMu.Lock()
	u.onChange = f
	u.hookMu.Unlock()
}

// Generation changes whenever users or permissions change: a cached
// "allowed" is valid while the generation it was taken at is current.
func (u *Users) Generation() uint64 { return u.gen.Load() }

func (u *Users) changed() {
	u.gen.Add(1)
	u.hookMu.Lock()
	f := u.onChange
	u.hookMu.Unlock()
	if f != nil {
		f()
	}
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
