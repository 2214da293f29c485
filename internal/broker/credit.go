package broker

// Credit taken from a Limiter outside any queue: an adapter that sends
// something its client must acknowledge without a queue behind it (MQTT
// retained messages for a new subscription) counts it against the same
// window as its queue deliveries, so the client's bound holds for both.

// TryAcquire takes one unit of credit if the bound allows it.
func (l *Limiter) TryAcquire() bool { return l.acquire(nil) }

// Release returns n units taken with TryAcquire and wakes the consumers
// that were waiting for credit.
func (l *Limiter) Release(n int) {
	l.n.Add(-int64(n))
	l.wake()
}
