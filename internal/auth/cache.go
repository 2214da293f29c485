package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// VerifiedTTL is how long a successful bcrypt login is remembered.
const VerifiedTTL = 5 * time.Minute

// verifiedCache remembers, per user, the last password that passed the
// bcrypt check, so that connection storms (a benchmark opening thousands
// of connections, clients reconnecting after a restart) cost a SHA-256
// each instead of 50 ms of CPU each.
//
// It holds SHA-256(pepper || password), where pepper is random per Users
// (so per process) and never leaves memory: the entry is useless outside
// this process, and the bcrypt hash stays what protects a stolen
// definitions file. An entry is bound to the bcrypt hash it was verified
// against, so a changed password (new hash) misses even before the entry
// is dropped; a deleted or changed user drops it. Only successes are
// stored: a wrong password always pays the full bcrypt check, so the
// cache does not help guessing. It has at most one entry per user.
type verifiedCache struct {
	pepper [32]byte
	ttl    time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]verified
	// flights coalesces concurrent checks of the same user, hash and
	// password: a storm of N identical logins against a cold cache runs
	// bcrypt once, not N times.
	flights map[flightKey]*flight
	// checks counts real bcrypt comparisons, for tests.
	checks atomic.Int64
}

type verified struct {
	hash    string // the bcrypt string the password was checked against
	key     [32]byte
	expires time.Time
}

type flightKey struct {
	user, hash string
	key        [32]byte
}

type flight struct {
	done chan struct{}
	ok   bool
}

func newVerifiedCache() *verifiedCache {
	c := &verifiedCache{ttl: VerifiedTTL, now: time.Now,
		entries: make(map[string]verified), flights: make(map[flightKey]*flight)}
	_, _ = rand.Read(c.pepper[:])
	return c
}

func (c *verifiedCache) key(password string) [32]byte {
	h := sha256.New()
	h.Write(c.pepper[:])
	h.Write([]byte(password))
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// hit reports whether password was verified against hash recently.
func (c *verifiedCache) hit(user, hash string, key [32]byte) bool {
	c.mu.Lock()
	e, ok := c.entries[user]
	c.mu.Unlock()
	return ok && e.hash == hash && c.now().Before(e.expires) &&
		subtle.ConstantTimeCompare(e.key[:], key[:]) == 1
}

func (c *verifiedCache) put(user, hash string, key [32]byte) {
	c.mu.Lock()
	c.entries[user] = verified{hash: hash, key: key, expires: c.now().Add(c.ttl)}
	c.mu.Unlock()
}

func (c *verifiedCache) forget(user string) {
	c.mu.Lock()
	delete(c.entries, user)
	c.mu.Unlock()
}

func (c *verifiedCache) clear() {
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}

// verify checks password against cred (bcrypt): from the cache when it
// was verified recently, else with bcrypt, sharing one check among
// concurrent identical logins.
func (c *verifiedCache) verify(user string, cred credential, password string) bool {
	hash := string(cred.sum)
	if hash == guestHash {
		// The built-in guest hash is bcrypt of the public password
		// "guest": comparing with that needs no bcrypt. A restarted
		// broker reads it back from its definitions with a cold cache,
		// and guest's first login would pay bcrypt (50 ms; seconds under
		// the race detector on a busy machine, longer than a client's
		// connect timeout).
		return subtle.ConstantTimeCompare([]byte(password), []byte("guest")) == 1
	}
	key := c.key(password)
	if c.hit(user, hash, key) {
		return true
	}
	fk := flightKey{user: user, hash: hash, key: key}
	c.mu.Lock()
	if e, ok := c.entries[user]; ok && e.hash == hash && c.now().Before(e.expires) &&
		subtle.ConstantTimeCompare(e.key[:], key[:]) == 1 {
		// A flight for this password finished between hit and here.
		c.mu.Unlock()
		return true
	}
	if f, ok := c.flights[fk]; ok {
		c.mu.Unlock()
		<-f.done
		return f.ok
	}
	f := &flight{done: make(chan struct{})}
	c.flights[fk] = f
	c.mu.Unlock()

	c.checks.Add(1)
	f.ok = bcrypt.CompareHashAndPassword(cred.sum, bcryptInput(password)) == nil
	c.mu.Lock()
	delete(c.flights, fk)
	if f.ok {
		c.entries[user] = verified{hash: hash, key: key, expires: c.now().Add(c.ttl)}
	}
	c.mu.Unlock()
	close(f.done)
	return f.ok
}
