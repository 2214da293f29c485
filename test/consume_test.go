package test

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestFIFOSeveralProducers: P producers on their own connections publish
// concurrently; every message arrives exactly once and each producer's
// messages arrive in the order it sent them.
func TestFIFOSeveralProducers(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q, err := ch.QueueDeclare("fifo", false, false, false, false, nil)
	must(t, err)
	const producers, perProducer = 4, 500
	ds := mustConsume(t, ch, q.Name, "", true)

	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := 0; p < producers; p++ {
		pc := s.dial(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			pch, err := pc.Channel()
			if err != nil {
				errs <- err
				return
			}
			for i := 0; i < perProducer; i++ {
				if err := pch.Publish("", "fifo", false, false, amqp.Publishing{Body: []byte(fmt.Sprintf("%d:%d", p, i))}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	next := make([]int, producers)
	for _, d := range recvN(t, ds, producers*perProducer) {
		var p, i int
		if _, err := fmt.Sscanf(string(d.Body), "%d:%d", &p, &i); err != nil {
			t.Fatalf("bad body %q", d.Body)
		}
		if i != next[p] {
			t.Fatalf("producer %d: got message %d, want %d (order broken or duplicate)", p, i, next[p])
		}
		next[p]++
	}
	expectNoDelivery(t, ds)
}

// TestCompetingConsumersExactlyOnce: N consumers on one queue; each of M
// messages goes to exactly one, and every consumer gets a share.
func TestCompetingConsumersExactlyOnce(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	setup := mustChannel(t, c)
	_, err := setup.QueueDeclare("work", false, false, false, false, nil)
	must(t, err)
	const consumers, messages = 4, 2000

	var mu sync.Mutex
	seen := make(map[string]int)
	perConsumer := make([]int, consumers)
	var got sync.WaitGroup
	got.Add(messages)
	for i := 0; i < consumers; i++ {
		cc := s.dial(t)
		cch := mustChannel(t, cc)
		must(t, cch.Qos(10, 0, false))
		ds := mustConsume(t, cch, "work", "worker-"+strconv.Itoa(i), false)
		go func() {
			for d := range ds {
				mu.Lock()
				seen[string(d.Body)]++
				perConsumer[i]++
				mu.Unlock()
				_ = d.Ack(false)
				got.Done()
			}
		}()
	}
	pch := mustChannel(t, c)
	for i := 0; i < messages; i++ {
		mustPublish(t, pch, "", "work", amqp.Publishing{Body: []byte(strconv.Itoa(i))})
	}
	waitGroup(t, &got)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != messages {
		t.Fatalf("%d distinct messages delivered, want %d", len(seen), messages)
	}
	for b, n := range seen {
		if n != 1 {
			t.Fatalf("message %s delivered %d times", b, n)
		}
	}
	for i, n := range perConsumer {
		// Round-robin: with 4 consumers each should get a fair share; demand at least a tenth.
		if n < messages/consumers/10 {
			t.Fatalf("consumer %d got only %d of %d messages: %v", i, n, messages, perConsumer)
		}
	}
}

func waitGroup(t testing.TB, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for work to finish")
	}
}

func TestPrefetchPerConsumer(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	for i := 0; i < 20; i++ {
		mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte(strconv.Itoa(i))})
	}
	const n = 3
	must(t, ch.Qos(n, 0, false))
	ds := mustConsume(t, ch, q, "", false)
	held := recvN(t, ds, n)
	expectNoDelivery(t, ds)
	for i, d := range held {
		if string(d.Body) != strconv.Itoa(i) {
			t.Fatalf("delivery %d = %q", i, d.Body)
		}
	}
	// Acking one frees exactly one slot.
	must(t, held[0].Ack(false))
	d := recv(t, ds)
	if string(d.Body) != "3" {
		t.Fatalf("next = %q, want 3", d.Body)
	}
	expectNoDelivery(t, ds)
	// Acking all (multiple) frees all three slots.
	must(t, d.Ack(true))
	more := recvN(t, ds, n)
	if string(more[0].Body) != "4" || string(more[2].Body) != "6" {
		t.Fatalf("after multiple ack got %q..%q", more[0].Body, more[2].Body)
	}
	expectNoDelivery(t, ds)

	// A second consumer on another channel has its own window.
	ch2 := mustChannel(t, c)
	must(t, ch2.Qos(2, 0, false))
	ds2 := mustConsume(t, ch2, q, "", false)
	recvN(t, ds2, 2)
	expectNoDelivery(t, ds2)
	if got := queueDepth(t, ch2, q); got != 20-n-1-n-2 {
		t.Fatalf("ready = %d, want %d", got, 20-n-1-n-2)
	}
}

// TestPrefetchGlobal: basic.qos global=true is RabbitMQ's channel-wide
// limit shared by every consumer on the channel.
func TestPrefetchGlobal(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q1, q2 := tempQueue(t, ch), tempQueue(t, ch)
	for i := 0; i < 10; i++ {
		mustPublish(t, ch, "", q1, amqp.Publishing{Body: []byte("a" + strconv.Itoa(i))})
		mustPublish(t, ch, "", q2, amqp.Publishing{Body: []byte("b" + strconv.Itoa(i))})
	}
	cch := mustChannel(t, c)
	must(t, cch.Qos(4, 0, true))
	ds1 := mustConsume(t, cch, q1, "c1", false)
	ds2 := mustConsume(t, cch, q2, "c2", false)
	var held []amqp.Delivery
	deadline := time.After(waitTimeout)
	for len(held) < 4 {
		select {
		case d := <-ds1:
			held = append(held, d)
		case d := <-ds2:
			held = append(held, d)
		case <-deadline:
			t.Fatalf("only %d deliveries within the global window of 4", len(held))
		}
	}
	select {
	case d := <-ds1:
		t.Fatalf("window exceeded: %q", d.Body)
	case d := <-ds2:
		t.Fatalf("window exceeded: %q", d.Body)
	case <-time.After(quietPeriod):
	}
	// Ack one: exactly one more, from either consumer.
	must(t, held[0].Ack(false))
	select {
	case <-ds1:
	case <-ds2:
	case <-time.After(waitTimeout):
		t.Fatal("no delivery after freeing one slot of the global window")
	}
	select {
	case d := <-ds1:
		t.Fatalf("window exceeded after ack: %q", d.Body)
	case d := <-ds2:
		t.Fatalf("window exceeded after ack: %q", d.Body)
	case <-time.After(quietPeriod):
	}
}

func TestNackRejectRequeue(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	for _, b := range []string{"m1", "m2", "m3", "m4"} {
		mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte(b)})
	}
	must(t, ch.Qos(1, 0, false))
	ds := mustConsume(t, ch, q, "", false)

	d := recv(t, ds)
	if string(d.Body) != "m1" || d.Redelivered {
		t.Fatalf("first = %q redelivered=%v", d.Body, d.Redelivered)
	}
	must(t, d.Nack(false, true))
	// Requeued to the head: m1 again, now flagged redelivered.
	d = recv(t, ds)
	if string(d.Body) != "m1" || !d.Redelivered {
		t.Fatalf("after nack requeue = %q redelivered=%v, want m1 redelivered", d.Body, d.Redelivered)
	}
	must(t, d.Reject(true))
	d = recv(t, ds)
	if string(d.Body) != "m1" || !d.Redelivered {
		t.Fatalf("after reject requeue = %q redelivered=%v", d.Body, d.Redelivered)
	}
	must(t, d.Reject(false)) // gone for good
	d = recv(t, ds)
	if string(d.Body) != "m2" || d.Redelivered {
		t.Fatalf("after reject = %q redelivered=%v, want fresh m2", d.Body, d.Redelivered)
	}
	must(t, d.Nack(false, false)) // also gone
	d = recv(t, ds)
	if string(d.Body) != "m3" {
		t.Fatalf("got %q, want m3", d.Body)
	}
	must(t, d.Ack(false))
	d = recv(t, ds)
	must(t, d.Ack(false))
	expectNoDelivery(t, ds)
	if n := queueDepth(t, ch, q); n != 0 {
		t.Fatalf("queue depth %d, want 0", n)
	}
}

// TestNackMultipleRequeueOrder: several requeued messages come back ahead
// of the rest, in their original order.
func TestNackMultipleRequeueOrder(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	for i := 0; i < 6; i++ {
		mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte(strconv.Itoa(i))})
	}
	must(t, ch.Qos(3, 0, false))
	ds := mustConsume(t, ch, q, "", false)
	first := recvN(t, ds, 3)
	must(t, first[2].Nack(true, true)) // requeue 0,1,2
	again := recvN(t, ds, 3)
	for i, d := range again {
		if string(d.Body) != strconv.Itoa(i) || !d.Redelivered {
			t.Fatalf("redelivery %d = %q redelivered=%v", i, d.Body, d.Redelivered)
		}
	}
	must(t, again[2].Ack(true))
	rest := recvN(t, ds, 3)
	for i, d := range rest {
		if string(d.Body) != strconv.Itoa(i+3) || d.Redelivered {
			t.Fatalf("fresh %d = %q redelivered=%v", i, d.Body, d.Redelivered)
		}
	}
	must(t, rest[2].Ack(true))
}

// TestChannelCloseRequeues: unacked deliveries of a closed channel go back
// to the queue, flagged redelivered, and another consumer gets them.
func TestChannelCloseRequeues(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	_, err := ch.QueueDeclare("handoff", false, true, false, false, nil)
	must(t, err)
	for i := 0; i < 5; i++ {
		mustPublish(t, ch, "", "handoff", amqp.Publishing{Body: []byte(strconv.Itoa(i))})
	}
	c1 := s.dial(t)
	ch1 := mustChannel(t, c1)
	must(t, ch1.Qos(3, 0, false))
	held := recvN(t, mustConsume(t, ch1, "handoff", "", false), 3)

	c2 := s.dial(t)
	ch2 := mustChannel(t, c2)
	ds2 := mustConsume(t, ch2, "handoff", "", false)
	// The second consumer gets the two never-delivered messages (3, 4).
	fresh := recvN(t, ds2, 2)
	assertBodies(t, bodies(fresh), "3", "4")
	must(t, held[0].Ack(false)) // "0" is done; 1 and 2 stay unacked
	must(t, ch1.Close())
	back := recvN(t, ds2, 2)
	for i, d := range back {
		if string(d.Body) != strconv.Itoa(i+1) || !d.Redelivered {
			t.Fatalf("requeued %d = %q redelivered=%v, want %d redelivered", i, d.Body, d.Redelivered, i+1)
		}
	}
	must(t, back[1].Ack(true))
	expectNoDelivery(t, ds2)

	// The same on connection close, without a channel close.
	for i := 0; i < 2; i++ {
		mustPublish(t, ch, "", "handoff", amqp.Publishing{Body: []byte("c" + strconv.Itoa(i))})
	}
	recvN(t, ds2, 2) // held, unacked, by c2
	c3 := s.dial(t)
	ds3 := mustConsume(t, mustChannel(t, c3), "handoff", "", false)
	must(t, c2.Close())
	back = recvN(t, ds3, 2)
	if string(back[0].Body) != "c0" || string(back[1].Body) != "c1" || !back[0].Redelivered || !back[1].Redelivered {
		t.Fatalf("after connection close got %q/%v %q/%v", back[0].Body, back[0].Redelivered, back[1].Body, back[1].Redelivered)
	}
}

func bodies(ds []amqp.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = string(d.Body)
	}
	return out
}

func TestBasicRecover(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	for i := 0; i < 3; i++ {
		mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte(strconv.Itoa(i))})
	}
	ds := mustConsume(t, ch, q, "", false)
	first := recvN(t, ds, 3)
	must(t, first[0].Ack(false))
	must(t, ch.Recover(true))
	again := recvN(t, ds, 2)
	for i, d := range again {
		if string(d.Body) != strconv.Itoa(i+1) || !d.Redelivered {
			t.Fatalf("recovered %d = %q redelivered=%v", i, d.Body, d.Redelivered)
		}
		if d.DeliveryTag <= first[2].DeliveryTag {
			t.Fatalf("redelivery reused tag %d", d.DeliveryTag)
		}
	}
	must(t, again[1].Ack(true))
	expectNoDelivery(t, ds)
}

func TestBasicGet(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	if _, ok, err := ch.Get(q, false); err != nil || ok {
		t.Fatalf("get on empty queue: ok=%v err=%v", ok, err)
	}
	for i := 0; i < 3; i++ {
		mustPublish(t, ch, "amq.direct", "none", amqp.Publishing{})
		mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte(strconv.Itoa(i)), MessageId: "id" + strconv.Itoa(i)})
	}
	d, ok, err := ch.Get(q, false)
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	if string(d.Body) != "0" || d.MessageCount != 2 || d.MessageId != "id0" || d.RoutingKey != q || d.Exchange != "" || d.Redelivered {
		t.Fatalf("get-ok = body %q count %d id %q key %q exchange %q redelivered %v", d.Body, d.MessageCount, d.MessageId, d.RoutingKey, d.Exchange, d.Redelivered)
	}
	// Unacked get: reject with requeue brings it back, redelivered.
	must(t, d.Reject(true))
	d, ok, err = ch.Get(q, false)
	if err != nil || !ok || string(d.Body) != "0" || !d.Redelivered || d.MessageCount != 2 {
		t.Fatalf("after requeue: %q ok=%v redelivered=%v count=%d err=%v", d.Body, ok, d.Redelivered, d.MessageCount, err)
	}
	must(t, d.Ack(false))
	d, ok, _ = ch.Get(q, true)
	if !ok || string(d.Body) != "1" || d.MessageCount != 1 {
		t.Fatalf("get 1: %q %v %d", d.Body, ok, d.MessageCount)
	}
	d, ok, _ = ch.Get(q, true)
	if !ok || string(d.Body) != "2" || d.MessageCount != 0 {
		t.Fatalf("get 2: %q %v %d", d.Body, ok, d.MessageCount)
	}
	if _, ok, err := ch.Get(q, true); err != nil || ok {
		t.Fatalf("get-empty expected: ok=%v err=%v", ok, err)
	}
	// Get from a missing queue: 404 closes the channel.
	_, _, err = ch.Get("no-such-queue", true)
	expectCode(t, err, amqp.NotFound)
	assertAlive(t, c)
}

func TestChannelFlow(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	ds := mustConsume(t, ch, q, "", true)
	pch := mustChannel(t, c)
	mustPublish(t, pch, "", q, amqp.Publishing{Body: []byte("before")})
	if d := recv(t, ds); string(d.Body) != "before" {
		t.Fatalf("got %q", d.Body)
	}
	must(t, ch.Flow(false))
	for i := 0; i < 3; i++ {
		mustPublish(t, pch, "", q, amqp.Publishing{Body: []byte("paused" + strconv.Itoa(i))})
	}
	expectNoDelivery(t, ds)
	if n := queueDepth(t, pch, q); n != 3 {
		t.Fatalf("while paused queue holds %d, want 3", n)
	}
	must(t, ch.Flow(true))
	got := recvN(t, ds, 3)
	assertBodies(t, bodies(got), "paused0", "paused1", "paused2")
}

// TestConsumerCancelNotify: deleting a consumed queue sends basic.cancel,
// which amqp091-go reports through NotifyCancel and by closing the
// delivery channel.
func TestConsumerCancelNotify(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	_, err := ch.QueueDeclare("doomed", false, false, false, false, nil)
	must(t, err)
	cancels := ch.NotifyCancel(make(chan string, 1))
	ds := mustConsume(t, ch, "doomed", "my-consumer", false)

	other := mustChannel(t, s.dial(t))
	mustPublish(t, other, "", "doomed", amqp.Publishing{Body: []byte("x")})
	recv(t, ds)
	n, err := other.QueueDelete("doomed", false, false, false)
	must(t, err)
	if n != 0 {
		t.Fatalf("delete returned %d; the only message was delivered (unacked)", n)
	}
	select {
	case tag := <-cancels:
		if tag != "my-consumer" {
			t.Fatalf("cancel for %q", tag)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no basic.cancel from the server")
	}
	select {
	case _, ok := <-ds:
		if ok {
			t.Fatal("delivery after cancel")
		}
	case <-time.After(waitTimeout):
		t.Fatal("delivery channel not closed after cancel")
	}
	// The channel is still usable; acking the orphaned delivery is harmless.
	assertAlive(t, c)
	q := tempQueue(t, ch)
	mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte("still")})
	if d, ok, err := ch.Get(q, true); err != nil || !ok || string(d.Body) != "still" {
		t.Fatalf("channel unusable after cancel: %v %v", ok, err)
	}
}

func TestClientCancel(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	// Not auto-delete: cancelling the only consumer must keep the queue.
	qd, err := ch.QueueDeclare("", false, false, true, false, nil)
	must(t, err)
	q := qd.Name
	ds := mustConsume(t, ch, q, "ctag", true)
	must(t, ch.Cancel("ctag", false))
	select {
	case _, ok := <-ds:
		if ok {
			t.Fatal("delivery after cancel")
		}
	case <-time.After(waitTimeout):
		t.Fatal("delivery channel not closed after cancel")
	}
	mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte("kept")})
	if d, ok, _ := ch.Get(q, true); !ok || string(d.Body) != "kept" {
		t.Fatal("message not kept for the next consumer")
	}
	// The tag is free again.
	ds = mustConsume(t, ch, q, "ctag", true)
	mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte("again")})
	if d := recv(t, ds); string(d.Body) != "again" {
		t.Fatalf("got %q", d.Body)
	}
}

func TestExclusiveConsumer(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	_, err := ch.QueueDeclare("excl-consume", false, false, false, false, nil)
	must(t, err)
	_, err = ch.Consume("excl-consume", "first", false, true, false, false, nil)
	must(t, err)
	ch2 := mustChannel(t, c)
	_, err = ch2.Consume("excl-consume", "second", false, false, false, false, nil)
	e := expectCode(t, err, amqp.AccessRefused)
	if !strings.Contains(e.Reason, "exclusive") {
		t.Fatalf("reason %q", e.Reason)
	}
	// An exclusive consumer on a queue that already has one is refused too.
	ch3 := mustChannel(t, c)
	_, err = ch3.QueueDeclare("excl-consume2", false, false, false, false, nil)
	must(t, err)
	_, err = ch3.Consume("excl-consume2", "plain", false, false, false, false, nil)
	must(t, err)
	ch4 := mustChannel(t, c)
	_, err = ch4.Consume("excl-consume2", "wants-excl", false, true, false, false, nil)
	expectCode(t, err, amqp.AccessRefused)
	assertAlive(t, c)
	// Once the exclusive consumer is gone, others may consume.
	must(t, ch.Cancel("first", false))
	ch5 := mustChannel(t, c)
	_, err = ch5.Consume("excl-consume", "third", false, false, false, false, nil)
	must(t, err)
}

func TestLargeAndEmptyMessages(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dialConfig(t, amqp.Config{FrameSize: 4096})
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i*31 + i>>8)
	}
	mustPublish(t, ch, "", q, amqp.Publishing{Body: big})
	mustPublish(t, ch, "", q, amqp.Publishing{Body: nil, Headers: amqp.Table{"empty": true}})
	mustPublish(t, ch, "", q, amqp.Publishing{Body: big[:4096-8]}) // exactly one full body frame
	mustPublish(t, ch, "", q, amqp.Publishing{Body: big[:4096-7]}) // one byte over
	ds := mustConsume(t, ch, q, "", true)
	got := recvN(t, ds, 4)
	if !bytes.Equal(got[0].Body, big) {
		t.Fatalf("1 MiB body corrupted: len %d", len(got[0].Body))
	}
	if len(got[1].Body) != 0 || got[1].Headers["empty"] != true {
		t.Fatalf("empty message = %q %v", got[1].Body, got[1].Headers)
	}
	if !bytes.Equal(got[2].Body, big[:4096-8]) || !bytes.Equal(got[3].Body, big[:4096-7]) {
		t.Fatal("frame-boundary bodies corrupted")
	}

	// The same through a connection with the default frame size to a
	// consumer on a small-frame connection, and back.
	c2 := s.dial(t)
	ch2 := mustChannel(t, c2)
	mustPublish(t, ch2, "", q, amqp.Publishing{Body: big})
	if d := recv(t, ds); !bytes.Equal(d.Body, big) {
		t.Fatal("body corrupted between frame sizes")
	}
}

func TestPropertiesRoundTrip(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	ts := time.Unix(1700000000, 0)
	headers := amqp.Table{
		"bool":                                 true,
		"int8":                                 int8(-8),
		"uint8":                                uint8(200),
		"int16":                                int16(-1600),
		"uint16":                               uint16(60000),
		"int32":                                int32(-320000),
		"int":                                  int(-5), // amqp091-go sends a Go int as a 32-bit 'I'
		"uint32":                               uint32(4000000000),
		"int64":                                int64(-1 << 40),
		"float32":                              float32(1.5),
		"float64":                              float64(-2.25),
		"decimal":                              amqp.Decimal{Scale: 2, Value: 12345},
		"string":                               "héllo",
		"bytes":                                []byte{0, 1, 2, 255},
		"time":                                 ts,
		"nil":                                  nil,
		"table":                                amqp.Table{"nested": "yes", "n": int32(1)},
		"array":                                []interface{}{"a", int32(2), true, amqp.Table{"x": "y"}},
		"emptystr":                             "",
		"emptyarr":                             []interface{}{},
		"emptytbl":                             amqp.Table{},
		"long-key-" + strings.Repeat("k", 100): "v",
	}
	pub := amqp.Publishing{
		ContentType:     "application/json",
		ContentEncoding: "gzip",
		Headers:         headers,
		DeliveryMode:    amqp.Persistent,
		Priority:        7,
		CorrelationId:   "corr-1",
		ReplyTo:         "reply-queue",
		Expiration:      "60000",
		MessageId:       "msg-1",
		Timestamp:       ts,
		Type:            "order.created",
		UserId:          "guest",
		AppId:           "herald-test",
		Body:            []byte(`{"a":1}`),
	}
	mustPublish(t, ch, "", q, pub)
	d := recv(t, mustConsume(t, ch, q, "", true))
	checks := []struct {
		name      string
		got, want any
	}{
		{"ContentType", d.ContentType, pub.ContentType},
		{"ContentEncoding", d.ContentEncoding, pub.ContentEncoding},
		{"DeliveryMode", d.DeliveryMode, pub.DeliveryMode},
		{"Priority", d.Priority, pub.Priority},
		{"CorrelationId", d.CorrelationId, pub.CorrelationId},
		{"ReplyTo", d.ReplyTo, pub.ReplyTo},
		{"Expiration", d.Expiration, pub.Expiration},
		{"MessageId", d.MessageId, pub.MessageId},
		{"Timestamp", d.Timestamp.Unix(), ts.Unix()},
		{"Type", d.Type, pub.Type},
		{"UserId", d.UserId, pub.UserId},
		{"AppId", d.AppId, pub.AppId},
		{"Body", string(d.Body), string(pub.Body)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	want := amqp.Table{}
	for k, v := range headers {
		want[k] = v
	}
	want["int"] = int32(-5)
	if got := fmt.Sprintf("%#v", sortedTable(d.Headers)); got != fmt.Sprintf("%#v", sortedTable(want)) {
		t.Errorf("headers differ:\n got %s\nwant %s", got, fmt.Sprintf("%#v", sortedTable(want)))
	}
	if tm, ok := d.Headers["time"].(time.Time); !ok || !tm.Equal(ts) {
		t.Errorf("time header = %#v", d.Headers["time"])
	}
}

// sortedTable renders a table deterministically (time values normalised).
func sortedTable(t amqp.Table) []string {
	var out []string
	for k, v := range t {
		switch x := v.(type) {
		case time.Time:
			v = x.Unix()
		case amqp.Table:
			v = sortedTable(x)
		case []interface{}:
			var parts []string
			for _, e := range x {
				if tt, ok := e.(amqp.Table); ok {
					parts = append(parts, fmt.Sprintf("%v", sortedTable(tt)))
				} else {
					parts = append(parts, fmt.Sprintf("%T:%#v", e, e))
				}
			}
			v = parts
		}
		out = append(out, fmt.Sprintf("%s=%T:%#v", k, v, v))
	}
	sort.Strings(out)
	return out
}

// TestGlobalPrefetchAfterQueueDelete: deliveries from a queue that is then
// deleted still count against the channel-wide window until the client
// settles them (as in RabbitMQ); acking them frees the window for the
// channel's other consumers.
func TestGlobalPrefetchAfterQueueDelete(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	_, err := ch.QueueDeclare("gq1", false, false, false, false, nil)
	must(t, err)
	_, err = ch.QueueDeclare("gq2", false, false, false, false, nil)
	must(t, err)
	for i := 0; i < 2; i++ {
		mustPublish(t, ch, "", "gq1", amqp.Publishing{Body: []byte("one")})
	}
	cch := mustChannel(t, c)
	cancels := cch.NotifyCancel(make(chan string, 1))
	must(t, cch.Qos(2, 0, true))
	held := recvN(t, mustConsume(t, cch, "gq1", "c1", false), 2)
	ds2 := mustConsume(t, cch, "gq2", "c2", false)
	mustPublish(t, ch, "", "gq2", amqp.Publishing{Body: []byte("two")})
	expectNoDelivery(t, ds2) // the window is full

	if _, err := ch.QueueDelete("gq1", false, false, false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cancels:
	case <-time.After(waitTimeout):
		t.Fatal("no cancel notification")
	}
	// Acking the orphans is not an error, and frees the window.
	must(t, held[1].Ack(true))
	if d := recv(t, ds2); string(d.Body) != "two" {
		t.Fatalf("got %q", d.Body)
	}
}

// TestAckMultipleZero: basic.ack multiple=true with tag 0 acks everything
// outstanding on the channel.
func TestAckMultipleZero(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	for i := 0; i < 3; i++ {
		mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte("x")})
	}
	must(t, ch.Qos(3, 0, false))
	ds := mustConsume(t, ch, q, "", false)
	recvN(t, ds, 3)
	mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte("next")})
	expectNoDelivery(t, ds)
	must(t, ch.Ack(0, true))
	if d := recv(t, ds); string(d.Body) != "next" {
		t.Fatalf("got %q", d.Body)
	}
}

// TestBackPressureBacklog: a consumer without a prefetch limit attached to
// a deep queue makes the connection's outbox fill up; deliveries must
// pause and resume (not stall, drop, duplicate or reorder).
func TestBackPressureBacklog(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	qd, err := ch.QueueDeclare("", false, false, true, false, nil) // not auto-delete: consumed twice
	must(t, err)
	q := qd.Name
	must(t, ch.Confirm(false))
	const n = 10000
	// amqp091-go blocks its reader on a full NotifyPublish channel: buffer them all.
	acks := ch.NotifyPublish(make(chan amqp.Confirmation, 2*n))
	body := bytes.Repeat([]byte("b"), 2048) // 20 MB per round: several outbox-fulls
	publishAll := func() {
		for i := 0; i < n; i++ {
			mustPublish(t, ch, "", q, amqp.Publishing{Body: body, MessageId: strconv.Itoa(i)})
		}
		for i := 0; i < n; i++ { // everything is queued once all are confirmed
			if cf := waitConfirm(t, acks); !cf.Ack {
				t.Fatal("nack")
			}
		}
	}
	for _, autoAck := range []bool{true, false} {
		publishAll()
		cch := mustChannel(t, c)
		ds := mustConsume(t, cch, q, "", autoAck)
		deadline := time.After(20 * time.Second)
		for i := 0; i < n; i++ {
			select {
			case d := <-ds:
				if d.MessageId != strconv.Itoa(i) || len(d.Body) != len(body) {
					t.Fatalf("autoAck=%v: delivery %d has id %s", autoAck, i, d.MessageId)
				}
				if !autoAck && i%100 == 99 {
					must(t, d.Ack(true))
				}
			case <-deadline:
				t.Fatalf("autoAck=%v: stalled after %d of %d", autoAck, i, n)
			}
		}
		expectNoDelivery(t, ds)
		must(t, cch.Close())
	}
}

// TestInterleavedLargePublishes: several channels of one small-frame
// connection publish multi-frame messages concurrently; each message is
// reassembled from its own channel's frames.
func TestInterleavedLargePublishes(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dialConfig(t, amqp.Config{FrameSize: 4096})
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	const publishers, each = 4, 30
	var wg sync.WaitGroup
	for p := 0; p < publishers; p++ {
		pch := mustChannel(t, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				body := bytes.Repeat([]byte{byte('a' + p)}, 50000+i)
				if err := pch.Publish("", q, false, false, amqp.Publishing{Body: body, MessageId: fmt.Sprintf("%d-%d", p, i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, d := range recvN(t, mustConsume(t, ch, q, "", true), publishers*each) {
		var p, i int
		if _, err := fmt.Sscanf(d.MessageId, "%d-%d", &p, &i); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(d.Body, bytes.Repeat([]byte{byte('a' + p)}, 50000+i)) {
			t.Fatalf("message %s corrupted (len %d)", d.MessageId, len(d.Body))
		}
	}
}
