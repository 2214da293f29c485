package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

var streamArgs = amqp.Table{"x-queue-type": "stream"}

// publishConfirmed publishes n messages "prefix-i" to the default exchange
// and waits for every confirm.
func publishConfirmed(t testing.TB, ch *amqp.Channel, key, prefix string, from, n int, headers func(i int) amqp.Table) {
	t.Helper()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n))
	for i := from; i < from+n; i++ {
		var h amqp.Table
		if headers != nil {
			h = headers(i)
		}
		mustPublish(t, ch, "", key, amqp.Publishing{Body: []byte(fmt.Sprintf("%s-%d", prefix, i)), Headers: h})
	}
	for range n {
		select {
		case c := <-confirms:
			if !c.Ack {
				t.Fatalf("publish %d nacked", c.DeliveryTag)
			}
		case <-timeAfterWait():
			t.Fatal("no confirm")
		}
	}
}

// streamConsume starts a manual-ack consumer with a prefetch.
func streamConsume(t testing.TB, conn *amqp.Connection, queue string, prefetch int, args amqp.Table) (*amqp.Channel, <-chan amqp.Delivery) {
	t.Helper()
	ch := mustChannel(t, conn)
	if err := ch.Qos(prefetch, 0, false); err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume(queue, "", false, false, false, false, args)
	if err != nil {
		t.Fatalf("consume %s %v: %v", queue, args, err)
	}
	return ch, ds
}

func offsetOf(t testing.TB, d amqp.Delivery) int64 {
	t.Helper()
	off, ok := d.Headers["x-stream-offset"].(int64)
	if !ok {
		t.Fatalf("delivery %q without an x-stream-offset long: %v", d.Body, d.Headers)
	}
	return off
}

// TestStreamDeclareAndConsumeErrors: a stream is durable only, refuses the
// other queue types' arguments, and its consumers need a prefetch and
// manual acks; basic.get is not implemented; bad x-stream-offset values
// get 406 naming the argument.
func TestStreamDeclareAndConsumeErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	conn := s.dial(t)
	ch := mustChannel(t, conn)
	if _, err := ch.QueueDeclare("events", true, false, false, false, amqp.Table{"x-queue-type": "stream", "x-max-age": "7D", "x-max-length-bytes": int64(1 << 30)}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		what                           string
		durable, autoDelete, exclusive bool
		args                           amqp.Table
	}{
		{"non-durable", false, false, false, streamArgs},
		{"exclusive", true, false, true, streamArgs},
		{"auto-delete", true, true, false, streamArgs},
		{"x-max-priority", true, false, false, amqp.Table{"x-queue-type": "stream", "x-max-priority": int32(5)}},
		{"x-message-ttl", true, false, false, amqp.Table{"x-queue-type": "stream", "x-message-ttl": int32(5)}},
		{"x-dead-letter-exchange", true, false, false, amqp.Table{"x-queue-type": "stream", "x-dead-letter-exchange": "dlx"}},
		{"x-overflow", true, false, false, amqp.Table{"x-queue-type": "stream", "x-overflow": "reject-publish"}},
		{"x-single-active-consumer", true, false, false, amqp.Table{"x-queue-type": "stream", "x-single-active-consumer": true}},
		{"x-max-length", true, false, false, amqp.Table{"x-queue-type": "stream", "x-max-length": int32(5)}},
		{"bad x-max-age", true, false, false, amqp.Table{"x-queue-type": "stream", "x-max-age": "1week"}},
	} {
		c := mustChannel(t, conn)
		_, err := c.QueueDeclare("bad-"+r.what, r.durable, r.autoDelete, r.exclusive, false, r.args)
		if amqpCode(err) != amqp.PreconditionFailed {
			t.Errorf("%s: %v, want 406", r.what, err)
		}
	}
	publishConfirmed(t, ch, "events", "m", 0, 3, nil)

	// 540 NOT_IMPLEMENTED is a connection error in AMQP 0-9-1: RabbitMQ
	// closes the connection for these two, and so does Herald.
	c := mustChannel(t, s.dial(t))
	_, _, err := c.Get("events", false)
	expectCode(t, err, amqp.NotImplemented)

	c = mustChannel(t, s.dial(t))
	must(t, c.Qos(10, 0, false))
	_, err = c.Consume("events", "", true, false, false, false, nil) // auto-ack
	expectCode(t, err, amqp.NotImplemented)

	c = mustChannel(t, conn)
	_, err = c.Consume("events", "", false, false, false, false, nil) // no basic.qos
	expectCode(t, err, amqp.PreconditionFailed)

	for _, bad := range []any{"yesterday", int64(-1), 1.5} {
		c = mustChannel(t, conn)
		must(t, c.Qos(10, 0, false))
		_, err = c.Consume("events", "", false, false, false, false, amqp.Table{"x-stream-offset": bad})
		e := expectCode(t, err, amqp.PreconditionFailed)
		if e != nil && !contains(e.Reason, "x-stream-offset") {
			t.Errorf("offset %v: reason %q does not name the argument", bad, e.Reason)
		}
	}
	assertAlive(t, conn)
}

// TestStreamReplayOverAMQP: every consumer sees every message, from the
// position its x-stream-offset names (first, an offset, a timestamp,
// last, next), each delivery with its offset; acks only return credit.
func TestStreamReplayOverAMQP(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	conn := s.dial(t)
	ch := mustChannel(t, conn)
	if _, err := ch.QueueDeclare("log", true, false, false, false, streamArgs); err != nil {
		t.Fatal(err)
	}
	// Publish through an exchange: a stream is bound like any queue.
	must(t, ch.ExchangeDeclare("ev", "topic", true, false, false, false, nil))
	must(t, ch.QueueBind("log", "ev.#", "ev", false, nil))
	before := time.Now().Add(-time.Second)
	publishConfirmed(t, ch, "log", "a", 0, 50, nil)

	_, first := streamConsume(t, conn, "log", 10, amqp.Table{"x-stream-offset": "first"})
	_, fromOffset := streamConsume(t, conn, "log", 10, amqp.Table{"x-stream-offset": int64(40)})
	_, byTime := streamConsume(t, conn, "log", 100, amqp.Table{"x-stream-offset": before})
	_, tail := streamConsume(t, conn, "log", 10, nil) // next

	got := make([]amqp.Delivery, 0, 50)
	for len(got) < 50 {
		d := recv(t, first)
		if off := offsetOf(t, d); off != int64(len(got)) || string(d.Body) != fmt.Sprintf("a-%d", off) {
			t.Fatalf("first: got %q at %d, want offset %d", d.Body, off, len(got))
		}
		got = append(got, d)
		must(t, d.Ack(false))
	}
	for i, d := range recvN(t, fromOffset, 10) {
		if offsetOf(t, d) != int64(40+i) {
			t.Fatalf("from 40: %d at %d", offsetOf(t, d), i)
		}
		must(t, d.Ack(false))
	}
	if ds := recvN(t, byTime, 50); offsetOf(t, ds[0]) != 0 {
		t.Fatalf("by timestamp starts at %d", offsetOf(t, ds[0]))
	}
	expectNoDelivery(t, tail)
	pub := mustChannel(t, conn)
	must(t, pub.Confirm(false))
	mustPublish(t, pub, "ev", "ev.x", amqp.Publishing{Body: []byte("via-exchange")})
	d := recv(t, tail)
	if string(d.Body) != "via-exchange" || offsetOf(t, d) != 50 {
		t.Fatalf("tail got %q at %d", d.Body, offsetOf(t, d))
	}
	_, last := streamConsume(t, conn, "log", 10, amqp.Table{"x-stream-offset": "last"})
	if d := recv(t, last); offsetOf(t, d) != 50 {
		t.Fatalf("last starts at %d", offsetOf(t, d))
	}
	// The prefetch bounds a consumer that does not ack.
	_, slow := streamConsume(t, conn, "log", 5, amqp.Table{"x-stream-offset": "first"})
	recvN(t, slow, 5)
	expectNoDelivery(t, slow)
	q, err := ch.QueueDeclarePassive("log", true, false, false, false, streamArgs)
	if err != nil || q.Messages != 51 {
		t.Fatalf("passive declare: %+v %v", q, err)
	}
}

// TestStreamNamedConsumerSurvivesRestart: a named consumer's position is
// the offset after its last ack; with the same name and no offset it
// resumes there, after a restart too; consumers sharing the name split
// the messages.
func TestStreamNamedConsumerSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, url := startOn(t, dir)
	conn, err := amqp.Dial(url)
	must(t, err)
	ch := mustChannel(t, conn)
	if _, err := ch.QueueDeclare("orders", true, false, false, false, streamArgs); err != nil {
		t.Fatal(err)
	}
	publishConfirmed(t, ch, "orders", "o", 0, 20, nil)
	name := amqp.Table{"x-stream-consumer": "billing", "x-stream-offset": "first"}
	c, ds := streamConsume(t, conn, "orders", 5, name)
	for i := range 7 {
		d := recv(t, ds)
		if offsetOf(t, d) != int64(i) {
			t.Fatalf("got %d", offsetOf(t, d))
		}
		must(t, d.Ack(false))
	}
	must(t, c.Close())
	q, _ := srv.Broker().VHost("/").Queue("orders")
	eventually(t, "position 7 stored", func() bool {
		cs, _ := q.StreamConsumers()
		return len(cs) == 1 && cs[0].Offset == 7
	})
	_ = conn.Close()
	stopServer(t, srv)

	srv, url = startOn(t, dir)
	defer stopServer(t, srv)
	conn, err = amqp.Dial(url)
	must(t, err)
	defer conn.Close()
	byName := amqp.Table{"x-stream-consumer": "billing"}
	_, a := streamConsume(t, conn, "orders", 20, byName)
	_, b := streamConsume(t, conn, "orders", 20, byName)
	seen := map[int64]bool{}
	for len(seen) < 13 {
		var d amqp.Delivery
		select {
		case d = <-a:
		case d = <-b:
		case <-timeAfterWait():
			t.Fatalf("group got %d of 13", len(seen))
		}
		off := offsetOf(t, d)
		if off < 7 || seen[off] {
			t.Fatalf("offset %d delivered again or before the stored position", off)
		}
		seen[off] = true
		must(t, d.Ack(false))
	}
}

// TestStreamManagementAPI: /api/queues shows a stream's type and range;
// a page of history reads as POST .../get answers plus offset; named
// consumers' positions are listed, set and forgotten.
func TestStreamManagementAPI(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols())
	conn := s.dial(t)
	ch := mustChannel(t, conn)
	if _, err := ch.QueueDeclare("audit", true, false, false, false, streamArgs); err != nil {
		t.Fatal(err)
	}
	publishConfirmed(t, ch, "audit", "e", 0, 10, nil)
	base := "http://" + s.HTTPAddr().String()
	st, body := httpDo(t, "GET", base+"/api/queues/%2F/audit", "guest", "guest", nil)
	var q struct {
		Type        string `json:"type"`
		Messages    int    `json:"messages"`
		FirstOffset *int64 `json:"first_offset"`
		LastOffset  *int64 `json:"last_offset"`
		Bytes       *int64 `json:"message_bytes"`
	}
	must(t, json.Unmarshal(body, &q))
	if st != 200 || q.Type != "stream" || q.Messages != 10 || q.FirstOffset == nil || *q.FirstOffset != 0 || *q.LastOffset != 9 || *q.Bytes <= 0 {
		t.Fatalf("queue: %d %s", st, body)
	}
	st, body = httpDo(t, "GET", base+"/api/streams/%2F/audit/messages?offset=8&limit=5", "guest", "guest", nil)
	var page []struct {
		Offset     uint64 `json:"offset"`
		Payload    string `json:"payload"`
		RoutingKey string `json:"routing_key"`
	}
	must(t, json.Unmarshal(body, &page))
	if st != 200 || len(page) != 2 || page[0].Offset != 8 || page[1].Payload != "e-9" || page[0].RoutingKey != "audit" {
		t.Fatalf("page: %d %s", st, body)
	}
	if st, _ := httpDo(t, "GET", base+"/api/streams/%2F/audit/messages?offset=-1", "guest", "guest", nil); st != 400 {
		t.Fatalf("negative offset: %d", st)
	}
	if st, _ := httpDo(t, "PUT", base+"/api/streams/%2F/audit/consumers/reports", "guest", "guest", map[string]any{"offset": 4}); st != 204 {
		t.Fatalf("put position: %d", st)
	}
	_, ds := streamConsume(t, conn, "audit", 10, amqp.Table{"x-stream-consumer": "reports"})
	if d := recv(t, ds); offsetOf(t, d) != 4 {
		t.Fatalf("resumed at %d, want 4", offsetOf(t, d))
	}
	st, body = httpDo(t, "GET", base+"/api/streams/%2F/audit/consumers", "guest", "guest", nil)
	var cs []struct {
		Name    string   `json:"name"`
		Offset  uint64   `json:"offset"`
		Members []string `json:"members"`
	}
	must(t, json.Unmarshal(body, &cs))
	if st != 200 || len(cs) != 1 || cs[0].Name != "reports" || cs[0].Offset != 4 || len(cs[0].Members) != 1 {
		t.Fatalf("consumers: %d %s", st, body)
	}
	// The console's view of the stream: range, size, who reads where.
	var sv struct {
		FirstOffset uint64 `json:"first_offset"`
		LastOffset  int64  `json:"last_offset"`
		Messages    uint64 `json:"messages"`
		Bytes       int64  `json:"message_bytes"`
		Segments    int    `json:"segments"`
		Readers     []struct {
			Name      string   `json:"name"`
			Consumers []string `json:"consumers"`
			Offset    uint64   `json:"offset"`
			Lag       uint64   `json:"lag"`
			Unacked   int      `json:"unacked"`
		} `json:"readers"`
		Consumers []struct {
			Name   string `json:"name"`
			Offset uint64 `json:"offset"`
		} `json:"consumers"`
	}
	eventually(t, "the reader's position in GET /api/streams/%2F/audit", func() bool {
		st, body = httpDo(t, "GET", base+"/api/streams/%2F/audit", "guest", "guest", nil)
		must(t, json.Unmarshal(body, &sv))
		return st == 200 && len(sv.Readers) == 1 && sv.Readers[0].Offset == 10
	})
	if r := sv.Readers[0]; sv.FirstOffset != 0 || sv.LastOffset != 9 || sv.Messages != 10 || sv.Bytes <= 0 || sv.Segments != 1 ||
		r.Name != "reports" || len(r.Consumers) != 1 || r.Lag != 0 || r.Unacked != 6 || len(sv.Consumers) != 1 || sv.Consumers[0].Offset != 4 {
		t.Fatalf("stream: %s", body)
	}
	if st, _ := httpDo(t, "GET", base+"/api/streams/%2F/nothing", "guest", "guest", nil); st != 404 {
		t.Fatalf("unknown stream: %d", st)
	}
	if st, _ := httpDo(t, "DELETE", base+"/api/streams/%2F/audit/consumers/reports", "guest", "guest", nil); st != 204 {
		t.Fatalf("delete position: %d", st)
	}
	if st, _ := httpDo(t, "DELETE", base+"/api/streams/%2F/audit/consumers/reports", "guest", "guest", nil); st != 404 {
		t.Fatalf("delete again: %d", st)
	}
}

// TestStreamDeleteRemovesFiles: deleting a stream removes its directory.
func TestStreamDeleteRemovesFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, url := startOn(t, dir)
	defer stopServer(t, srv)
	conn, err := amqp.Dial(url)
	must(t, err)
	defer conn.Close()
	ch := mustChannel(t, conn)
	if _, err := ch.QueueDeclare("gone", true, false, false, false, streamArgs); err != nil {
		t.Fatal(err)
	}
	publishConfirmed(t, ch, "gone", "g", 0, 3, nil)
	streams := filepath.Join(dir, "streams", "v-%2F")
	if ents, _ := os.ReadDir(streams); len(ents) != 1 {
		t.Fatalf("stream directories: %v", ents)
	}
	if _, err := ch.QueueDelete("gone", false, false, false); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(streams); len(ents) != 0 {
		t.Fatalf("stream directory left after delete: %v", ents)
	}
}
