package broker

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/store"
)

// sentLog records what a ConfirmQueue sent, for the test to await.
type sentLog struct {
	mu   sync.Mutex
	sent []int
	errs []error
	ch   chan struct{} // cap 1: something was sent
}

func newSentLog() *sentLog { return &sentLog{ch: make(chan struct{}, 1)} }

func (s *sentLog) send(item int, err error) {
	s.mu.Lock()
	s.sent = append(s.sent, item)
	s.errs = append(s.errs, err)
	s.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	default:
	}
}

func (s *sentLog) items() ([]int, []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sent), slices.Clone(s.errs)
}

// await waits until n items were sent and returns them.
func (s *sentLog) await(t *testing.T, n int) ([]int, []error) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		if got, errs := s.items(); len(got) >= n {
			return got, errs
		}
		select {
		case <-s.ch:
		case <-timeout:
			got, _ := s.items()
			t.Fatalf("sent %v, want %d items", got, n)
		}
	}
}

func openConfirmBroker(t *testing.T, fs *store.MemFS) (*Broker, *store.Log) {
	t.Helper()
	log, _, err := store.Open("/data/log", store.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	b := New(Options{Store: log})
	v := b.VHost(DefaultVHost)
	for _, o := range []struct {
		name    string
		durable bool
	}{{"durable", true}, {"transient", false}} {
		if _, err := v.DeclareQueue(o.name, QueueOptions{Durable: o.durable}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := b.RecoverMessages(false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	t.Cleanup(b.Close)
	return b, log
}

func publishTo(t *testing.T, p *Publisher, queue, body string, persistent bool) {
	t.Helper()
	m := &Message{RoutingKey: queue, Body: []byte(body)}
	if persistent {
		m.Properties.DeliveryMode = 2
	}
	if n, err := p.Publish(m); err != nil || n != 1 {
		t.Fatalf("publish to %s: %d %v", queue, n, err)
	}
}

// TestConfirmQueueWaitsForDiskInOrder: an answer to a persistent message
// in a durable queue is sent only once the message survives a power loss;
// the answers queued behind it (transient, not durable, no wait of their
// own) wait for it, then all go in order.
func TestConfirmQueueWaitsForDiskInOrder(t *testing.T) {
	fs := store.NewMemFS()
	b, _ := openConfirmBroker(t, fs)
	p := b.VHost(DefaultVHost).Publisher()
	sl := newSentLog()
	var crashed *store.MemFS // what a power loss would leave when item 1 was sent
	q := NewConfirmQueue(func(item int, err error) {
		if item == 1 {
			crashed = fs.Crash(nil)
		}
		sl.send(item, err)
	})

	// Nothing held yet: an answer that needs no disk goes at once.
	publishTo(t, p, "transient", "t0", true)
	if q.Confirm(p, 0) {
		t.Fatal("a message in a transient queue waits for the disk")
	}
	if got, _ := sl.items(); !slices.Equal(got, []int{0}) {
		t.Fatalf("sent %v, want [0] at once", got)
	}

	release := fs.HoldSyncs()
	defer release()
	publishTo(t, p, "durable", "d1", true)
	if !q.Confirm(p, 1) {
		t.Fatal("a persistent message in a durable queue does not wait for the disk")
	}
	publishTo(t, p, "durable", "d2-transient", false)
	q.Confirm(p, 2)
	q.Add(3)
	publishTo(t, p, "transient", "t4", true)
	q.Confirm(p, 4)
	if got, _ := sl.items(); !slices.Equal(got, []int{0}) || q.Len() != 4 {
		t.Fatalf("sent %v with %d unsent before the fsync, want [0] and 4", got, q.Len())
	}
	release()
	got, errs := sl.await(t, 5)
	if !slices.Equal(got, []int{0, 1, 2, 3, 4}) || slices.ContainsFunc(errs, func(e error) bool { return e != nil }) {
		t.Fatalf("sent %v %v, want 0..4 in order without errors", got, errs)
	}
	if q.Len() != 0 {
		t.Fatalf("%d unsent after all were sent", q.Len())
	}

	// The message was on disk when its answer was sent.
	b2, _ := openConfirmBroker(t, crashed)
	dq, _ := b2.VHost(DefaultVHost).Queue("durable")
	if pk := dq.Peek(10); len(pk) != 1 || string(pk[0].Message.Body) != "d1" {
		t.Fatalf("after a power loss at the answer: %d messages in the durable queue", len(pk))
	}
}

// TestConfirmQueueSharesGroupCommit: many publishes answered while one
// fsync is in flight share the next one.
func TestConfirmQueueSharesGroupCommit(t *testing.T) {
	fs := store.NewMemFS()
	b, _ := openConfirmBroker(t, fs)
	p := b.VHost(DefaultVHost).Publisher()
	sl := newSentLog()
	q := NewConfirmQueue(sl.send)
	syncs := fs.SyncCount()
	release := fs.HoldSyncs()
	defer release()
	const n = 200
	for i := range n {
		publishTo(t, p, "durable", fmt.Sprint(i), true)
		q.Confirm(p, i)
	}
	release()
	got, _ := sl.await(t, n)
	for i, x := range got {
		if x != i {
			t.Fatalf("answer %d is %d: out of order", i, x)
		}
	}
	if d := fs.SyncCount() - syncs; d > 2 {
		t.Fatalf("%d answers took %d fsyncs, want at most 2 (one in flight, one for the rest)", n, d)
	}
}

// TestConfirmQueueDiskError: an answer whose message could not be written
// carries the error; the answers behind it still go, in order.
func TestConfirmQueueDiskError(t *testing.T) {
	fs := store.NewMemFS()
	b, _ := openConfirmBroker(t, fs)
	p := b.VHost(DefaultVHost).Publisher()
	sl := newSentLog()
	q := NewConfirmQueue(sl.send)
	fs.SetSyncError(errors.New("disk on fire"))
	publishTo(t, p, "durable", "lost", true)
	q.Confirm(p, 1)
	q.Add(2)
	got, errs := sl.await(t, 2)
	if !slices.Equal(got, []int{1, 2}) || errs[0] == nil || errs[1] != nil {
		t.Fatalf("sent %v %v, want [1 2] with an error for 1 only", got, errs)
	}
}

// TestConfirmQueueWaitAndClose: Wait holds a reader while too many
// answers are unsent; Close drops them and wakes it.
func TestConfirmQueueWaitAndClose(t *testing.T) {
	fs := store.NewMemFS()
	b, log := openConfirmBroker(t, fs)
	p := b.VHost(DefaultVHost).Publisher()
	sl := newSentLog()
	q := NewConfirmQueue(sl.send)
	release := fs.HoldSyncs()
	defer release()
	for i := range 3 {
		publishTo(t, p, "durable", fmt.Sprint(i), true)
		q.Confirm(p, i)
	}
	stop := make(chan struct{})
	close(stop)
	if q.Wait(3, stop) {
		t.Fatal("Wait(3) reported room with 3 unsent")
	}
	if !q.Wait(4, nil) {
		t.Fatal("Wait(4) reported no room with 3 unsent")
	}
	woke := make(chan bool)
	go func() { woke <- q.Wait(1, nil) }()
	release()
	if !<-woke {
		t.Fatal("Wait(1) did not report room once everything was sent")
	}
	sl.await(t, 3)

	// Close: what is unsent is dropped, and nothing more is sent.
	release = fs.HoldSyncs()
	defer release()
	publishTo(t, p, "durable", "x", true)
	q.Confirm(p, 10)
	q.Add(11)
	go func() { woke <- q.Wait(1, nil) }()
	q.Close()
	if !<-woke {
		t.Fatal("Close did not wake Wait")
	}
	q.Add(12)
	release()
	if err := <-log.Append(); err != nil { // a barrier: item 10's wait is done too
		t.Fatal(err)
	}
	if got, _ := sl.items(); len(got) != 3 {
		t.Fatalf("sent %v after Close", got)
	}
}

// TestConfirmQueueWithoutLog: a broker without a log answers at once;
// WaitLog has nothing to wait for.
func TestConfirmQueueWithoutLog(t *testing.T) {
	v := New(Options{}).VHost(DefaultVHost)
	if _, err := v.DeclareQueue("durable", QueueOptions{Durable: true}); err != nil {
		t.Fatal(err)
	}
	p := v.Publisher()
	sl := newSentLog()
	q := NewConfirmQueue(sl.send)
	publishTo(t, p, "durable", "d", true)
	if q.Confirm(p, 1) || q.ConfirmAfter(2, p.WaitLog) {
		t.Fatal("waiting for a disk there is not")
	}
	if got, _ := sl.items(); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("sent %v", got)
	}
}

// TestConfirmQueueWaitLogCoversKeyedStore: a barrier from WaitLog covers a
// retained message set just before (MQTT's retained publish).
func TestConfirmQueueWaitLogCoversKeyedStore(t *testing.T) {
	fs := store.NewMemFS()
	b, _ := openConfirmBroker(t, fs)
	v := b.VHost(DefaultVHost)
	p := v.Publisher()
	var crashed *store.MemFS
	sl := newSentLog()
	q := NewConfirmQueue(func(item int, err error) {
		crashed = fs.Crash(nil)
		sl.send(item, err)
	})
	release := fs.HoldSyncs()
	defer release()
	v.Retained().Set("a/b", &Message{Body: []byte("kept")})
	if !q.ConfirmAfter(1, p.WaitLog) {
		t.Fatal("WaitLog with a log does not wait")
	}
	release()
	sl.await(t, 1)
	b2, _ := openConfirmBroker(t, crashed)
	if m := b2.VHost(DefaultVHost).Retained().Get("a/b"); m == nil || string(m.Body) != "kept" {
		t.Fatalf("retained message after a power loss at the answer: %v", m)
	}
}
