package broker

import (
	"regexp"
	"sort"
)

// Policy applies settings to every queue whose name matches Pattern, as
// RabbitMQ's policies do. Queue arguments win over policy keys.
type Policy struct {
	Name     string
	Pattern  string // a regular expression matched against queue names
	ApplyTo  string // "queues" (default), "exchanges" or "all"
	Priority int    // the highest-priority matching policy applies
	// Definition keys: message-ttl, expires, max-length, max-length-bytes,
	// overflow, dead-letter-exchange, dead-letter-routing-key,
	// delivery-limit, consumer-timeout.
	Definition Table

	re *regexp.Regexp
}

const (
	applyToQueues    = "queues"
	applyToExchanges = "exchanges"
	applyToAll       = "all"
)

var policyKeys = map[string]bool{
	"message-ttl": true, "expires": true, "max-length": true, "max-length-bytes": true,
	"overflow": true, "dead-letter-exchange": true, "dead-letter-routing-key": true,
	"delivery-limit": true, "consumer-timeout": true,
}

// PutPolicy creates or replaces a policy and applies it at once to the
// queues it matches.
func (v *VHost) PutPolicy(p Policy) error {
	_, err := v.run(PutPolicy{VHost: v.name, Name: p.Name, Pattern: p.Pattern, ApplyTo: p.ApplyTo, Priority: p.Priority, Definition: p.Definition})
	return err
}

func (v *VHost) applyPutPolicy(c PutPolicy) error {
	p := Policy{Name: c.Name, Pattern: c.Pattern, ApplyTo: c.ApplyTo, Priority: c.Priority, Definition: Table(c.Definition)}
	if p.Name == "" {
		return errorf(CodePreconditionFailed, "a policy needs a name")
	}
	if p.ApplyTo == "" {
		p.ApplyTo = applyToQueues
	}
	switch p.ApplyTo {
	case applyToQueues, applyToExchanges, applyToAll:
	default:
		return errorf(CodePreconditionFailed, "policy '%s': apply-to must be queues, exchanges or all, not '%s'", p.Name, p.ApplyTo)
	}
	re, err := regexp.Compile(p.Pattern)
	if err != nil {
		return errorf(CodePreconditionFailed, "policy '%s': invalid pattern '%s': %v", p.Name, p.Pattern, err)
	}
	p.re = re
	var probe queueConfig
	for k, val := range p.Definition {
		if !policyKeys[k] {
			return errorf(CodePreconditionFailed, "policy '%s': unknown definition key '%s'", p.Name, k)
		}
		if err := applyQueueSetting(&probe, k, val, "policy key"); err != nil {
			return err
		}
	}
	v.mu.Lock()
	v.policies[p.Name] = &p
	changes := v.policyChangesLocked()
	v.mu.Unlock()
	applyPolicies(changes)
	v.broker.changed(true)
	return nil
}

// DeletePolicy removes a policy; the queues it applied to fall back to
// their arguments (or the next matching policy).
func (v *VHost) DeletePolicy(name string) error {
	_, err := v.run(DeletePolicy{VHost: v.name, Name: name})
	return err
}

func (v *VHost) applyDeletePolicy(c DeletePolicy) error {
	name := c.Name
	v.mu.Lock()
	if _, ok := v.policies[name]; !ok {
		v.mu.Unlock()
		return errorf(CodeNotFound, "no policy '%s' in vhost '%s'", name, v.name)
	}
	delete(v.policies, name)
	changes := v.policyChangesLocked()
	v.mu.Unlock()
	applyPolicies(changes)
	v.broker.changed(true)
	return nil
}

// Policies lists the policies sorted by name.
func (v *VHost) Policies() []Policy {
	v.mu.RLock()
	out := make([]Policy, 0, len(v.policies))
	for _, p := range v.policies {
		out = append(out, *p)
	}
	v.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// policyForLocked picks the matching policy with the highest priority
// (ties: the name that sorts first, so the choice is stable).
func (v *VHost) policyForLocked(name, kind string) *Policy {
	var best *Policy
	for _, p := range v.policies {
		if p.ApplyTo != kind && p.ApplyTo != applyToAll {
			continue
		}
		if !p.re.MatchString(name) {
			continue
		}
		if best == nil || p.Priority > best.Priority || (p.Priority == best.Priority && p.Name < best.Name) {
			best = p
		}
	}
	return best
}

type policyChange struct {
	q *Queue
	p *Policy
}

// policyChangesLocked works out which policy each queue gets; the changes
// are applied after the vhost lock is released, because enforcing them may
// dead-letter messages, which routes through the vhost.
func (v *VHost) policyChangesLocked() []policyChange {
	var out []policyChange
	for name, q := range v.queues {
		if !q.internal {
			out = append(out, policyChange{q, v.policyForLocked(name, applyToQueues)})
		}
	}
	return out
}

func applyPolicies(cs []policyChange) {
	for _, c := range cs {
		c.q.kind.applyPolicy(c.p)
	}
}

// applyPolicy recomputes the queue's configuration and enforces it now
// (length limits trim at once; x-expires and the consumer timeout re-arm).
func (q *classicQueue) applyPolicy(p *Policy) {
	q.mu.Lock()
	q.policy = p
	prio := q.cfg.maxPriority
	q.cfg = q.vhost.queueConfig(q.args, p)
	q.cfg.maxPriority = prio // fixed at declaration
	q.enforceLimitsLocked()
	q.touchIdleLocked()
	if len(q.unacked) > 0 && q.cfg.consumerTimeout > 0 {
		q.armConsumerTimeoutLocked()
	}
	q.dispatchLocked()
	q.unlock()
}

// close stops the timers of every queue and exchange in the vhost.
func (v *VHost) close() {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for _, q := range v.queues {
		q.kind.close()
	}
	for _, e := range v.exchanges {
		e.stopDelayed()
	}
}
