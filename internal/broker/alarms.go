package broker

import (
	"slices"
	"sync"
)

// Resource alarms, as RabbitMQ's: while one is raised (memory above its
// watermark, free disk below its limit) every publisher is held back
// (Publisher.Congested / WaitFlow: TCP push-back, and AMQP's
// connection.blocked), while consumers keep draining.
type alarms struct {
	mu      sync.Mutex
	raised  []string
	cleared chan struct{} // closed when the last alarm clears; nil when none
}

// SetAlarm raises or clears the named alarm ("memory", "disk") and reports
// whether that changed anything.
func (b *Broker) SetAlarm(name string, on bool) bool {
	a := &b.alarms
	a.mu.Lock()
	defer a.mu.Unlock()
	i := slices.Index(a.raised, name)
	switch {
	case on && i < 0:
		a.raised = append(a.raised, name)
		if a.cleared == nil {
			a.cleared = make(chan struct{})
		}
		b.alarmOn.Store(true)
		return true
	case !on && i >= 0:
		a.raised = slices.Delete(a.raised, i, i+1)
		if len(a.raised) == 0 {
			b.alarmOn.Store(false)
			close(a.cleared)
			a.cleared = nil
		}
		return true
	}
	return false
}

// Alarms lists the raised alarms.
func (b *Broker) Alarms() []string {
	b.alarms.mu.Lock()
	defer b.alarms.mu.Unlock()
	return slices.Clone(b.alarms.raised)
}

// Alarmed reports whether publishers are being held back; a single atomic
// load, cheap enough for every publish.
func (b *Broker) Alarmed() bool { return b.alarmOn.Load() }

// alarmCleared returns a channel closed when the alarms clear, or nil.
func (b *Broker) alarmCleared() <-chan struct{} {
	b.alarms.mu.Lock()
	defer b.alarms.mu.Unlock()
	if b.alarms.cleared == nil {
		return nil
	}
	return b.alarms.cleared
}
