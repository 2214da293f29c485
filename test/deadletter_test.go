package test

import (
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/broker"
)

// declare declares a named, non-durable, auto-delete=false queue with args.
func declare(t testing.TB, ch *amqp.Channel, name string, args amqp.Table) {
	t.Helper()
	if _, err := ch.QueueDeclare(name, false, false, false, false, args); err != nil {
		t.Fatalf("queue.declare %s: %v", name, err)
	}
}

func deathOf(t testing.TB, d amqp.Delivery) amqp.Table {
	t.Helper()
	deaths, ok := d.Headers["x-death"].([]any)
	if !ok || len(deaths) == 0 {
		t.Fatalf("no x-death header in %v", d.Headers)
	}
	first, ok := deaths[0].(amqp.Table)
	if !ok {
		t.Fatalf("x-death[0] is %T", deaths[0])
	}
	return first
}

func TestDeadLetterOnReject(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ch := mustChannel(t, s.dial(t))
	declare(t, ch, "dlq-reject", nil)
	declare(t, ch, "work-reject", amqp.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq-reject"})
	if err := ch.ExchangeDeclare("orders", "direct", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("work-reject", "new", "orders", false, nil); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second).Truncate(time.Second)
	mustPublish(t, ch, "orders", "new", amqp.Publishing{Body: []byte("bad"), Headers: amqp.Table{"keep": "me"}})
	d := recv(t, mustConsume(t, ch, "work-reject", "", false))
	if err := d.Reject(false); err != nil {
		t.Fatal(err)
	}
	dl := recv(t, mustConsume(t, ch, "dlq-reject", "", true))
	if string(dl.Body) != "bad" || dl.Headers["keep"] != "me" {
		t.Fatalf("dead letter lost its body or headers: %q %v", dl.Body, dl.Headers)
	}
	if dl.Exchange != "" || dl.RoutingKey != "dlq-reject" {
		t.Errorf("dead letter routed via %q/%q", dl.Exchange, dl.RoutingKey)
	}
	x := deathOf(t, dl)
	if x["count"] != int64(1) || x["reason"] != "rejected" || x["queue"] != "work-reject" || x["exchange"] != "orders" {
		t.Errorf("x-death = %v", x)
	}
	if keys, _ := x["routing-keys"].([]any); len(keys) != 1 || keys[0] != "new" {
		t.Errorf("x-death routing-keys = %v", x["routing-keys"])
	}
	if ts, ok := x["time"].(time.Time); !ok || ts.Before(before) || ts.After(time.Now().Add(time.Second)) {
		t.Errorf("x-death time = %v", x["time"])
	}
	if dl.Headers["x-first-death-reason"] != "rejected" || dl.Headers["x-first-death-queue"] != "work-reject" || dl.Headers["x-first-death-exchange"] != "orders" {
		t.Errorf("x-first-death-* = %v", dl.Headers)
	}
}

func TestDeadLetterOnExpiryAndTTLRules(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ch := mustChannel(t, s.dial(t))
	declare(t, ch, "dlq-ttl", nil)
	declare(t, ch, "ttl-q", amqp.Table{"x-message-ttl": int32(150), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq-ttl"})
	start := time.Now()
	// Queue TTL 150ms; a per-message expiration of 30ms wins (lower), and
	// one of 10s loses to the queue's 150ms.
	mustPublish(t, ch, "", "ttl-q", amqp.Publishing{Body: []byte("queue-ttl")})
	mustPublish(t, ch, "", "ttl-q", amqp.Publishing{Body: []byte("own-30ms"), Expiration: "30"})
	mustPublish(t, ch, "", "ttl-q", amqp.Publishing{Body: []byte("own-10s"), Expiration: "10000"})
	dls := mustConsume(t, ch, "dlq-ttl", "", true)
	first := recv(t, dls)
	if string(first.Body) != "own-30ms" {
		t.Fatalf("first expired %q, want own-30ms (the message's own lower TTL)", first.Body)
	}
	if el := time.Since(start); el > time.Second { // well before the queue TTL counts only on a quiet machine; order proves the lower TTL won
		t.Errorf("30ms message expired only after %v", el)
	}
	if first.Expiration != "" {
		t.Errorf("dead letter keeps expiration %q; it must be removed", first.Expiration)
	}
	if x := deathOf(t, first); x["reason"] != "expired" || x["original-expiration"] != "30" {
		t.Errorf("x-death = %v", x)
	}
	rest := recvN(t, dls, 2)
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("queue-TTL messages expired after %v, before 150ms", el)
	}
	for _, d := range rest {
		if string(d.Body) == "own-30ms" {
			t.Errorf("duplicate dead letter")
		}
	}
	// Expired messages never reach a consumer.
	declare(t, ch, "ttl-gone", amqp.Table{"x-message-ttl": int32(20)})
	mustPublish(t, ch, "", "ttl-gone", amqp.Publishing{Body: []byte("x")})
	eventually(t, "message expiry", func() bool { return queueDepth(t, ch, "ttl-gone") == 0 })
	if _, ok, err := ch.Get("ttl-gone", true); ok || err != nil {
		t.Fatalf("got an expired message (ok=%v err=%v)", ok, err)
	}
	// An invalid expiration closes the channel with 406.
	ch2 := mustChannel(t, s.dial(t))
	closed := ch2.NotifyClose(make(chan *amqp.Error, 1))
	_ = ch2.Publish("", "ttl-gone", false, false, amqp.Publishing{Expiration: "soon"})
	if e := waitClose(t, closed); e.Code != amqp.PreconditionFailed {
		t.Errorf("invalid expiration closed with %v", e)
	}
}

func TestMaxLengthOverflow(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ch := mustChannel(t, s.dial(t))
	declare(t, ch, "dlq-len", nil)
	declare(t, ch, "drop-head", amqp.Table{"x-max-length": int32(2), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq-len"})
	for i := 1; i <= 4; i++ {
		mustPublish(t, ch, "", "drop-head", amqp.Publishing{Body: []byte(fmt.Sprint(i))})
	}
	var got []string
	for {
		d, ok, err := ch.Get("drop-head", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, string(d.Body))
	}
	if fmt.Sprint(got) != "[3 4]" {
		t.Errorf("drop-head kept %v, want [3 4]", got)
	}
	dropped := recvN(t, mustConsume(t, ch, "dlq-len", "", true), 2)
	if string(dropped[0].Body) != "1" || string(dropped[1].Body) != "2" || deathOf(t, dropped[0])["reason"] != "maxlen" {
		t.Errorf("dead-lettered %q %q reason %v", dropped[0].Body, dropped[1].Body, deathOf(t, dropped[0])["reason"])
	}

	declare(t, ch, "by-bytes", amqp.Table{"x-max-length-bytes": int32(10)})
	for _, b := range []string{"aaaa", "bbbb", "cccc"} {
		mustPublish(t, ch, "", "by-bytes", amqp.Publishing{Body: []byte(b)})
	}
	if n := queueDepth(t, ch, "by-bytes"); n != 2 {
		t.Errorf("x-max-length-bytes 10 with 4-byte messages holds %d, want 2", n)
	}

	// reject-publish: the publisher gets a nack; reject-publish-dlx also dead-letters.
	declare(t, ch, "dlq-rej", nil)
	declare(t, ch, "reject", amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"})
	declare(t, ch, "reject-dlx", amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish-dlx", "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq-rej"})
	pc := mustChannel(t, s.dial(t))
	if err := pc.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := pc.NotifyPublish(make(chan amqp.Confirmation, 8))
	for _, q := range []string{"reject", "reject", "reject-dlx", "reject-dlx"} {
		mustPublish(t, pc, "", q, amqp.Publishing{Body: []byte(q)})
	}
	want := []bool{true, false, true, false}
	for i, w := range want {
		select {
		case c := <-confirms:
			if c.DeliveryTag != uint64(i+1) || c.Ack != w {
				t.Errorf("confirm %d: tag %d ack %v, want ack %v", i+1, c.DeliveryTag, c.Ack, w)
			}
		case <-timeAfterWait():
			t.Fatalf("no confirm %d", i+1)
		}
	}
	if n := queueDepth(t, ch, "reject"); n != 1 {
		t.Errorf("reject-publish queue holds %d, want 1", n)
	}
	if d := recv(t, mustConsume(t, ch, "dlq-rej", "", true)); deathOf(t, d)["reason"] != "maxlen" {
		t.Errorf("reject-publish-dlx dead letter: %v", d.Headers)
	}
}

func TestDeliveryLimitAndCount(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ch := mustChannel(t, s.dial(t))
	declare(t, ch, "poison-dlq", nil)
	declare(t, ch, "poison", amqp.Table{"x-delivery-limit": int32(2), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "poison-dlq"})
	mustPublish(t, ch, "", "poison", amqp.Publishing{Body: []byte("p")})
	ds := mustConsume(t, ch, "poison", "", false)
	for i := 0; i < 3; i++ {
		d := recv(t, ds)
		count, _ := d.Headers["x-delivery-count"].(int64)
		if int(count) != i || d.Redelivered != (i > 0) {
			t.Errorf("delivery %d: x-delivery-count %v redelivered %v", i+1, d.Headers["x-delivery-count"], d.Redelivered)
		}
		if err := d.Nack(false, true); err != nil {
			t.Fatal(err)
		}
	}
	expectNoDelivery(t, ds)
	dl := recv(t, mustConsume(t, ch, "poison-dlq", "", true))
	if deathOf(t, dl)["reason"] != "delivery_limit" {
		t.Errorf("x-death = %v", deathOf(t, dl))
	}
}

func TestDeadLetterCycleIsBroken(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ch := mustChannel(t, s.dial(t))
	// Two queues that dead-letter expired messages into each other.
	declare(t, ch, "cycle-a", amqp.Table{"x-message-ttl": int32(10), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "cycle-b"})
	declare(t, ch, "cycle-b", amqp.Table{"x-message-ttl": int32(10), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "cycle-a"})
	mustPublish(t, ch, "", "cycle-a", amqp.Publishing{Body: []byte("loop")})
	eventually(t, "the cycling message to be dropped", func() bool {
		return queueDepth(t, ch, "cycle-a") == 0 && queueDepth(t, ch, "cycle-b") == 0
	})
	a, _ := s.Broker().VHost("/").Queue("cycle-a")
	b, _ := s.Broker().VHost("/").Queue("cycle-b")
	// a -> (expired) -> b -> (expired) -> back to a, where it already died:
	// a cycle with no rejection in it, so RabbitMQ drops it there.
	if pa, pb := a.Stats().Published, b.Stats().Published; pa != 1 || pb != 1 {
		t.Errorf("published into a=%d b=%d; want 1 and 1", pa, pb)
	}
}

func TestPriorityQueue(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ch := mustChannel(t, s.dial(t))
	declare(t, ch, "prio", amqp.Table{"x-max-priority": int32(5)})
	for i, p := range []uint8{0, 3, 9, 3, 1} { // 9 is capped at 5
		mustPublish(t, ch, "", "prio", amqp.Publishing{Priority: p, Body: []byte(fmt.Sprint(i))})
	}
	var got []string
	for range 5 {
		d, ok, err := ch.Get("prio", true)
		if err != nil || !ok {
			t.Fatalf("get: %v %v", ok, err)
		}
		got = append(got, string(d.Body))
	}
	if fmt.Sprint(got) != "[2 1 3 4 0]" {
		t.Errorf("priority order %v, want [2 1 3 4 0]", got)
	}
	ch2 := mustChannel(t, s.dial(t))
	if _, err := ch2.QueueDeclare("prio-bad", false, false, false, false, amqp.Table{"x-max-priority": int32(300)}); amqpCode(err) != amqp.PreconditionFailed {
		t.Errorf("x-max-priority 300: %v", err)
	}
}

func TestSingleActiveConsumerAndConsumerPriority(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	conn := s.dial(t)
	ch := mustChannel(t, conn)
	declare(t, ch, "sac", amqp.Table{"x-single-active-consumer": true})
	c1, c2 := mustChannel(t, conn), mustChannel(t, conn)
	d1 := mustConsume(t, c1, "sac", "first", true)
	d2 := mustConsume(t, c2, "sac", "second", true)
	for i := range 3 {
		mustPublish(t, ch, "", "sac", amqp.Publishing{Body: []byte(fmt.Sprint(i))})
	}
	recvN(t, d1, 3)
	expectNoDelivery(t, d2)
	if err := c1.Cancel("first", false); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, ch, "", "sac", amqp.Publishing{Body: []byte("after")})
	if d := recv(t, d2); string(d.Body) != "after" {
		t.Errorf("second consumer got %q", d.Body)
	}

	declare(t, ch, "cprio", nil)
	low, high := mustChannel(t, conn), mustChannel(t, conn)
	dl, err := low.Consume("cprio", "low", true, false, false, false, amqp.Table{"x-priority": int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	dh, err := high.Consume("cprio", "high", true, false, false, false, amqp.Table{"x-priority": int32(10)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		mustPublish(t, ch, "", "cprio", amqp.Publishing{Body: []byte(fmt.Sprint(i))})
	}
	recvN(t, dh, 5)
	expectNoDelivery(t, dl)
}

func TestDelayedMessageExchange(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ch := mustChannel(t, s.dial(t))
	if err := ch.ExchangeDeclare("later", "x-delayed-message", false, true, false, false, amqp.Table{"x-delayed-type": "direct"}); err != nil {
		t.Fatal(err)
	}
	q := tempQueue(t, ch)
	if err := ch.QueueBind(q, "k", "later", false, nil); err != nil {
		t.Fatal(err)
	}
	ds := mustConsume(t, ch, q, "", true)
	sent := time.Now()
	mustPublish(t, ch, "later", "k", amqp.Publishing{Body: []byte("slow"), Headers: amqp.Table{"x-delay": int32(200)}})
	mustPublish(t, ch, "later", "k", amqp.Publishing{Body: []byte("fast"), Headers: amqp.Table{"x-delay": int32(50)}})
	mustPublish(t, ch, "later", "k", amqp.Publishing{Body: []byte("now")})
	want := []struct {
		body string
		due  time.Duration
	}{{"now", 0}, {"fast", 50 * time.Millisecond}, {"slow", 200 * time.Millisecond}}
	for _, w := range want {
		d := recv(t, ds)
		late := time.Since(sent) - w.due
		if string(d.Body) != w.body || late < 0 {
			t.Errorf("got %q %v after due (want %q, never early)", d.Body, late, w.body)
		}
		if late > time.Second { // generous for -race on a shared machine
			t.Errorf("%q delivered %v late", d.Body, late)
		}
	}
	ch2 := mustChannel(t, s.dial(t))
	err := ch2.ExchangeDeclare("bad-delay", "x-delayed-message", false, true, false, false, amqp.Table{"x-delayed-type": "nope"})
	if amqpCode(err) != amqp.PreconditionFailed {
		t.Errorf("invalid x-delayed-type: %v", err)
	}
}

func TestConsumerTimeout(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	conn := s.dial(t)
	ch := mustChannel(t, conn)
	declare(t, ch, "slow-work", amqp.Table{"x-consumer-timeout": int32(200)})
	mustPublish(t, ch, "", "slow-work", amqp.Publishing{Body: []byte("job")})
	worker := mustChannel(t, conn)
	closed := worker.NotifyClose(make(chan *amqp.Error, 1))
	d := recv(t, mustConsume(t, worker, "slow-work", "", false))
	if string(d.Body) != "job" {
		t.Fatalf("got %q", d.Body)
	}
	e := waitClose(t, closed)
	if e.Code != amqp.PreconditionFailed {
		t.Fatalf("channel closed with %v, want 406", e)
	}
	// The job went back to the queue for someone else.
	other := mustChannel(t, conn)
	again := recv(t, mustConsume(t, other, "slow-work", "", false))
	if string(again.Body) != "job" || !again.Redelivered {
		t.Errorf("redelivered %q redelivered=%v", again.Body, again.Redelivered)
	}
	if err := again.Ack(false); err != nil {
		t.Fatal(err)
	}
	assertAlive(t, conn)
}

func TestQueueExpires(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	conn := s.dial(t)
	ch := mustChannel(t, conn)
	declare(t, ch, "idle", amqp.Table{"x-expires": int32(100)})
	eventually(t, "x-expires to delete the unused queue", func() bool { return !queueExists(t, conn, "idle") })
}

func TestQueueArgumentValidation(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	conn := s.dial(t)
	for _, args := range []amqp.Table{
		{"x-message-ttl": "soon"},
		{"x-max-length": int32(-1)},
		{"x-overflow": "explode"},
		{"x-single-active-consumer": "yes"},
	} {
		ch := mustChannel(t, conn)
		_, err := ch.QueueDeclare("args-bad", false, true, false, false, args)
		e := expectCode(t, err, amqp.PreconditionFailed)
		for k := range args {
			if !contains(e.Reason, k) {
				t.Errorf("error %q does not name the argument %s", e.Reason, k)
			}
		}
	}
	ch := mustChannel(t, conn)
	if _, err := ch.QueueDeclare("args-unknown", false, true, false, false, amqp.Table{"x-something-new": "ok"}); err != nil {
		t.Errorf("unknown x- argument refused: %v", err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestPolicies(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ch := mustChannel(t, s.dial(t))
	v := s.Broker().VHost("/")
	declare(t, ch, "pol-limited", nil)
	declare(t, ch, "pol-own-arg", amqp.Table{"x-max-length": int32(3)})
	for i := range 5 {
		mustPublish(t, ch, "", "pol-limited", amqp.Publishing{Body: []byte(fmt.Sprint(i))})
		mustPublish(t, ch, "", "pol-own-arg", amqp.Publishing{Body: []byte(fmt.Sprint(i))})
	}
	if err := v.PutPolicy(broker.Policy{Name: "cap", Pattern: "^pol-", Definition: broker.Table{"max-length": 1}}); err != nil {
		t.Fatal(err)
	}
	if n := queueDepth(t, ch, "pol-limited"); n != 1 {
		t.Errorf("policy max-length 1 applied now: depth %d", n)
	}
	if n := queueDepth(t, ch, "pol-own-arg"); n != 3 {
		t.Errorf("the argument wins over the policy: depth %d, want 3", n)
	}
	declare(t, ch, "pol-new", nil)
	mustPublish(t, ch, "", "pol-new", amqp.Publishing{Body: []byte("a")})
	mustPublish(t, ch, "", "pol-new", amqp.Publishing{Body: []byte("b")})
	if n := queueDepth(t, ch, "pol-new"); n != 1 {
		t.Errorf("policy applies to new queues: depth %d", n)
	}
	if err := v.DeletePolicy("cap"); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, ch, "", "pol-new", amqp.Publishing{Body: []byte("c")})
	if n := queueDepth(t, ch, "pol-new"); n != 2 {
		t.Errorf("after deleting the policy: depth %d, want 2", n)
	}
	if err := v.PutPolicy(broker.Policy{Name: "bad", Pattern: ".*", Definition: broker.Table{"max-length": "many"}}); err == nil {
		t.Error("a policy with an invalid value was accepted")
	}
}
