package broker

import (
	"cmp"
	"errors"
	"iter"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/heraldmq/herald/internal/store"
)

// memStorage is an in-memory Storage: what the log keeps live, without
// files, fsyncs or compaction. Appends are durable at once.
type memStorage struct {
	mu     sync.Mutex
	msgs   map[uint64]store.Record
	queues map[uint64]map[uint64]store.Entry // queue id -> message id -> entry
	maxID  uint64
}

var _ Storage = (*store.Log)(nil)
var _ Storage = (*memStorage)(nil)

func newMemStorage() *memStorage {
	return &memStorage{msgs: map[uint64]store.Record{}, queues: map[uint64]map[uint64]store.Entry{}}
}

func (s *memStorage) AppendFunc(recs []store.Record, done func(error)) {
	s.mu.Lock()
	for _, r := range recs {
		switch r.Kind {
		case store.KindMessage:
			s.msgs[r.MessageID] = r
			s.maxID = max(s.maxID, r.MessageID)
		case store.KindEnqueue:
			if s.queues[r.QueueID] == nil {
				s.queues[r.QueueID] = map[uint64]store.Entry{}
			}
			s.queues[r.QueueID][r.MessageID] = store.Entry{MessageID: r.MessageID, Seq: r.Seq, Redelivered: r.Redelivered}
		case store.KindAck:
			delete(s.queues[r.QueueID], r.MessageID)
		case store.KindRedelivered:
			if e, ok := s.queues[r.QueueID][r.MessageID]; ok {
				e.Redelivered = true
				s.queues[r.QueueID][r.MessageID] = e
			}
		case store.KindQueueDelete:
			delete(s.queues, r.QueueID)
		}
	}
	s.mu.Unlock()
	done(nil)
}

func (s *memStorage) ReadMessage(id uint64) (meta, body []byte, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.msgs[id]
	if !ok {
		return nil, nil, store.ErrNotFound
	}
	return slices.Clone(r.Meta), slices.Clone(r.Body), nil
}

func (s *memStorage) PendingBytes() int { return 0 }

func (s *memStorage) MaxMessageID() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxID
}

func (s *memStorage) Recovered() iter.Seq2[uint64, []store.Entry] {
	s.mu.Lock()
	ids := slices.Sorted(maps.Keys(s.queues))
	byQueue := make([][]store.Entry, len(ids))
	for i, id := range ids {
		byQueue[i] = slices.SortedFunc(maps.Values(s.queues[id]), func(a, b store.Entry) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	s.mu.Unlock()
	return func(yield func(uint64, []store.Entry) bool) {
		for i, id := range ids {
			if len(byQueue[i]) > 0 && !yield(id, byQueue[i]) {
				return
			}
		}
	}
}

// TestFakeStorageRecovers: the broker needs only Storage. Persistent
// messages in a durable queue, one of them acked and one delivered, come
// back in a new broker over the same storage, in order, the delivered one
// flagged redelivered.
func TestFakeStorageRecovers(t *testing.T) {
	st := newMemStorage()
	b := New(Options{Store: st})
	v := b.VHost(DefaultVHost)
	q, err := v.DeclareQueue("orders", QueueOptions{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	p := v.Publisher()
	for _, body := range []string{"a", "b", "c", "d"} {
		if _, err := p.Publish(&Message{RoutingKey: "orders", Body: []byte(body), Properties: Properties{DeliveryMode: 2}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Publish(&Message{RoutingKey: "orders", Body: []byte("transient")}); err != nil {
		t.Fatal(err)
	}
	d, ok, _ := q.Get(0, false)
	if !ok || string(d.Message.Body) != "a" {
		t.Fatalf("get: %v %q", ok, d.Message.Body)
	}
	q.Ack(d.ID)
	if d, ok, _ = q.Get(0, false); !ok || string(d.Message.Body) != "b" {
		t.Fatalf("get: %v", ok)
	} // left unacked: it was delivered once
	defs := b.ExportDefinitions(true)
	b.Close()

	b2 := New(Options{Store: st})
	defer b2.Close()
	if err := b2.ImportDefinitions(defs); err != nil {
		t.Fatal(err)
	}
	if _, n, err := b2.RecoverMessages(false); err != nil || n != 3 {
		t.Fatalf("recovered %d messages, %v; want 3", n, err)
	}
	q2, err := b2.VHost(DefaultVHost).Queue("orders")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var redelivered []bool
	for {
		d, ok, _ := q2.Get(0, true)
		if !ok {
			break
		}
		got = append(got, string(d.Message.Body))
		redelivered = append(redelivered, d.Redelivered)
	}
	if !slices.Equal(got, []string{"b", "c", "d"}) || !slices.Equal(redelivered, []bool{true, false, false}) {
		t.Fatalf("recovered %q redelivered %v; want [b c d] [true false false]", got, redelivered)
	}
}

// TestPublishOutcome: one value says whether a message was routed, stored
// (wait for the disk), rejected (nack) and whether the publisher must slow
// down.
func TestPublishOutcome(t *testing.T) {
	b := New(Options{Store: newMemStorage()})
	defer b.Close()
	v := b.VHost(DefaultVHost)
	if _, err := v.DeclareQueue("full", QueueOptions{Durable: true, Args: Table{"x-max-length": int64(1), "x-overflow": OverflowRejectPublish}}); err != nil {
		t.Fatal(err)
	}
	p := v.Publisher()
	persistent := Properties{DeliveryMode: 2}
	for _, c := range []struct {
		m    *Message
		want Outcome
	}{
		{&Message{RoutingKey: "nowhere"}, Outcome{}},
		{&Message{RoutingKey: "full", Properties: persistent}, Outcome{Routed: 1, Stored: true}},
		{&Message{RoutingKey: "full", Properties: persistent}, Outcome{Rejected: true}},
		{&Message{RoutingKey: "full"}, Outcome{Rejected: true}},
	} {
		got, err := p.PublishOutcome(c.m)
		if err != nil || got != c.want {
			t.Fatalf("publish to %q: %+v, %v; want %+v", c.m.RoutingKey, got, err, c.want)
		}
	}
	b.SetAlarm("memory", true)
	if got, _ := p.PublishOutcome(&Message{RoutingKey: "nowhere"}); !got.Congested {
		t.Fatalf("under an alarm: %+v, want congested", got)
	}
	if _, err := p.PublishOutcome(&Message{Exchange: "missing"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing exchange: %v", err)
	}
}
