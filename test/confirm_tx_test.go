package test

import (
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestPublisherConfirmsAll: every one of 10k publishes is confirmed
// exactly once, in order (amqp091-go expands multiple acks).
func TestPublisherConfirmsAll(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	must(t, ch.Confirm(false))
	const n = 10000
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n))
	done := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if err := ch.Publish("", q, false, false, amqp.Publishing{Body: []byte(strconv.Itoa(i))}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	deadline := time.After(20 * time.Second)
	for want := uint64(1); want <= n; want++ {
		select {
		case cf := <-confirms:
			if !cf.Ack || cf.DeliveryTag != want {
				t.Fatalf("confirm %+v, want ack of %d", cf, want)
			}
		case <-deadline:
			t.Fatalf("only %d of %d confirms", want-1, n)
		}
	}
	must(t, <-done)
	select {
	case cf := <-confirms:
		t.Fatalf("extra confirm %+v", cf)
	case <-time.After(quietPeriod):
	}
	if got := queueDepth(t, ch, q); got != n {
		t.Fatalf("queue holds %d, want %d", got, n)
	}
}

// TestConfirmsWithReturns: an unroutable mandatory message is returned and
// then confirmed (RabbitMQ sends basic.return before basic.ack), and a
// publish to a routable queue is confirmed too.
func TestConfirmsWithReturns(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	must(t, ch.Confirm(false))
	rets := ch.NotifyReturn(make(chan amqp.Return, 1))
	acks := ch.NotifyPublish(make(chan amqp.Confirmation, 2))
	must(t, ch.Publish("", "missing-queue", true, false, amqp.Publishing{Body: []byte("r")}))
	cf := waitConfirm(t, acks)
	if !cf.Ack || cf.DeliveryTag != 1 {
		t.Fatalf("confirm %+v", cf)
	}
	select {
	case r := <-rets:
		if r.ReplyCode != amqp.NoRoute {
			t.Fatalf("return code %d", r.ReplyCode)
		}
	default:
		t.Fatal("basic.return did not precede the confirm")
	}
	must(t, ch.Publish("", q, true, false, amqp.Publishing{Body: []byte("ok")}))
	if cf := waitConfirm(t, acks); !cf.Ack || cf.DeliveryTag != 2 {
		t.Fatalf("confirm %+v", cf)
	}
}

// TestConfirmThenCloseChannel: closing a confirm-mode channel right after
// publishing must not send confirms for it after channel.close-ok (a
// frame on a closed channel makes amqp091-go close the whole connection).
func TestConfirmThenCloseChannel(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	connClosed := c.NotifyClose(make(chan *amqp.Error, 1))
	for i := 0; i < 50; i++ {
		ch := mustChannel(t, c)
		must(t, ch.Confirm(false))
		for j := 0; j < 5; j++ {
			mustPublish(t, ch, "amq.fanout", "", amqp.Publishing{Body: []byte("x")})
		}
		must(t, ch.Close())
	}
	assertAlive(t, c)
	select {
	case e := <-connClosed:
		t.Fatalf("connection closed: %v", e)
	default:
	}
}

func TestConfirmSelectAfterTx(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	must(t, ch.Tx())
	expectCode(t, ch.Confirm(false), amqp.PreconditionFailed)
	ch = mustChannel(t, c)
	must(t, ch.Confirm(false))
	expectCode(t, ch.Tx(), amqp.PreconditionFailed)
	assertAlive(t, c)
}

func TestTxCommitRollbackPublishes(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	obs := mustChannel(t, c)
	must(t, ch.Tx())
	mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte("t1")})
	mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte("t2")})
	// Nothing is visible before commit (the passive declare is a round
	// trip on another channel of the same connection, after the publishes).
	if n := queueDepth(t, obs, q); n != 0 {
		t.Fatalf("uncommitted publishes visible: depth %d", n)
	}
	must(t, ch.TxCommit())
	if n := queueDepth(t, obs, q); n != 2 {
		t.Fatalf("after commit depth %d, want 2", n)
	}
	mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte("r1")})
	must(t, ch.TxRollback())
	if n := queueDepth(t, obs, q); n != 2 {
		t.Fatalf("after rollback depth %d, want 2", n)
	}
	// The channel stays transactional after commit and rollback.
	mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte("t3")})
	must(t, ch.TxCommit())
	assertBodies(t, collect(t, obs, q), "t1", "t2", "t3")
	// An empty commit is fine.
	must(t, ch.TxCommit())
}

func TestTxMandatoryReturnAtCommit(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	rets := ch.NotifyReturn(make(chan amqp.Return, 1))
	must(t, ch.Tx())
	must(t, ch.Publish("amq.direct", "nowhere", true, false, amqp.Publishing{Body: []byte("m")}))
	must(t, ch.TxCommit())
	select {
	case r := <-rets:
		if r.ReplyCode != amqp.NoRoute || string(r.Body) != "m" {
			t.Fatalf("return %+v", r)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no return for an unroutable mandatory tx publish")
	}
}

func TestTxAcks(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	// Not auto-delete: the channel (and so its consumer) closes mid-test.
	qd, err := ch.QueueDeclare("", false, false, true, false, nil)
	must(t, err)
	q := qd.Name
	for i := 0; i < 4; i++ {
		mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte(strconv.Itoa(i))})
	}
	obs := mustChannel(t, c)
	must(t, ch.Tx())
	must(t, ch.Qos(2, 0, false))
	ds := mustConsume(t, ch, q, "", false)
	held := recvN(t, ds, 2)
	must(t, held[0].Ack(false))
	// The ack is pending: the prefetch window stays full.
	expectNoDelivery(t, ds)
	must(t, ch.TxCommit())
	if d := recv(t, ds); string(d.Body) != "2" {
		t.Fatalf("after commit got %q, want 2", d.Body)
	} else {
		held = append(held[1:], d)
	}
	// A rolled-back ack does not happen: the message stays unacked and is
	// requeued when the channel closes.
	must(t, held[1].Ack(true)) // would ack "1" and "2"
	must(t, ch.TxRollback())
	expectNoDelivery(t, ds)
	must(t, ch.Close())
	assertBodies(t, collect(t, obs, q), "1", "2", "3")
}

// TestTxRejectRequeueAtCommit: a requeueing reject inside a tx happens at commit.
func TestTxRejectRequeueAtCommit(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte("x")})
	must(t, ch.Tx())
	d, ok, err := ch.Get(q, false)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	must(t, d.Reject(true))
	obs := mustChannel(t, c)
	if n := queueDepth(t, obs, q); n != 0 {
		t.Fatalf("reject applied before commit: depth %d", n)
	}
	must(t, ch.TxCommit())
	if n := queueDepth(t, obs, q); n != 1 {
		t.Fatalf("after commit depth %d, want 1", n)
	}
}
