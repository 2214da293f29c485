package auth

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Topic permissions are RabbitMQ's topic authorisation: per user, vhost
// and topic exchange, a write and a read regular expression matched
// (unanchored, as every RabbitMQ permission) against routing keys.
//
//	basic.publish to a topic exchange     write on the message's routing key
//	queue.bind / exchange.bind from a     read on the binding key
//	topic exchange
//	MQTT PUBLISH / SUBSCRIBE              write / read on the topic as a key
//	                                      ("a/b/+" is "a.b.*")
//	STOMP SEND / SUBSCRIBE to /topic/k    write / read on k (amq.topic)
//	web publish / subscribe               write / read on the key
//
// A user without an entry for an exchange is not restricted on it, as in
// RabbitMQ. The patterns may name {username}, {vhost} and {client_id};
// each is replaced by the connection's value, regexp-quoted, before the
// match (a variable the connection has no value for stays as written, as
// RabbitMQ leaves it). {client_id} is the MQTT client identifier; other
// protocols have none (RabbitMQ sets it for MQTT only).

// TopicPermissions are one exchange's topic permissions.
type TopicPermissions struct {
	Exchange string `json:"exchange"`
	Write    string `json:"write"`
	Read     string `json:"read"`
}

// TopicPermissionEntry is a user's topic permissions on one exchange of
// one vhost, in the shape of RabbitMQ's definitions (topic_permissions)
// and management API.
type TopicPermissionEntry struct {
	User  string `json:"user"`
	VHost string `json:"vhost"`
	TopicPermissions
}

// TopicVars are the values of a connection that topic patterns may name
// beside {username} and {vhost}.
type TopicVars struct {
	// ClientID is the MQTT client identifier; empty for other protocols,
	// where {client_id} then stays unexpanded.
	ClientID string
}

// topicVarNames are the variables a pattern may name.
var topicVarNames = [...]string{"{username}", "{vhost}", "{client_id}"}

// topicPattern is one compiled write or read pattern. A pattern without
// variables is compiled once; one with variables is compiled per
// distinct expansion (usually one per user, or per MQTT client id), and
// the results are kept in a small cache.
type topicPattern struct {
	src    string
	static *regexp.Regexp // no variables; nil matches nothing when empty

	mu    sync.Mutex
	cache map[expansion]*regexp.Regexp
}

// expansion is the values a pattern was expanded with: the cache key, so
// that a hit costs neither the expansion nor an allocation.
type expansion struct{ user, vhost, clientID string }

// maxTopicCache bounds the per-pattern cache of expansions; past it the
// cache starts over (a pattern naming {client_id} sees one expansion per
// client).
const maxTopicCache = 1024

// placeholder stands for a variable when a pattern is checked at PUT
// time: values are regexp-quoted, so any literal checks the same syntax.
const placeholder = "v"

func compileTopicPattern(field, src string) (*topicPattern, error) {
	if src == "" {
		src = "^$" // RabbitMQ: the empty pattern allows only the empty key
	}
	p := &topicPattern{src: src}
	if !hasTopicVar(src) {
		re, err := regexp.Compile(src)
		if err != nil {
			return nil, fmt.Errorf("invalid %s pattern %q: %w", field, src, err)
		}
		p.static = re
		return p, nil
	}
	check := src
	for _, v := range topicVarNames {
		check = strings.ReplaceAll(check, v, placeholder)
	}
	if _, err := regexp.Compile(check); err != nil {
		return nil, fmt.Errorf("invalid %s pattern %q: %w", field, src, err)
	}
	p.cache = make(map[expansion]*regexp.Regexp)
	return p, nil
}

func hasTopicVar(s string) bool {
	for _, v := range topicVarNames {
		if strings.Contains(s, v) {
			return true
		}
	}
	return false
}

// ExpandTopicPattern replaces {username}, {vhost} and {client_id} in
// pattern by their values, quoted for a regular expression; an empty
// ClientID leaves {client_id} as written.
func ExpandTopicPattern(pattern, user, vhost string, vars TopicVars) string {
	if !strings.Contains(pattern, "{") {
		return pattern
	}
	pairs := []string{"{username}", regexp.QuoteMeta(user), "{vhost}", regexp.QuoteMeta(vhost)}
	if vars.ClientID != "" {
		pairs = append(pairs, "{client_id}", regexp.QuoteMeta(vars.ClientID))
	}
	return strings.NewReplacer(pairs...).Replace(pattern)
}

func (p *topicPattern) matches(key, user, vhost string, vars TopicVars) bool {
	if p.static != nil {
		return p.static.MatchString(key)
	}
	k := expansion{user, vhost, vars.ClientID}
	p.mu.Lock()
	re, ok := p.cache[k]
	p.mu.Unlock()
	if !ok {
		var err error
		if re, err = regexp.Compile(ExpandTopicPattern(p.src, user, vhost, vars)); err != nil {
			return false // a value that breaks it (say "z-a" inside [...]) refuses
		}
		p.mu.Lock()
		if len(p.cache) >= maxTopicCache {
			clear(p.cache)
		}
		p.cache[k] = re
		p.mu.Unlock()
	}
	return re.MatchString(key)
}

// topicGrant is TopicPermissions compiled at SetTopicPermissions.
type topicGrant struct {
	p           TopicPermissions
	write, read *topicPattern
}

func compileTopic(p TopicPermissions) (*topicGrant, error) {
	w, err := compileTopicPattern("write", p.Write)
	if err != nil {
		return nil, err
	}
	r, err := compileTopicPattern("read", p.Read)
	if err != nil {
		return nil, err
	}
	return &topicGrant{p: p, write: w, read: r}, nil
}

// ErrInvalidTopicPattern wraps a write or read pattern that does not
// compile; the text names the field.
var ErrInvalidTopicPattern = errors.New("invalid topic permission")

// SetTopicPermissions gives user the topic permissions p on p.Exchange in
// vhost, replacing that exchange's entry; it reports whether one existed.
// The patterns are compiled here, so a bad one is refused at once. The
// user must exist; vhost and exchange are not checked (the broker owns
// them, and RabbitMQ 3.x accepted entries for exchanges declared later).
func (u *Users) SetTopicPermissions(user, vhost string, p TopicPermissions) (replaced bool, err error) {
	g, err := compileTopic(p)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrInvalidTopicPattern, err)
	}
	u.mu.Lock()
	if _, ok := u.users[user]; !ok {
		u.mu.Unlock()
		return false, fmt.Errorf("user '%s': %w", user, ErrNoSuchUser)
	}
	byVHost := u.topic[user]
	if byVHost == nil {
		byVHost = make(map[string]map[string]*topicGrant)
		u.topic[user] = byVHost
	}
	byExchange := byVHost[vhost]
	if byExchange == nil {
		byExchange = make(map[string]*topicGrant)
		byVHost[vhost] = byExchange
	}
	_, replaced = byExchange[p.Exchange]
	byExchange[p.Exchange] = g
	u.mu.Unlock()
	u.changed()
	return replaced, nil
}

// ClearTopicPermissions removes user's topic permissions in vhost: on
// exchange only, or on every exchange when exchange is nil. It reports
// whether anything was removed.
func (u *Users) ClearTopicPermissions(user, vhost string, exchange *string) bool {
	u.mu.Lock()
	byExchange := u.topic[user][vhost]
	n := len(byExchange)
	if exchange == nil {
		delete(u.topic[user], vhost)
	} else {
		delete(byExchange, *exchange)
		if len(byExchange) == 0 {
			delete(u.topic[user], vhost)
		}
		n -= len(byExchange)
	}
	u.mu.Unlock()
	if n > 0 {
		u.changed()
	}
	return n > 0
}

// clearVHostTopicLocked drops every topic permission in vhost; it reports
// how many users had some.
func (u *Users) clearVHostTopicLocked(vhost string) int {
	n := 0
	for _, m := range u.topic {
		if _, ok := m[vhost]; ok {
			delete(m, vhost)
			n++
		}
	}
	return n
}

// ListTopicPermissions returns every topic permission entry sorted by
// vhost, user, exchange.
func (u *Users) ListTopicPermissions() []TopicPermissionEntry {
	u.mu.RLock()
	var out []TopicPermissionEntry
	for user, byVHost := range u.topic {
		for vhost, byExchange := range byVHost {
			for _, g := range byExchange {
				out = append(out, TopicPermissionEntry{User: user, VHost: vhost, TopicPermissions: g.p})
			}
		}
	}
	u.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.VHost != b.VHost {
			return a.VHost < b.VHost
		}
		if a.User != b.User {
			return a.User < b.User
		}
		return a.Exchange < b.Exchange
	})
	return out
}

// CheckTopic refuses kind (Write or Read) on the routing or binding key
// of a message published to, or a queue bound to, the topic exchange
// exchange in vhost, when user has topic permissions on that exchange and
// the expanded pattern does not match. Callers check the exchange is of
// type topic; RabbitMQ checks no other type.
func (u *Users) CheckTopic(user, vhost string, kind Kind, exchange, key string, vars TopicVars) error {
	u.mu.RLock()
	g, ok := u.topic[user][vhost][exchange]
	u.mu.RUnlock()
	if !ok {
		return nil
	}
	p := g.write
	if kind == Read {
		p = g.read
	}
	if kind != Configure && p.matches(key, user, vhost, vars) {
		return nil
	}
	return topicRefusal(user, vhost, kind, exchange, key)
}

// topicRefusal is RabbitMQ's text for a refused topic check.
func topicRefusal(user, vhost string, kind Kind, exchange, key string) error {
	return &AccessError{Text: fmt.Sprintf("%s access to topic '%s' in exchange '%s' in vhost '%s' refused for user '%s'",
		kind, key, exchange, vhost, user)}
}

// ExchangeTopic is the type name of a topic exchange, the only type
// RabbitMQ checks topic permissions on.
const ExchangeTopic = "topic"

// CheckTopicAccess is the topic check every adapter makes, through the
// connection's Checker, before a publish to (kind Write, the routing key)
// or a bind to (kind Read, the binding key) exchange in vhost. kindOf
// returns the exchange's type; it is asked only when the check refuses,
// so that a publish by an unrestricted user costs no exchange lookup. A
// refusal on an exchange that is not a topic exchange is dropped, as
// RabbitMQ checks topic exchanges only.
func CheckTopicAccess(c Checker, user, vhost string, kind Kind, exchange, key string, vars TopicVars, kindOf func(exchange string) string) error {
	err := c.CheckTopic(user, vhost, kind, exchange, key, vars)
	if err != nil && kindOf != nil && kindOf(exchange) != ExchangeTopic {
		return nil
	}
	return err
}

// HasTopicPermissions reports whether user has topic permissions on
// exchange in vhost, so that a hot path (every MQTT PUBLISH) can skip
// building the key for a user who is not restricted; cache it with
// Generation.
func (u *Users) HasTopicPermissions(user, vhost, exchange string) bool {
	u.mu.RLock()
	_, ok := u.topic[user][vhost][exchange]
	u.mu.RUnlock()
	return ok
}
