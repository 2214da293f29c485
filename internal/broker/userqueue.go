package broker

import "sync"

// UserExchange is Herald's built-in direct exchange for per-user messages:
// a message published to it with a user's name as routing key reaches
// every connection of that user that has a user queue (every /ws socket).
// Backends reach users over AMQP by publishing to it (write on the
// exchange); the web layer checks its own per-user permission first.
const UserExchange = "amq.herald.user"

// userQueuePrefix names user queues. They are internal: hidden from the
// queue lists and unreachable through the default exchange, so that only
// UserExchange feeds them.
const userQueuePrefix = "amq.herald.user-"

// DeclareUserQueue creates a connection's hidden exclusive queue for the
// messages sent to user, bound to UserExchange under the user's name. It
// goes away with owner (ReleaseOwner), as any exclusive queue.
func (v *VHost) DeclareUserQueue(user string, owner Owner) (*Queue, error) {
	q := v.declareInternalQueue(userQueuePrefix, owner)
	if err := v.BindQueue(q.Name(), UserExchange, user, nil, owner); err != nil {
		_, _ = v.DeleteQueue(q.Name(), owner, false, false)
		return nil, err
	}
	return q, nil
}

// userListeners holds the connections that receive per-user messages but
// hold no user queue yet: a queue, its binding and its consumer cost an
// idle WebSocket over a KiB, and most sockets never receive one. The
// first message routed through UserExchange to a user makes the queues of
// that user's listeners (Publisher.Route) before it is routed to them.
type userListeners struct {
	mu sync.Mutex
	by map[string]map[*UserListener]struct{}
}

// UserListener is a connection waiting for its first per-user message
// (ListenUser).
type UserListener struct {
	set  *userListeners
	user string
	// mu is held while open runs: a second publisher to the user waits
	// for the queue before it routes, and Cancel for open to finish.
	mu   sync.Mutex
	done bool // open ran, or Cancel
	open func()
}

// ListenUser registers a connection of user that wants per-user
// messages: open runs, once, on the goroutine of the first publisher of a
// message to user (through UserExchange), before that message is routed;
// it declares the connection's user queue (DeclareUserQueue) and consumes
// it. open must not publish. Cancel the listener when the connection
// closes.
func (v *VHost) ListenUser(user string, open func()) *UserListener {
	l := &UserListener{set: &v.listeners, user: user, open: open}
	s := &v.listeners
	s.mu.Lock()
	if s.by == nil {
		s.by = make(map[string]map[*UserListener]struct{})
	}
	m := s.by[user]
	if m == nil {
		m = make(map[*UserListener]struct{})
		s.by[user] = m
	}
	m[l] = struct{}{}
	s.mu.Unlock()
	return l
}

// Cancel unregisters l; once it returns, open is not running and will
// not run. It reports whether open ran.
func (l *UserListener) Cancel() (opened bool) {
	l.mu.Lock()
	opened = l.done && l.open == nil
	l.done = true
	l.mu.Unlock()
	l.set.remove(l)
	return opened
}

// run opens l unless it ran or was cancelled.
func (l *UserListener) run() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return
	}
	l.open()
	l.done, l.open = true, nil
	l.set.remove(l)
}

func (s *userListeners) remove(l *UserListener) {
	s.mu.Lock()
	if m := s.by[l.user]; m != nil {
		delete(m, l)
		if len(m) == 0 {
			delete(s.by, l.user)
		}
	}
	s.mu.Unlock()
}

// materialize opens the listeners of user; it reports whether there were
// any (the message must then be routed again). A listener a concurrent
// publisher is opening is waited for, so that no message to the user is
// routed past a queue being made.
func (s *userListeners) materialize(user string) bool {
	s.mu.Lock()
	m := s.by[user]
	if len(m) == 0 {
		s.mu.Unlock()
		return false
	}
	ls := make([]*UserListener, 0, len(m))
	for l := range m {
		ls = append(ls, l)
	}
	s.mu.Unlock()
	for _, l := range ls {
		l.run()
	}
	return true
}
