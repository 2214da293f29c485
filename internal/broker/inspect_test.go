package broker

import (
	"errors"
	"slices"
	"testing"

	"github.com/heraldmq/herald/internal/store"
)

func TestPeekDoesNotConsume(t *testing.T) {
	b := New(Options{})
	v := b.VHost("/")
	q := mustQueue(t, v, "q")
	p := v.Publisher()
	for _, s := range []string{"a", "b", "c", "d"} {
		publish(t, p, "", "q", s)
	}
	// Take "a" and "b" and requeue them: they go out first again.
	d1, _, _ := q.Get(0, false)
	d2, _, _ := q.Get(0, false)
	q.Requeue(d1.ID, d2.ID)

	got := q.Peek(3)
	if want := []string{"a", "b", "c"}; !slices.Equal(bodies(got), want) {
		t.Fatalf("peek %v, want %v", bodies(got), want)
	}
	if !got[0].Redelivered || got[2].Redelivered || got[0].Remaining != 4 {
		t.Fatalf("flags %+v", got)
	}
	if st := q.Stats(); st.Ready != 4 || st.Unacked != 0 {
		t.Fatalf("peek consumed: %+v", st)
	}
	if len(q.Peek(100)) != 4 || q.Peek(0) != nil {
		t.Fatal("peek bounds")
	}
}

func TestPeekPriorityOrder(t *testing.T) {
	b := New(Options{})
	v := b.VHost("/")
	q, err := v.DeclareQueue("pq", QueueOptions{Args: Table{"x-max-priority": int64(5)}})
	if err != nil {
		t.Fatal(err)
	}
	p := v.Publisher()
	for i, s := range []string{"low", "high", "mid"} {
		prio := []uint8{0, 5, 2}[i]
		if _, err := p.Publish(&Message{RoutingKey: "pq", Body: []byte(s), Properties: Properties{Priority: prio}}); err != nil {
			t.Fatal(err)
		}
	}
	if got := bodies(q.Peek(10)); !slices.Equal(got, []string{"high", "mid", "low"}) {
		t.Fatalf("peek %v", got)
	}
}

func TestDeleteMessage(t *testing.T) {
	b := New(Options{})
	v := b.VHost("/")
	q := mustQueue(t, v, "q")
	p := v.Publisher()
	for _, s := range []string{"a", "b", "c"} {
		publish(t, p, "", "q", s)
	}
	ds := q.Peek(3)
	if !q.DeleteMessage(ds[1].ID) {
		t.Fatal("delete b failed")
	}
	if q.DeleteMessage(ds[1].ID) {
		t.Fatal("deleted b twice")
	}
	// A requeued message can be deleted too.
	d, _, _ := q.Get(0, false)
	q.Requeue(d.ID)
	if !q.DeleteMessage(d.ID) {
		t.Fatal("delete requeued a failed")
	}
	if got := bodies(q.Peek(10)); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("left %v", got)
	}
	if st := q.Stats(); st.Ready != 1 {
		t.Fatalf("stats %+v", st)
	}
	d, ok, _ := q.Get(0, true)
	if !ok || string(d.Message.Body) != "c" {
		t.Fatalf("get %v %v", ok, d)
	}
}

func TestMoveMessages(t *testing.T) {
	b := New(Options{})
	v := b.VHost("/")
	src := mustQueue(t, v, "dlq")
	dst := mustQueue(t, v, "work")
	p := v.Publisher()
	for _, s := range []string{"1", "2", "3"} {
		if _, err := p.Publish(&Message{RoutingKey: "dlq", Body: []byte(s), Properties: Properties{MessageID: "m" + s, Headers: Table{"x-death": []any{Table{"queue": "work"}}}}}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := v.MoveMessages("dlq", "work", 2)
	if err != nil || n != 2 {
		t.Fatalf("moved %d, %v", n, err)
	}
	got := dst.Peek(10)
	if !slices.Equal(bodies(got), []string{"1", "2"}) || got[0].Message.Properties.MessageID != "m1" || got[0].Message.Properties.Headers["x-death"] == nil {
		t.Fatalf("target %v %+v", bodies(got), got[0].Message.Properties)
	}
	if left := bodies(src.Peek(10)); !slices.Equal(left, []string{"3"}) {
		t.Fatalf("source %v", left)
	}
	if st := src.Stats(); st.Unacked != 0 || st.Ready != 1 {
		t.Fatalf("source stats %+v", st)
	}
	if _, err := v.MoveMessages("dlq", "nope", 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing target: %v", err)
	}
	if _, err := v.MoveMessages("dlq", "dlq", 1); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("self move: %v", err)
	}
}

func TestMoveStopsAtFullTarget(t *testing.T) {
	b := New(Options{})
	v := b.VHost("/")
	src := mustQueue(t, v, "src")
	if _, err := v.DeclareQueue("small", QueueOptions{Args: Table{"x-max-length": int64(1), "x-overflow": "reject-publish"}}); err != nil {
		t.Fatal(err)
	}
	p := v.Publisher()
	for _, s := range []string{"a", "b", "c"} {
		publish(t, p, "", "src", s)
	}
	n, err := v.MoveMessages("src", "small", 10)
	if n != 1 || err == nil {
		t.Fatalf("moved %d, %v", n, err)
	}
	// The refused ones are back, in order, ahead of nothing else.
	if left := bodies(src.Peek(10)); !slices.Equal(left, []string{"b", "c"}) {
		t.Fatalf("source %v", left)
	}
	// And a consumer still gets them.
	s := &fakeSink{}
	if _, err := src.Consume(ConsumerOptions{Tag: "c", NoAck: true, Sink: s}); err != nil {
		t.Fatal(err)
	}
	if got := bodies(s.deliveries()); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("consumed %v", got)
	}
	if cs := src.Consumers(); len(cs) != 1 || cs[0].Tag != "c" || !cs[0].NoAck {
		t.Fatalf("consumers %+v", cs)
	}
}

// TestMovePersistentSurvivesRestart moves persistent messages between
// durable queues and checks the log: after a restart they are in the
// target and gone from the source.
func TestMovePersistentSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	open := func() (*Broker, *store.Log) {
		log, _, err := store.Open(dir, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		b := New(Options{Store: log})
		v := b.VHost("/")
		for _, name := range []string{"dlq", "work"} {
			if _, err := v.DeclareQueue(name, QueueOptions{Durable: true}); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := b.RecoverMessages(false); err != nil {
			t.Fatal(err)
		}
		return b, log
	}
	b, log := open()
	v := b.VHost("/")
	for _, s := range []string{"x", "y", "z"} {
		if _, err := v.Publisher().Publish(&Message{RoutingKey: "dlq", Body: []byte(s), Properties: Properties{DeliveryMode: 2}}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := v.MoveMessages("dlq", "work", 2); n != 2 || err != nil {
		t.Fatalf("moved %d %v", n, err)
	}
	q, _ := v.Queue("dlq")
	if !q.DeleteMessage(q.Peek(1)[0].ID) {
		t.Fatal("delete z")
	}
	b.Close()
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}

	b, log = open()
	defer func() { b.Close(); _ = log.Close() }()
	v = b.VHost("/")
	work, _ := v.Queue("work")
	dlq, _ := v.Queue("dlq")
	if got := bodies(work.Peek(10)); !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("work after restart %v", got)
	}
	if !work.Peek(1)[0].Message.Persistent() {
		t.Fatal("moved message lost its delivery mode")
	}
	if got := dlq.Peek(10); len(got) != 0 {
		t.Fatalf("dlq after restart %v", bodies(got))
	}
}

func TestConnectionRegistry(t *testing.T) {
	b := New(Options{})
	var closed string
	c, unregister := b.RegisterConnection(ConnectionInfo{Protocol: "AMQP 0-9-1", User: "guest", VHost: "/", Peer: "127.0.0.1:5555", Local: "127.0.0.1:5672",
		Close: func(reason string) { closed = reason }})
	c.AddChannels(2)
	cs := b.Connections()
	if len(cs) != 1 || cs[0].Name != "127.0.0.1:5555 -> 127.0.0.1:5672" || cs[0].Channels != 2 || cs[0].ConnectedAt.IsZero() || cs[0].ID != c.ID() {
		t.Fatalf("connections %+v", cs)
	}
	if !b.CloseConnection(cs[0].Name, "bye") || closed != "bye" {
		t.Fatalf("close: %q", closed)
	}
	unregister()
	unregister()
	if len(b.Connections()) != 0 || b.CloseConnection(cs[0].Name, "") {
		t.Fatal("still registered")
	}
}
