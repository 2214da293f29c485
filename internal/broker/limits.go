package broker

import (
	"maps"
	"sort"
	"sync"
	"time"
)

// Limits, as RabbitMQ names them. Vhost limits are "max-connections" and
// "max-queues"; the user limit is "max-connections". As in RabbitMQ, a
// negative value means "no limit" and 0 forbids (connections or queue
// declarations); the global limit (--max-connections) is 0 for none.
const (
	LimitMaxConnections = "max-connections"
	LimitMaxQueues      = "max-queues"
)

// limitState holds the limit values and the number of admitted
// connections they are checked against. Its mutex is a leaf: it is taken
// under VHost.mu (queue declarations) and nothing is locked under it.
type limitState struct {
	mu       sync.Mutex
	maxConns int
	vhost    map[string]map[string]int
	user     map[string]map[string]int
	total    int
	perVHost map[string]int
	perUser  map[string]int
}

// SetMaxConnections sets the broker-wide connection limit; 0 or less
// lifts it.
func (b *Broker) SetMaxConnections(n int) {
	l := &b.conns.lim
	l.mu.Lock()
	l.maxConns = max(n, 0)
	l.mu.Unlock()
}

// MaxConnections is the broker-wide connection limit, 0 for none.
func (b *Broker) MaxConnections() int {
	l := &b.conns.lim
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.maxConns
}

func validLimit(kind, name string) error {
	switch {
	case name == LimitMaxConnections:
		return nil
	case name == LimitMaxQueues && kind == "vhost":
		return nil
	}
	return errorf(CodePreconditionFailed, "unknown %s limit '%s'", kind, name)
}

func setLimit(m *map[string]map[string]int, key, name string, value int) {
	if *m == nil {
		*m = make(map[string]map[string]int)
	}
	if (*m)[key] == nil {
		(*m)[key] = make(map[string]int)
	}
	(*m)[key][name] = value
}

func clearLimit(m map[string]map[string]int, key, name string) {
	delete(m[key], name)
	if len(m[key]) == 0 {
		delete(m, key)
	}
}

// SetVHostLimit sets the vhost limit name ("max-connections" or
// "max-queues") of vhost; the vhost need not exist yet (definitions may
// be imported in any order). Existing connections and queues are kept.
func (b *Broker) SetVHostLimit(vhost, name string, value int) error {
	if err := validLimit("vhost", name); err != nil {
		return err
	}
	l := &b.conns.lim
	l.mu.Lock()
	setLimit(&l.vhost, vhost, name, value)
	l.mu.Unlock()
	b.changed(true)
	return nil
}

// ClearVHostLimit removes a vhost limit; name "" removes them all.
func (b *Broker) ClearVHostLimit(vhost, name string) {
	l := &b.conns.lim
	l.mu.Lock()
	if name == "" {
		delete(l.vhost, vhost)
	} else {
		clearLimit(l.vhost, vhost, name)
	}
	l.mu.Unlock()
	b.changed(true)
}

// SetUserLimit sets the user limit name ("max-connections") of user.
func (b *Broker) SetUserLimit(user, name string, value int) error {
	if err := validLimit("user", name); err != nil {
		return err
	}
	l := &b.conns.lim
	l.mu.Lock()
	setLimit(&l.user, user, name, value)
	l.mu.Unlock()
	b.changed(true)
	return nil
}

// ClearUserLimit removes a user limit; name "" removes them all.
func (b *Broker) ClearUserLimit(user, name string) {
	l := &b.conns.lim
	l.mu.Lock()
	if name == "" {
		delete(l.user, user)
	} else {
		clearLimit(l.user, user, name)
	}
	l.mu.Unlock()
	b.changed(true)
}

// LimitEntry is one object's limits, as the management API lists them.
type LimitEntry struct {
	Name   string         // the vhost or user
	Limits map[string]int // e.g. {"max-connections": 10}
}

func snapshotLimits(m map[string]map[string]int) []LimitEntry {
	out := make([]LimitEntry, 0, len(m))
	for k, v := range m {
		out = append(out, LimitEntry{Name: k, Limits: maps.Clone(v)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// VHostLimits lists the vhosts that have limits, by name.
func (b *Broker) VHostLimits() []LimitEntry {
	l := &b.conns.lim
	l.mu.Lock()
	defer l.mu.Unlock()
	return snapshotLimits(l.vhost)
}

// UserLimits lists the users that have limits, by name.
func (b *Broker) UserLimits() []LimitEntry {
	l := &b.conns.lim
	l.mu.Lock()
	defer l.mu.Unlock()
	return snapshotLimits(l.user)
}

// limitOf returns the limit and whether it is set and enforced (>= 0).
func limitOf(m map[string]map[string]int, key, name string) (int, bool) {
	n, ok := m[key][name]
	return n, ok && n >= 0
}

// checkConnLocked is CheckConnectionLimits with l.mu held.
func (l *limitState) checkConnLocked(user, vhost string) error {
	if l.maxConns > 0 && l.total >= l.maxConns {
		return errorf(CodeNotAllowed, "access to vhost '%s' refused for user '%s': the server's connection limit (%d) is reached", vhost, user, l.maxConns)
	}
	if n, ok := limitOf(l.vhost, vhost, LimitMaxConnections); ok && l.perVHost[vhost] >= n {
		return errorf(CodeNotAllowed, "access to vhost '%s' refused for user '%s': connection limit (%d) is reached", vhost, user, n)
	}
	if n, ok := limitOf(l.user, user, LimitMaxConnections); ok && l.perUser[user] >= n {
		return errorf(CodeNotAllowed, "access to vhost '%s' refused for user '%s': user connection limit (%d) is reached", vhost, user, n)
	}
	return nil
}

// CheckConnectionLimits reports whether a login of user to vhost would be
// within the global, vhost and user connection limits: nil, or a 530
// NOT_ALLOWED *Error with RabbitMQ's wording. It only looks; adapters
// call AdmitConnection, which checks and counts atomically.
func (b *Broker) CheckConnectionLimits(user, vhost string) error {
	l := &b.conns.lim
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.checkConnLocked(user, vhost)
}

// AdmitConnection checks the connection limits (see CheckConnectionLimits)
// for a login of user to vhost and, if they allow it, counts the
// connection until release (idempotent) is called when it ends. Every
// adapter calls it once the client is authenticated and its vhost known,
// before it reports the login as successful.
func (b *Broker) AdmitConnection(user, vhost string) (release func(), err error) {
	l := &b.conns.lim
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.checkConnLocked(user, vhost); err != nil {
		return nil, err
	}
	if l.perVHost == nil {
		l.perVHost, l.perUser = make(map[string]int), make(map[string]int)
	}
	l.total++
	l.perVHost[vhost]++
	l.perUser[user]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.total--
			if l.perVHost[vhost]--; l.perVHost[vhost] <= 0 {
				delete(l.perVHost, vhost)
			}
			if l.perUser[user]--; l.perUser[user] <= 0 {
				delete(l.perUser, user)
			}
		})
	}, nil
}

// checkQueueLimitLocked refuses a new queue beyond the vhost's max-queues
// limit; DeclareQueue calls it with v.mu held, for new queues only.
func (v *VHost) checkQueueLimitLocked(name string) error {
	l := &v.broker.conns.lim
	l.mu.Lock()
	n, ok := limitOf(l.vhost, v.name, LimitMaxQueues)
	l.mu.Unlock()
	if ok && len(v.queues) >= n {
		return errorf(CodePreconditionFailed, "cannot declare queue '%s': queue limit in vhost '%s' (%d) is reached", name, v.name, n)
	}
	return nil
}

// PublishLimiter is a per-connection token bucket for --max-publish-rate:
// rate messages a second, with a burst of one second's worth. It is not
// safe for concurrent use: each connection's read loop owns one. A nil
// *PublishLimiter never waits, so adapters need no check on the hot path.
type PublishLimiter struct {
	rate, tokens float64
	last         time.Time
	now          func() time.Time
}

// NewPublishLimiter returns a limiter of rate messages a second on the
// wall clock, or nil (no limit) when rate <= 0. Broker.NewPublishLimiter
// is the same on the broker's clock.
func NewPublishLimiter(rate int) *PublishLimiter { return newPublishLimiter(rate, time.Now) }

// NewPublishLimiter returns a limiter of rate messages a second on the
// broker's clock (Options.Now), or nil (no limit) when rate <= 0.
func (b *Broker) NewPublishLimiter(rate int) *PublishLimiter { return newPublishLimiter(rate, b.now) }

func newPublishLimiter(rate int, now func() time.Time) *PublishLimiter {
	if rate <= 0 {
		return nil
	}
	return &PublishLimiter{rate: float64(rate), tokens: float64(rate), last: now(), now: now}
}

// Wait takes a token for one publish, sleeping until one is available:
// the caller is the connection's read loop, so sleeping there stops
// reading from the client (TCP push-back) rather than dropping anything.
// It returns false, without a token, when stop closes first.
func (l *PublishLimiter) Wait(stop <-chan struct{}) bool {
	if l == nil {
		return true
	}
	now := l.now()
	l.tokens = min(l.rate, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return true
	}
	wait := time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
		return false
	}
	// The token that accrued while we slept is this publish's.
	l.last = l.now()
	l.tokens = 0
	return true
}

// Throttled reports whether the next Wait would sleep.
func (l *PublishLimiter) Throttled() bool {
	if l == nil {
		return false
	}
	return l.tokens+l.now().Sub(l.last).Seconds()*l.rate < 1
}

// Take takes a token for one publish if one is available, without
// waiting; otherwise it reports how long until one will be. Adapters that
// must answer rather than push back (HTTP: 429 with Retry-After) use it.
// Like Wait it is not safe for concurrent use; a nil limiter always
// allows.
func (l *PublishLimiter) Take() (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	now := l.now()
	l.tokens = min(l.rate, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return true, 0
	}
	return false, time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
}

// Idle reports whether the bucket has refilled completely, so that the
// limiter is as good as a new one and a holder of many may drop it.
func (l *PublishLimiter) Idle() bool {
	if l == nil {
		return true
	}
	return l.tokens+l.now().Sub(l.last).Seconds()*l.rate >= l.rate
}
