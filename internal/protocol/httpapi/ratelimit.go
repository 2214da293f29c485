package httpapi

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/heraldmq/herald/internal/broker"
)

// --max-publish-rate over HTTP. A /ws socket is a connection like an AMQP
// one and gets its own broker.PublishLimiter, which slows its reader down
// (ws.go). Plain HTTP publishes (POST /api/exchanges/{vhost}/{e}/publish
// and POST /v1/publish/...) have no connection: they share one token
// bucket per authenticated user, because a user is what the operator
// grants rights and limits to (RabbitMQ's user limits, NATS's per-account
// limits) and a client address is not one client behind NAT or a proxy.
// Beyond the rate a request is not held (that would tie up a server
// goroutine per waiting request) but answered 429 Too Many Requests with
// Retry-After, as HTTP clients and proxies expect.

// publishLimits holds the per-user buckets of the HTTP publish endpoints.
type publishLimits struct {
	rate int // messages a second; 0: no limit (nil *publishLimits)

	mu      sync.Mutex // guards byUser and the limiters in it
	byUser  map[string]*broker.PublishLimiter
	sweepAt int // len(byUser) at which idle buckets are dropped
}

// minSweep is the number of buckets kept before idle ones are dropped.
const minSweep = 1024

func newPublishLimits(rate int) *publishLimits {
	if rate <= 0 {
		return nil
	}
	return &publishLimits{rate: rate, byUser: make(map[string]*broker.PublishLimiter), sweepAt: minSweep}
}

// take takes a token of user's bucket, or says how long until one.
func (p *publishLimits) take(user string) (bool, time.Duration) {
	if p == nil {
		return true, 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.byUser[user]
	if !ok {
		if len(p.byUser) >= p.sweepAt {
			p.sweepLocked()
		}
		l = broker.NewPublishLimiter(p.rate)
		p.byUser[user] = l
	}
	return l.Take()
}

// sweepLocked drops the buckets that have refilled (as good as new), so
// that the map holds only users who published within the last second
// or so; the threshold doubles with what stays.
func (p *publishLimits) sweepLocked() {
	for u, l := range p.byUser {
		if l.Idle() {
			delete(p.byUser, u)
		}
	}
	p.sweepAt = max(minSweep, 2*len(p.byUser))
}

// allowPublish takes a publish token for the request's user, or answers
// 429 with Retry-After (whole seconds, at least 1) and reports false.
func (s *Server) allowPublish(w http.ResponseWriter, r *http.Request) bool {
	ok, wait := s.pubLimits.take(userOf(r).Name)
	if ok {
		return true
	}
	secs := max(1, int(math.Ceil(wait.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusTooManyRequests, "too_many_requests",
		fmt.Sprintf("publish rate limit of %d messages a second per user exceeded (--max-publish-rate); retry after %d s", s.pubLimits.rate, secs))
	return false
}
