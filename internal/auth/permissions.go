package auth

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
)

// Kind is one of the three permissions of RabbitMQ's access control.
//
// Which operation needs which (RabbitMQ's "Access Control" table):
//
//	exchange.declare        configure on the exchange (none when passive);
//	                        with an alternate-exchange also write on the AE
//	                        and read on the exchange
//	exchange.delete         configure on the exchange
//	queue.declare           configure on the queue (none when passive; a
//	                        server-named queue is checked under its amq.gen-
//	                        name); with a dead-letter-exchange also write on
//	                        the DLX and read on the queue
//	queue.delete            configure on the queue
//	queue.purge             read on the queue
//	queue.bind / unbind     write on the queue, read on the exchange
//	exchange.bind / unbind  write on the destination, read on the source
//	basic.publish           write on the exchange (the default exchange is
//	                        the resource "amq.default")
//	basic.consume / get     read on the queue
type Kind uint8

// The permission kinds.
const (
	Configure Kind = iota
	Write
	Read
)

func (k Kind) String() string {
	switch k {
	case Configure:
		return "configure"
	case Write:
		return "write"
	case Read:
		return "read"
	}
	return "unknown"
}

// Resource is the type of a resource named in a permission check; it only
// shapes the refusal text.
type Resource uint8

// Resource types.
const (
	Queue Resource = iota
	Exchange
)

func (r Resource) String() string {
	if r == Exchange {
		return "exchange"
	}
	return "queue"
}

// DefaultExchangeResource is the name the default exchange "" is checked
// under, as in RabbitMQ.
const DefaultExchangeResource = "amq.default"

// ErrAccessRefused is wrapped by every refusal of Check and CheckVHost.
var ErrAccessRefused = errors.New("access refused")

// AccessError is a refusal; its text is RabbitMQ's, which adapters send
// to clients as is.
type AccessError struct{ Text string }

func (e *AccessError) Error() string        { return e.Text }
func (e *AccessError) Is(target error) bool { return target == ErrAccessRefused }

// Permissions are three regular expressions matched (unanchored, as
// RabbitMQ's re:run) against resource names. The empty string matches
// nothing (RabbitMQ treats "" as "^$").
type Permissions struct {
	Configure string `json:"configure"`
	Write     string `json:"write"`
	Read      string `json:"read"`
}

// AllPermissions grants everything.
var AllPermissions = Permissions{Configure: ".*", Write: ".*", Read: ".*"}

// grant is Permissions compiled once, at SetPermissions.
type grant struct {
	p  Permissions
	re [3]*regexp.Regexp // indexed by Kind; nil matches nothing
}

func compile(p Permissions) (*grant, error) {
	g := &grant{p: p}
	for k, src := range [3]string{p.Configure, p.Write, p.Read} {
		if src == "" || src == "^$" {
			continue
		}
		re, err := regexp.Compile(src)
		if err != nil {
			return nil, fmt.Errorf("invalid %s permission %q: %w", Kind(k), src, err)
		}
		g.re[k] = re
	}
	return g, nil
}

func (g *grant) allows(k Kind, name string) bool {
	re := g.re[k]
	return re != nil && re.MatchString(name)
}

// SetPermissions gives user the permissions p in vhost (replacing any).
// The user must exist; the vhost is not checked (the broker owns vhosts).
func (u *Users) SetPermissions(user, vhost string, p Permissions) error {
	g, err := compile(p)
	if err != nil {
		return err
	}
	u.mu.Lock()
	if _, ok := u.users[user]; !ok {
		u.mu.Unlock()
		return fmt.Errorf("user '%s': %w", user, ErrNoSuchUser)
	}
	u.setGrantLocked(user, vhost, g)
	u.mu.Unlock()
	u.changed()
	return nil
}

func (u *Users) setGrantLocked(user, vhost string, g *grant) {
	m := u.perms[user]
	if m == nil {
		m = make(map[string]*grant)
		u.perms[user] = m
	}
	m[vhost] = g
}

// ClearPermissions removes user's permissions in vhost; it reports
// whether there were any.
func (u *Users) ClearPermissions(user, vhost string) bool {
	u.mu.Lock()
	_, ok := u.perms[user][vhost]
	delete(u.perms[user], vhost)
	u.mu.Unlock()
	if ok {
		u.changed()
	}
	return ok
}

// ClearVHostPermissions removes every permission and topic permission in
// vhost (the vhost was deleted).
func (u *Users) ClearVHostPermissions(vhost string) {
	u.mu.Lock()
	n := u.clearVHostTopicLocked(vhost)
	for _, m := range u.perms {
		if _, ok := m[vhost]; ok {
			delete(m, vhost)
			n++
		}
	}
	u.mu.Unlock()
	if n > 0 {
		u.changed()
	}
}

// Permissions returns user's permissions in vhost.
func (u *Users) Permissions(user, vhost string) (Permissions, bool) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	g, ok := u.perms[user][vhost]
	if !ok {
		return Permissions{}, false
	}
	return g.p, true
}

// PermissionEntry is one user's permissions in one vhost, in the shape of
// RabbitMQ's definitions and management API.
type PermissionEntry struct {
	User  string `json:"user"`
	VHost string `json:"vhost"`
	Permissions
}

// ListPermissions returns every permission entry sorted by vhost, user.
func (u *Users) ListPermissions() []PermissionEntry {
	u.mu.RLock()
	var out []PermissionEntry
	for user, m := range u.perms {
		for vhost, g := range m {
			out = append(out, PermissionEntry{User: user, VHost: vhost, Permissions: g.p})
		}
	}
	u.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].VHost != out[j].VHost {
			return out[i].VHost < out[j].VHost
		}
		return out[i].User < out[j].User
	})
	return out
}

// CheckVHost refuses a user without permissions in vhost (AMQP answers
// connection.open with 530 NOT_ALLOWED and this text).
func (u *Users) CheckVHost(user, vhost string) error {
	u.mu.RLock()
	_, ok := u.perms[user][vhost]
	u.mu.RUnlock()
	if !ok {
		return &AccessError{Text: fmt.Sprintf("access to vhost '%s' refused for user '%s'", vhost, user)}
	}
	return nil
}

// Check refuses an operation that needs permission kind on the resource
// name of type res in vhost. It is a read-locked map lookup and one
// precompiled regexp match; adapters on hot paths cache an allowed name
// together with Generation.
func (u *Users) Check(user, vhost string, kind Kind, res Resource, name string) error {
	u.mu.RLock()
	g, ok := u.perms[user][vhost]
	u.mu.RUnlock()
	if ok && g.allows(kind, name) {
		return nil
	}
	return &AccessError{Text: fmt.Sprintf("%s access to %s '%s' in vhost '%s' refused for user '%s'", kind, res, name, vhost, user)}
}

// ExchangeResource is the name an exchange is checked under.
func ExchangeResource(name string) string {
	if name == "" {
		return DefaultExchangeResource
	}
	return name
}
