package broker

// Credit taken from a Limiter outside any queue: an adapter that sends
// something its client must acknowledge without a queue behind it (MQTT
// retained messages for a new subscription) counts it against the same
// window as its queue deliveries, so the client's bound holds for both.

// TryAcquire takes one unit of credit if the bound allows it.
func (l *Limiter) TryAcquire() bool { return l.acquire(nil) }

// Release returns n units taken with TryAcquire or Take and wakes the
// consumers that were waiting for credit.
func (l *Limiter) Release(n int) {
	l.n.Add(-int64(n))
	l.wake()
}

// Take takes one unit of credit whatever the bound: for a unit that passes
// from a delivery to the adapter without the window opening in between
// (an MQTT QoS 2 delivery counts against the client's Receive Maximum
// until PUBCOMP, after its queue's Ack returned the delivery's unit at
// PUBREC), or for ids a resumed session has in flight already. Return it
// with Release.
func (l *Limiter) Take() { l.n.Add(1) }
