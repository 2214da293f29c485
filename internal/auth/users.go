// Package auth holds Herald's users, their tags and their per-vhost
// permissions, and checks credentials and access.
//
// Passwords are never stored in clear: new ones are hashed with bcrypt
// (cost 10 by default, Users.SetBcryptCost), and a successful bcrypt login
// is remembered for a few minutes (cache.go) so that a connection storm
// does not cost 50 ms of CPU per connection. Hashes imported from RabbitMQ
// definitions (its salted SHA-256, SHA-512 and MD5 schemes) keep working;
// see hashing.go.
//
// Permissions follow RabbitMQ's access control: per user and vhost, three
// regular expressions (configure, write, read) matched against resource
// names; see permissions.go for which operation needs what. Topic
// permissions (topicperms.go) restrict the routing keys a user may
// publish with and bind to on topic exchanges; every adapter checks them
// through CheckTopicAccess. OAuth 2.0 access tokens (JWT, jwt.go) log in
// on every protocol as the password, their scopes (scopes.go) standing
// for the permissions; adapters check a connection through
// CheckerFor(the user Authenticate returned).
package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
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

// User is a broker user. A *User returned by Authenticate is a snapshot:
// later changes replace it rather than mutate it.
type User struct {
	Name string
	Tags []string
	// LoopbackOnly restricts logins to loopback addresses (RabbitMQ's
	// loopback_users, which holds guest by default).
	LoopbackOnly bool
	// Expires is when a token login's token expires (jwt.go); zero for a
	// password login.
	Expires time.Time
	// Info is a token login's "info" claim (JSON), if it has one: the
	// client's presence info on /ws. Nil for a password login.
	Info json.RawMessage

	cred  credential
	token *tokenGrant // the scopes of a token login; nil for a password login
}

// HasTag reports whether the user carries tag.
func (u *User) HasTag(tag string) bool { return u != nil && slices.Contains(u.Tags, tag) }

// PasswordHash is the user's password_hash in the definitions format: the
// bcrypt string, or RabbitMQ's base64 for an imported rabbit_* hash; ""
// for a user without a password. PutUserHash(name, PasswordHash(), "", ...)
// keeps the password as it is.
func (u *User) PasswordHash() string { return u.cred.encode() }

// HashingAlgorithm is the scheme of the user's PasswordHash.
func (u *User) HashingAlgorithm() string { return u.cred.algorithm() }

// Users is the user and permission database. Every method is safe for
// concurrent use.
type Users struct {
	mu    sync.RWMutex
	users map[string]*User
	// perms is user -> vhost -> compiled permissions; guarded by mu.
	perms map[string]map[string]*grant
	// topic is user -> vhost -> exchange -> compiled topic permissions
	// (topicperms.go); guarded by mu.
	topic map[string]map[string]map[string]*topicGrant
	// tokens verifies JWTs given as passwords (jwt.go); nil: none are.
	tokens atomic.Pointer[TokenVerifier]
	// gen counts changes, so that adapters can cache an allowed check
	// and notice a revocation with one atomic load.
	gen atomic.Uint64

	// loopback names the users restricted to loopback logins (RabbitMQ's
	// loopback_users); guarded by mu.
	loopback map[string]bool
	// cost is the bcrypt cost of new passwords.
	cost     atomic.Int32
	verified *verifiedCache

	hookMu   sync.Mutex
	onChange func()
}

// NewUsers returns an empty user database. Its loopback users are
// RabbitMQ's default, guest.
func NewUsers() *Users {
	u := &Users{users: make(map[string]*User), perms: make(map[string]map[string]*grant),
		topic:    make(map[string]map[string]map[string]*topicGrant),
		loopback: map[string]bool{"guest": true}, verified: newVerifiedCache()}
	u.cost.Store(DefaultBcryptCost)
	return u
}

// NewDefaultUsers returns a database with RabbitMQ's default user
// guest/guest: administrator, loopback only, all permissions on "/".
func NewDefaultUsers() *Users {
	u := NewUsers()
	u.PutDefaultUser("", "")
	return u
}

// guestHash is bcrypt("guest") at cost 10. The default user's password is
// public, so a salt of its own protects nothing, while hashing it afresh
// would cost every start (and every test that builds a database) 50 ms.
const guestHash = "$2a$10$FcEWiw2EbG/1fARkHE2YSeor9og0WNuttje5tFNMk.PJKCJXQMlQq"

// PutDefaultUser creates RabbitMQ's default user (default_user and
// default_pass, guest/guest when empty): administrator, all permissions on
// "/", loopback only if it is one of the loopback users.
func (u *Users) PutDefaultUser(name, password string) {
	if name == "" {
		name = "guest"
	}
	if password == "" {
		password = "guest"
	}
	var cred credential
	if password == "guest" {
		cred, _ = parseBcrypt(guestHash)
	} else {
		cred = newBcrypt(password, u.BcryptCost())
	}
	u.mu.RLock()
	loopback := u.loopback[name]
	u.mu.RUnlock()
	u.putFull(name, cred, password, loopback, []string{TagAdministrator})
}

// SetBcryptCost sets the bcrypt cost of passwords set from now on (existing
// hashes keep theirs). It is clamped to bcrypt's range, 4 to 31; tests use
// 4 (under a millisecond) where the default 10 takes about 50 ms.
func (u *Users) SetBcryptCost(cost int) {
	u.cost.Store(int32(min(max(cost, bcrypt.MinCost), bcrypt.MaxCost)))
}

// BcryptCost is the bcrypt cost of new passwords.
func (u *Users) BcryptCost() int { return int(u.cost.Load()) }

// SetLoopbackUsers sets the users that may log in only from a loopback
// address (RabbitMQ's loopback_users; the default is guest). "none" (or an
// empty list) restricts nobody, as RabbitMQ's loopback_users.guest = false.
// It applies to existing users at once and to users created later.
func (u *Users) SetLoopbackUsers(names []string) {
	set := make(map[string]bool)
	for _, n := range names {
		if n = strings.TrimSpace(n); n != "" && n != "none" {
			set[n] = true
		}
	}
	u.mu.Lock()
	u.loopback = set
	for name, usr := range u.users {
		if usr.LoopbackOnly != set[name] {
			cp := *usr // snapshots are never mutated
			cp.LoopbackOnly = set[name]
			u.users[name] = &cp
		}
	}
	u.mu.Unlock()
	u.changed()
}

// LoopbackUsers returns the names SetLoopbackUsers set, sorted.
func (u *Users) LoopbackUsers() []string {
	u.mu.RLock()
	out := make([]string, 0, len(u.loopback))
	for n := range u.loopback {
		out = append(out, n)
	}
	u.mu.RUnlock()
	sort.Strings(out)
	return out
}

// Put creates or replaces a user and gives it full permissions (.* .* .*)
// on the default vhost "/". It is the convenience for embedding and tests,
// where a user that can log in is meant to work; PutUser is RabbitMQ's
// add_user, which grants nothing.
func (u *Users) Put(name, password string, loopbackOnly bool, tags ...string) {
	u.putFull(name, newBcrypt(password, u.BcryptCost()), password, loopbackOnly, tags)
}

func (u *Users) putFull(name string, cred credential, password string, loopbackOnly bool, tags []string) {
	usr := newUser(name, loopbackOnly, tags)
	usr.cred = cred
	u.mu.Lock()
	u.users[name] = usr
	g, _ := compile(AllPermissions)
	u.setGrantLocked(name, "/", g)
	u.mu.Unlock()
	u.remember(name, cred, password)
	u.changed()
}

// remember seeds the verified-credentials cache with a password just set:
// it is known to match, and the first login should not pay bcrypt again.
func (u *Users) remember(name string, cred credential, password string) {
	u.verified.forget(name)
	if cred.algo == HashingBcrypt {
		u.verified.put(name, string(cred.sum), u.verified.key(password))
	}
}

// PutUser creates or replaces a user with a password, hashed with bcrypt.
// A new user has no permissions; a replaced one keeps its permissions and
// loopback flag.
func (u *Users) PutUser(name, password string, tags []string) {
	cred := newBcrypt(password, u.BcryptCost())
	u.putHashed(name, cred, tags)
	u.remember(name, cred, password)
}

// PutUserHash creates or replaces a user from a password_hash in the
// definitions format under algorithm, one of the Hashing* names; ""
// recognises the scheme from the hash itself (see parseHash). An empty
// hash creates a user that cannot log in with a password, as RabbitMQ.
func (u *Users) PutUserHash(name, hash, algorithm string, tags []string) error {
	cred, err := parseHash(hash, algorithm)
	if err != nil {
		return fmt.Errorf("user '%s': %w", name, err)
	}
	u.putHashed(name, cred, tags)
	return nil
}

func (u *Users) putHashed(name string, cred credential, tags []string) {
	u.mu.Lock()
	loopback := u.loopback[name]
	old, ok := u.users[name]
	if ok {
		loopback = old.LoopbackOnly
	}
	usr := newUser(name, loopback, tags)
	usr.cred = cred
	u.users[name] = usr
	u.mu.Unlock()
	if !ok || old.cred.encode() != cred.encode() {
		u.verified.forget(name) // a tags-only change keeps the entry
	}
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
	delete(u.topic, name)
	u.mu.Unlock()
	u.verified.forget(name)
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
// With a token verifier set (SetTokenVerifier), a password that looks
// like a JWT is verified as a token instead, as RabbitMQ's OAuth 2
// backend does: the name is then ignored, and the returned user is the
// token's (check its operations through CheckerFor).
func (u *Users) Authenticate(name, password string, remote net.Addr) (*User, error) {
	if u.tokens.Load() != nil && LooksLikeJWT(password) {
		return u.VerifyToken(password)
	}
	u.mu.RLock()
	usr, ok := u.users[name]
	u.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("user '%s': %w", name, ErrInvalidCredentials)
	}
	ok = false
	switch usr.cred.algo {
	case "":
		// No password: nothing logs in with one.
	case HashingBcrypt:
		ok = u.verified.verify(name, usr.cred, password)
	default:
		ok = usr.cred.verifyRabbit(password)
	}
	if !ok {
		return nil, fmt.Errorf("user '%s': %w", name, ErrInvalidCredentials)
	}
	if usr.LoopbackOnly && !isLoopback(remote) {
		return nil, fmt.Errorf("user '%s' from %v: %w", name, remote, ErrLoopbackOnly)
	}
	return usr, nil
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
