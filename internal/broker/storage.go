package broker

import (
	"iter"

	"github.com/heraldmq/herald/internal/store"
)

// Storage is the message log the broker needs; *store.Log satisfies it,
// and unit tests may pass a fake (memStorage in storage_test.go). The
// records are the log's own (store.Record): the broker speaks the log's
// vocabulary (message, enqueue, ack, redelivered, queue delete) and the log
// knows nothing of queues beyond their ids.
type Storage interface {
	// AppendFunc submits recs as one atomic unit; done runs once they are
	// durable (or failed) and must not block. An empty recs is a barrier:
	// done runs once everything appended before it is durable.
	AppendFunc(recs []store.Record, done func(error))
	// ReadMessage returns a live message's meta and body (store.ErrNotFound
	// if the log has not taken it in yet or it is gone).
	ReadMessage(id uint64) (meta, body []byte, err error)
	// PendingBytes is how much is appended but not yet written.
	PendingBytes() int
	// MaxMessageID is the highest message id the log has seen; the broker
	// numbers new messages above it.
	MaxMessageID() uint64
	// Recovered yields each queue id with its live entries in order.
	Recovered() iter.Seq2[uint64, []store.Entry]
}

// barrier returns a channel that receives once everything appended to s so
// far is durable.
func barrier(s Storage) <-chan error {
	ch := make(chan error, 1)
	s.AppendFunc(nil, func(err error) { ch <- err })
	return ch
}

// sequentialReader reads many messages in log order (recovery); the log's
// own Reader does it through a window, one read per megabyte.
type sequentialReader interface {
	ReadMessage(id uint64) (meta, body []byte, err error)
	ReadMeta(id uint64) (meta []byte, bodyLen int, err error)
}

func newSequentialReader(s Storage) sequentialReader {
	if l, ok := s.(interface{ NewReader() *store.Reader }); ok {
		return l.NewReader()
	}
	return plainReader{s}
}

// plainReader reads one message at a time, for storages without a window.
type plainReader struct{ s Storage }

func (r plainReader) ReadMessage(id uint64) (meta, body []byte, err error) {
	return r.s.ReadMessage(id)
}

func (r plainReader) ReadMeta(id uint64) ([]byte, int, error) {
	meta, body, err := r.s.ReadMessage(id)
	return meta, len(body), err
}
