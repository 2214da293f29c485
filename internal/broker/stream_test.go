package broker

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

func newStreamBroker(t *testing.T, dir string) *Broker {
	t.Helper()
	b := New(Options{StreamDir: dir})
	t.Cleanup(b.Close)
	return b
}

func declareStream(t *testing.T, v *VHost, name string, args Table) *Queue {
	t.Helper()
	a := Table{"x-queue-type": "stream"}
	for k, x := range args {
		a[k] = x
	}
	q, err := v.DeclareQueue(name, QueueOptions{Durable: true, Args: a})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// publishDurable publishes and waits for the confirm.
func publishDurable(t *testing.T, p *Publisher, key, body string, headers Table) {
	t.Helper()
	if _, err := p.Publish(&Message{RoutingKey: key, Body: []byte(body), Properties: Properties{Headers: headers}}); err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	if !p.WaitDurable(func(err error) { ch <- err }) {
		t.Fatal("a publish into a stream needs no wait")
	}
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
}

func TestStreamDeclareRules(t *testing.T) {
	b := newStreamBroker(t, t.TempDir())
	v := b.VHost(DefaultVHost)
	st := Table{"x-queue-type": "stream"}
	cases := []struct {
		name string
		o    QueueOptions
		code Code
	}{
		{"non-durable", QueueOptions{Args: st}, CodePreconditionFailed},
		{"exclusive", QueueOptions{Durable: true, Exclusive: true, Owner: 1, Args: st}, CodePreconditionFailed},
		{"auto-delete", QueueOptions{Durable: true, AutoDelete: true, Args: st}, CodePreconditionFailed},
		{"priority", QueueOptions{Durable: true, Args: Table{"x-queue-type": "stream", "x-max-priority": 5}}, CodePreconditionFailed},
		{"ttl", QueueOptions{Durable: true, Args: Table{"x-queue-type": "stream", "x-message-ttl": 5}}, CodePreconditionFailed},
		{"max-length", QueueOptions{Durable: true, Args: Table{"x-queue-type": "stream", "x-max-length": 5}}, CodePreconditionFailed},
		{"bad-age", QueueOptions{Durable: true, Args: Table{"x-queue-type": "stream", "x-max-age": "7 days"}}, CodePreconditionFailed},
		{"bad-segment", QueueOptions{Durable: true, Args: Table{"x-queue-type": "stream", "x-stream-max-segment-size-bytes": int64(4e9)}}, CodePreconditionFailed},
		{"bad-filter-size", QueueOptions{Durable: true, Args: Table{"x-queue-type": "stream", "x-stream-filter-size-bytes": 8}}, CodePreconditionFailed},
	}
	for _, c := range cases {
		_, err := v.DeclareQueue("s-"+c.name, c.o)
		var be *Error
		if !errors.As(err, &be) || be.Code != c.code {
			t.Errorf("%s: got %v, want code %d", c.name, err, c.code)
		}
	}
	q := declareStream(t, v, "ok", Table{"x-max-age": "7D", "x-max-length-bytes": int64(1 << 30), "x-stream-max-segment-size-bytes": 1 << 20, "x-initial-cluster-size": 3})
	if q.Type() != QueueTypeStream {
		t.Fatalf("type %q", q.Type())
	}
	if _, _, err := q.Get(0, false); !errors.Is(err, &Error{Code: CodeNotImplemented}) {
		t.Fatalf("basic.get: %v", err)
	}
	if _, err := v.PurgeQueue("ok", 0); !errors.Is(err, &Error{Code: CodeNotImplemented}) {
		t.Fatalf("purge: %v", err)
	}
	s := &fakeSink{}
	for _, o := range []ConsumerOptions{
		{Sink: s},                            // no prefetch
		{Sink: s, Prefetch: 10, NoAck: true}, // auto-ack
		{Sink: s, Prefetch: 10, Args: Table{"x-stream-offset": "yesterday"}},
		{Sink: s, Prefetch: 10, Args: Table{"x-stream-offset": int64(-1)}},
		{Sink: s, Prefetch: 10, Args: Table{"x-stream-filter": int32(3)}},
	} {
		if _, err := q.Consume(o); err == nil {
			t.Errorf("consume %+v accepted", o)
		}
	}
}

func TestStreamPublishConsumeReplay(t *testing.T) {
	dir := t.TempDir()
	b := New(Options{StreamDir: dir})
	v := b.VHost(DefaultVHost)
	q := declareStream(t, v, "events", nil)
	p := v.Publisher()
	for i := range 10 {
		publishDurable(t, p, "events", fmt.Sprint(i), Table{"n": int32(i)})
	}
	if s := q.Stats(); s.Ready != 10 {
		t.Fatalf("ready %d", s.Ready)
	}
	// Two consumers from first both see everything; acks return credit.
	var sinks [2]*fakeSink
	for i := range sinks {
		sinks[i] = &fakeSink{}
		if _, err := q.Consume(ConsumerOptions{Tag: fmt.Sprint(i), Prefetch: 4, Sink: sinks[i], Args: Table{"x-stream-offset": "first"}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range sinks {
		waitFor(t, "4 deliveries (prefetch)", func() bool { return len(s.deliveries()) == 4 })
	}
	for len(sinks[0].deliveries()) < 10 {
		ds := sinks[0].deliveries()
		n := len(ds)
		q.Ack(ds[n-1].ID, ds[n-2].ID)
		waitFor(t, "more deliveries", func() bool { return len(sinks[0].deliveries()) >= min(n+2, 10) })
	}
	ds := sinks[0].deliveries()
	for i, d := range ds {
		if string(d.Message.Body) != fmt.Sprint(i) || d.Message.Properties.Headers["x-stream-offset"] != int64(i) || d.Message.Properties.Headers["n"] != int32(i) {
			t.Fatalf("delivery %d: %q %v", i, d.Message.Body, d.Message.Properties.Headers)
		}
	}
	if len(sinks[1].deliveries()) != 4 {
		t.Fatalf("the other consumer got %d without acking", len(sinks[1].deliveries()))
	}
	// offset "next" sees only what is published after.
	nx := &fakeSink{}
	if _, err := q.Consume(ConsumerOptions{Prefetch: 10, Sink: nx}); err != nil {
		t.Fatal(err)
	}
	publishDurable(t, p, "events", "10", nil)
	waitFor(t, "the tail", func() bool { return len(nx.deliveries()) == 1 })
	if got := nx.deliveries()[0].Message.Properties.Headers["x-stream-offset"]; got != int64(10) {
		t.Fatalf("next got offset %v", got)
	}
	b.Close()

	// After a restart the stream is still there, from offset 5.
	b2 := newStreamBroker(t, dir)
	q2 := declareStream(t, b2.VHost(DefaultVHost), "events", nil)
	s := &fakeSink{}
	if _, err := q2.Consume(ConsumerOptions{Prefetch: 100, Sink: s, Args: Table{"x-stream-offset": int64(5)}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replay after restart", func() bool { return len(s.deliveries()) == 6 })
	if got := bodies(s.deliveries()); !reflect.DeepEqual(got, []string{"5", "6", "7", "8", "9", "10"}) {
		t.Fatalf("replay %v", got)
	}
}

func TestStreamNamedConsumerResumesAndGroups(t *testing.T) {
	dir := t.TempDir()
	b := New(Options{StreamDir: dir})
	v := b.VHost(DefaultVHost)
	q := declareStream(t, v, "orders", nil)
	p := v.Publisher()
	for i := range 6 {
		publishDurable(t, p, "orders", fmt.Sprint(i), nil)
	}
	s := &fakeSink{}
	c, err := q.Consume(ConsumerOptions{Prefetch: 3, Sink: s, Args: Table{"x-stream-consumer": "billing", "x-stream-offset": "first"}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 deliveries", func() bool { return len(s.deliveries()) == 3 })
	ds := s.deliveries()
	q.Ack(ds[0].ID, ds[1].ID)
	c.Cancel()
	waitFor(t, "stored position", func() bool {
		cs, _ := q.StreamConsumers()
		return len(cs) == 1 && cs[0].Offset == 2
	})
	b.Close()

	b2 := newStreamBroker(t, dir)
	q2 := declareStream(t, b2.VHost(DefaultVHost), "orders", nil)
	a, bb := &fakeSink{}, &fakeSink{}
	ca, err := q2.Consume(ConsumerOptions{Tag: "a", Prefetch: 2, Sink: a, Args: Table{"x-stream-consumer": "billing"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q2.Consume(ConsumerOptions{Tag: "b", Prefetch: 2, Sink: bb, Args: Table{"x-stream-consumer": "billing"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the group's 4 deliveries", func() bool { return len(a.deliveries())+len(bb.deliveries()) == 4 })
	seen := map[string]bool{}
	for _, d := range append(a.deliveries(), bb.deliveries()...) {
		seen[string(d.Message.Body)] = true
	}
	if !reflect.DeepEqual(seen, map[string]bool{"2": true, "3": true, "4": true, "5": true}) {
		t.Fatalf("group got %v", seen)
	}
	// a leaves without acking: b gets a's messages once it has credit.
	var got []Delivery
	got = append(got, a.deliveries()...)
	ca.Cancel()
	for _, d := range bb.deliveries() {
		q2.Ack(d.ID)
	}
	waitFor(t, "redelivery to b", func() bool { return len(bb.deliveries()) == 2+len(got) })
	for _, d := range bb.deliveries()[2:] {
		if !d.Redelivered {
			t.Fatalf("not flagged redelivered: %s", d.Message.Body)
		}
		q2.Ack(d.ID)
	}
	waitFor(t, "position 6", func() bool {
		cs, _ := q2.StreamConsumers()
		return len(cs) == 1 && cs[0].Offset == 6 && len(cs[0].Members) == 1
	})
	if err := q2.SetStreamOffset("billing", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rewind", func() bool { return len(bb.deliveries()) >= 2+len(got)+1 })
	if err := q2.DeleteStreamOffset("nobody"); err == nil {
		t.Fatal("deleting an unknown position succeeded")
	}
	page, err := q2.ReadStream(4, 10)
	if err != nil || len(page) != 2 || page[0].Offset != 4 || string(page[1].Message.Body) != "5" {
		t.Fatalf("page %v %v", page, err)
	}
}

func TestStreamFilter(t *testing.T) {
	b := newStreamBroker(t, t.TempDir())
	v := b.VHost(DefaultVHost)
	q := declareStream(t, v, "f", nil)
	p := v.Publisher()
	publishDurable(t, p, "f", "red", Table{"x-stream-filter-value": "red"})
	publishDurable(t, p, "f", "blue", Table{"x-stream-filter-value": "blue"})
	publishDurable(t, p, "f", "none", nil)
	s, su := &fakeSink{}, &fakeSink{}
	if _, err := q.Consume(ConsumerOptions{Prefetch: 10, Sink: s, Args: Table{"x-stream-offset": "first", "x-stream-filter": "red"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Consume(ConsumerOptions{Prefetch: 10, Sink: su, Args: Table{"x-stream-offset": "first", "x-stream-filter": []any{"blue"}, "x-stream-match-unfiltered": true}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "filtered", func() bool { return len(s.deliveries()) == 1 && len(su.deliveries()) == 2 })
	if got := bodies(su.deliveries()); !reflect.DeepEqual(got, []string{"blue", "none"}) {
		t.Fatalf("got %v", got)
	}
}

func TestStreamRecordRoundTrip(t *testing.T) {
	m := &Message{Exchange: "e", RoutingKey: "k", Body: []byte("body"), Properties: Properties{ContentType: "t", Headers: Table{"a": int64(1)}}}
	got, err := decodeStreamRecord(encodeStreamRecord(m))
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("%+v %v", got, err)
	}
}

func FuzzDecodeStreamRecord(f *testing.F) {
	f.Add(encodeStreamRecord(&Message{Exchange: "e", RoutingKey: "k", Body: []byte("b"), Properties: Properties{Headers: Table{"x": []any{"y"}}}}))
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 200, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeStreamRecord(b)
		if err != nil {
			return
		}
		again, err := decodeStreamRecord(encodeStreamRecord(m))
		if err != nil || string(again.Body) != string(m.Body) {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
	})
}

func FuzzParseStreamConsumeArgs(f *testing.F) {
	for _, s := range []string{"first", "last", "next", "12", "1h", "7D", "-1", "", "x"} {
		f.Add(s, int64(0), true)
	}
	f.Fuzz(func(t *testing.T, s string, n int64, useString bool) {
		var v any = n
		if useString {
			v = s
		}
		_, _ = parseStreamConsumeArgs(Table{"x-stream-offset": v, "x-stream-consumer": s, "x-stream-filter": []any{s}}, time.Unix(1e9, 0))
	})
}

// TestStreamRetention: x-max-length-bytes and x-max-age drop whole closed
// segments, oldest first; a consumer asking for an offset before the
// retained range starts at the first retained message.
func TestStreamRetention(t *testing.T) {
	b := newStreamBroker(t, t.TempDir())
	v := b.VHost(DefaultVHost)
	body := string(make([]byte, 200))
	bySize := declareStream(t, v, "by-size", Table{"x-max-length-bytes": 4000, "x-stream-max-segment-size-bytes": 1000})
	byAge := declareStream(t, v, "by-age", Table{"x-max-age": "1s", "x-stream-max-segment-size-bytes": 1000})
	p := v.Publisher()
	for range 60 {
		publishDurable(t, p, "by-size", body, nil)
		publishDurable(t, p, "by-age", body, nil)
	}
	si, _ := bySize.StreamInfo()
	if si.FirstOffset == 0 || si.NextOffset != 60 || si.Bytes > 4000+2000 {
		t.Fatalf("size retention: %+v", si)
	}
	if s := bySize.Stats(); s.Ready != int(si.NextOffset-si.FirstOffset) {
		t.Fatalf("ready %d, range %+v", s.Ready, si)
	}
	s := &fakeSink{}
	if _, err := bySize.Consume(ConsumerOptions{Prefetch: 100, Sink: s, Args: Table{"x-stream-offset": int64(0)}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the retained messages", func() bool { return len(s.deliveries()) == int(si.NextOffset-si.FirstOffset) })
	if got := s.deliveries()[0].Message.Properties.Headers["x-stream-offset"]; got != int64(si.FirstOffset) {
		t.Fatalf("offset 0 started at %v, first retained is %d", got, si.FirstOffset)
	}
	// Age: the ticker deletes the closed segments once they are older than 1s.
	waitFor(t, "age retention", func() bool {
		ai, _ := byAge.StreamInfo()
		return ai.FirstOffset > 0 && ai.Segments == 1
	})
}

func FuzzStreamArgsFromSTOMP(f *testing.F) {
	for _, s := range []string{"first", "offset=12", "timestamp=1700000000", "offset=-1", "a,b,,c", "true"} {
		f.Add(s, s, s)
	}
	f.Fuzz(func(t *testing.T, offset, filter, unfiltered string) {
		h := map[string]string{"x-stream-offset": offset, "x-stream-filter": filter, "x-stream-match-unfiltered": unfiltered}
		args, err := StreamArgsFromSTOMP(func(k string) (string, bool) { v, ok := h[k]; return v, ok })
		if err != nil {
			return
		}
		// What the STOMP mapping accepts the consume parser must accept,
		// or refuse with a 406 naming an argument, never panic.
		if _, err := parseStreamConsumeArgs(args, time.Unix(1e9, 0)); err != nil && !errors.Is(err, &Error{Code: CodePreconditionFailed}) {
			t.Fatalf("%v", err)
		}
	})
}

// TestStreamConfirmsConcurrentPublishers: every confirm of many concurrent
// publishers comes, and only once its message is readable (durable).
func TestStreamConfirmsConcurrentPublishers(t *testing.T) {
	b := newStreamBroker(t, t.TempDir())
	v := b.VHost(DefaultVHost)
	q := declareStream(t, v, "c", nil)
	const pubs, each = 8, 200
	errs := make(chan error, pubs)
	for i := range pubs {
		go func() {
			p := v.Publisher()
			done := make(chan error, each)
			for j := range each {
				if _, err := p.Publish(&Message{RoutingKey: "c", Body: []byte(fmt.Sprint(i, j))}); err != nil {
					errs <- err
					return
				}
				p.WaitDurable(func(err error) { done <- err })
			}
			for range each {
				if err := <-done; err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range pubs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if si, _ := q.StreamInfo(); si.NextOffset != pubs*each {
		t.Fatalf("%d durable after every confirm, want %d", si.NextOffset, pubs*each)
	}
}

// TestStreamSetOffsetWhileReading: a position set through the management
// API moves a running group; acks of what it delivered before only return
// credit and do not move the position back.
func TestStreamSetOffsetWhileReading(t *testing.T) {
	b := newStreamBroker(t, t.TempDir())
	v := b.VHost(DefaultVHost)
	q := declareStream(t, v, "s", nil)
	p := v.Publisher()
	for i := range 6 {
		publishDurable(t, p, "s", fmt.Sprint(i), nil)
	}
	s := &fakeSink{}
	if _, err := q.Consume(ConsumerOptions{Prefetch: 2, Sink: s, Args: Table{"x-stream-consumer": "g", "x-stream-offset": "first"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two deliveries", func() bool { return len(s.deliveries()) == 2 })
	if err := q.SetStreamOffset("g", 4); err != nil {
		t.Fatal(err)
	}
	old := s.deliveries()
	q.Ack(old[0].ID, old[1].ID)
	waitFor(t, "offsets 4 and 5", func() bool { return len(s.deliveries()) == 4 })
	if got := bodies(s.deliveries()[2:]); !reflect.DeepEqual(got, []string{"4", "5"}) {
		t.Fatalf("after the reset: %v", got)
	}
	if cs, _ := q.StreamConsumers(); len(cs) != 1 || cs[0].Offset != 4 {
		t.Fatalf("old acks moved the position: %+v", cs)
	}
	ds := s.deliveries()
	q.Ack(ds[2].ID, ds[3].ID)
	waitFor(t, "position 6", func() bool {
		cs, _ := q.StreamConsumers()
		return len(cs) == 1 && cs[0].Offset == 6
	})
}

// A reader's position, lag and unacked count for the console; credit
// returned a little at a time (below a quarter of the prefetch) still
// reaches the reader, after refillDelay.
func TestStreamReadersAndSmallCreditRefill(t *testing.T) {
	b := newStreamBroker(t, t.TempDir())
	v := b.VHost(DefaultVHost)
	q := declareStream(t, v, "clicks", nil)
	p := v.Publisher()
	for i := range 120 {
		publishDurable(t, p, "clicks", fmt.Sprint(i), nil)
	}
	s := &fakeSink{}
	if _, err := q.Consume(ConsumerOptions{Tag: "t1", Prefetch: 100, Sink: s, Args: Table{"x-stream-offset": "first"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a full prefetch", func() bool { return len(s.deliveries()) == 100 })
	rs, err := q.StreamReaders()
	want := []StreamReaderInfo{{Consumers: []string{"t1"}, Offset: 100, Lag: 20, Unacked: 100}}
	if err != nil || !reflect.DeepEqual(rs, want) {
		t.Fatalf("readers %+v %v, want %+v", rs, err, want)
	}
	q.Ack(s.deliveries()[0].ID) // one unit of credit: below the refill threshold
	waitFor(t, "the delivery the one unit allows", func() bool { return len(s.deliveries()) == 101 })
	rs, _ = q.StreamReaders()
	if rs[0].Offset != 101 || rs[0].Lag != 19 || rs[0].Unacked != 100 {
		t.Fatalf("after one ack: %+v", rs[0])
	}
	plain, err := v.DeclareQueue("plain", QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.StreamReaders(); err == nil {
		t.Fatal("a classic queue has stream readers")
	}
}

// A named group's position is its lowest outstanding offset, found from
// the delivery order as acks arrive in any order.
func TestStreamGroupPositionFromOrder(t *testing.T) {
	g := &streamGroup{outstanding: map[uint64]struct{}{}}
	deliver := func(off uint64) {
		if _, ok := g.outstanding[off]; !ok {
			g.outstanding[off] = struct{}{}
			g.noteOutstandingLocked(off)
		}
	}
	ack := func(offs ...uint64) {
		for _, off := range offs {
			delete(g.outstanding, off)
			if !g.hasAcked || off > g.maxAcked {
				g.maxAcked, g.hasAcked = off, true
			}
		}
	}
	want := func(pos uint64) {
		t.Helper()
		if got, ok := g.positionLocked(); !ok || got != pos {
			t.Fatalf("position %d %v, want %d", got, ok, pos)
		}
	}
	for off := range uint64(3000) {
		deliver(off)
	}
	ack(5, 3, 0)
	want(1)
	ack(1, 2)
	want(4)
	deliver(4) // again (a redelivery): still once in order
	for off := uint64(4); off < 2500; off++ {
		ack(off)
	}
	want(2500) // the skipped front was compacted meanwhile
	if g.orderHead >= 1024 {
		t.Fatalf("order not compacted: head %d of %d", g.orderHead, len(g.order))
	}
	deliver(10) // lower than the rest (not expected from a reader): inserted in order
	want(10)
	ack(10)
	for off := uint64(2500); off < 3000; off++ {
		ack(off)
	}
	want(3000) // nothing outstanding: after the last ack
}
