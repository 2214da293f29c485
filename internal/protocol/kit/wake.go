package kit

// Wake is a writer goroutine's doorbell: any number of Rings between two
// receives wake it once. Make it with NewWake.
type Wake chan struct{}

// NewWake returns a doorbell with room for one pending ring.
func NewWake() Wake { return make(Wake, 1) }

// Ring wakes the receiver without ever blocking the ringer.
func (w Wake) Ring() {
	select {
	case w <- struct{}{}:
	default:
	}
}
