package bench

import (
	"errors"
	"net"
	"sync"
	"time"
)

// coalesceLimit is how many bytes a coalescingConn holds before its
// writers wait for the socket (TCP backpressure reaches them there).
const coalesceLimit = 1 << 20

// coalescingConn is a net.Conn whose writes return once copied into a
// buffer that one flusher goroutine writes to the socket: the writes that
// arrive while a socket write is under way go out together in the next.
// amqp091-go writes (and flushes) once per publish and once per ack, so a
// publisher with a confirm window of 1000 spends a syscall on every
// message; NATS's client coalesces the same way, so the stream scenarios
// compare brokers rather than the clients' syscall counts. A lone write
// goes out at once (one goroutine hand-off): paced latency does not wait
// for a batch.
type coalescingConn struct {
	net.Conn
	kick chan struct{} // cap 1: something to flush
	done chan struct{} // closed by Close: the flusher ends
	wg   sync.WaitGroup

	mu      sync.Mutex
	room    *sync.Cond // signalled when the flusher takes the buffer or fails
	buf     []byte
	err     error
	closing bool
}

func newCoalescingConn(c net.Conn) *coalescingConn {
	w := &coalescingConn{Conn: c, kick: make(chan struct{}, 1), done: make(chan struct{})}
	w.room = sync.NewCond(&w.mu)
	w.wg.Go(w.flush)
	return w
}

var errConnClosed = errors.New("bench: connection closed")

func (w *coalescingConn) Write(p []byte) (int, error) {
	w.mu.Lock()
	for w.err == nil && !w.closing && len(w.buf) > 0 && len(w.buf)+len(p) > coalesceLimit {
		w.room.Wait()
	}
	if err := w.err; err != nil || w.closing {
		w.mu.Unlock()
		if err == nil {
			err = errConnClosed
		}
		return 0, err
	}
	w.buf = append(w.buf, p...)
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return len(p), nil
}

// flush is the only writer of the socket. After Close it writes what is
// left and ends.
func (w *coalescingConn) flush() {
	var out []byte
	for closing := false; ; {
		if closing {
			w.mu.Lock()
			if len(w.buf) == 0 {
				w.mu.Unlock()
				return
			}
			w.mu.Unlock()
		} else {
			select {
			case <-w.kick:
			case <-w.done:
				closing = true
			}
		}
		w.mu.Lock()
		out, w.buf = w.buf, out[:0]
		w.room.Broadcast()
		w.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		if _, err := w.Conn.Write(out); err != nil {
			w.mu.Lock()
			w.err = err
			w.room.Broadcast()
			w.mu.Unlock()
			return
		}
	}
}

// closeFlushWait bounds how long Close waits to write what is buffered.
const closeFlushWait = time.Second

// Close writes what is still buffered (for at most closeFlushWait), ends
// the flusher and closes the socket.
func (w *coalescingConn) Close() error {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return nil
	}
	w.closing = true
	w.room.Broadcast()
	w.mu.Unlock()
	close(w.done)
	w.Conn.SetWriteDeadline(time.Now().Add(closeFlushWait)) // a peer that reads nothing cannot hold Close
	w.wg.Wait()
	return w.Conn.Close()
}
