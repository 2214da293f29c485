package cluster_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// msgKey is one published message: its publisher and its number there.
type msgKey struct{ pub, seq int }

// ledger is the accounting of TestClusterQuorumFaults.
type ledger struct {
	mu         sync.Mutex
	published  int
	confirmed  map[msgKey]bool
	nacked     int
	fresh      map[msgKey]int // deliveries not flagged redelivered
	delivered  map[msgKey]bool
	redelivers int
	disorder   []string
	lastFresh  map[[2]int]int // (consumer session, publisher) -> last fresh seq
	lastOK     atomic.Int64   // unix nanos of the last positive confirm
	// killedAt is when the last leader was killed; recovered when the
	// first message published after it was confirmed (unix nanos).
	killedAt, recovered atomic.Int64
}

func newLedger() *ledger {
	return &ledger{confirmed: map[msgKey]bool{}, fresh: map[msgKey]int{}, delivered: map[msgKey]bool{}, lastFresh: map[[2]int]int{}}
}

func (l *ledger) confirm(k msgKey, ok bool, published time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ok {
		l.confirmed[k] = true
		now := time.Now().UnixNano()
		l.lastOK.Store(now)
		if kill := l.killedAt.Load(); kill != 0 && published.UnixNano() > kill {
			l.recovered.CompareAndSwap(0, now)
		}
	} else {
		l.nacked++
	}
}

func (l *ledger) deliver(session int, k msgKey, redelivered bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.delivered[k] = true
	if redelivered {
		l.redelivers++
		return
	}
	l.fresh[k]++
	sp := [2]int{session, k.pub}
	if last, ok := l.lastFresh[sp]; ok && k.seq <= last {
		l.disorder = append(l.disorder, fmt.Sprintf("consumer session %d got %d:%d after %d:%d", session, k.pub, k.seq, k.pub, last))
	}
	l.lastFresh[sp] = k.seq
}

// missing lists the confirmed messages not delivered yet.
func (l *ledger) missing() []msgKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []msgKey
	for k := range l.confirmed {
		if !l.delivered[k] {
			out = append(out, k)
		}
	}
	return out
}

// quorumPublisher publishes numbered messages with confirms through nd
// until stop, reconnecting when its node goes; at most window confirms
// are outstanding.
func quorumPublisher(nd *node, pub int, queue string, l *ledger, stop <-chan struct{}) {
	seq := 0
	for {
		select {
		case <-stop:
			return
		default:
		}
		c, err := amqp.Dial(nd.amqpURL())
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		ch, err := c.Channel()
		if err == nil {
			err = ch.Confirm(false)
		}
		if err != nil {
			c.Close()
			continue
		}
		pending := make(chan struct {
			k  msgKey
			dc *amqp.DeferredConfirmation
			at time.Time
		}, 64)
		var wg sync.WaitGroup
		wg.Go(func() {
			for p := range pending {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				ok, err := p.dc.WaitContext(ctx)
				cancel()
				l.confirm(p.k, ok && err == nil, p.at)
			}
		})
	publish:
		for {
			select {
			case <-stop:
				break publish
			default:
			}
			k := msgKey{pub, seq}
			at := time.Now()
			dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", queue, false, false,
				amqp.Publishing{DeliveryMode: amqp.Persistent, Body: fmt.Appendf(nil, "%d:%d", pub, seq)})
			if err != nil {
				break
			}
			seq++
			l.mu.Lock()
			l.published++
			l.mu.Unlock()
			pending <- struct {
				k  msgKey
				dc *amqp.DeferredConfirmation
				at time.Time
			}{k, dc, at}
			time.Sleep(time.Millisecond)
		}
		close(pending)
		wg.Wait()
		c.Close()
	}
}

// quorumConsumer consumes and acks through nd until done, reconnecting
// when its node goes; every connection is a new consumer session.
func quorumConsumer(nd *node, id int, queue string, l *ledger, sessions *atomic.Int64, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		default:
		}
		c, err := amqp.Dial(nd.amqpURL())
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		session := int(sessions.Add(1))
		ch, err := c.Channel()
		if err == nil {
			err = ch.Qos(20, 0, false)
		}
		var msgs <-chan amqp.Delivery
		if err == nil {
			msgs, err = ch.Consume(queue, fmt.Sprintf("c%d-%d", id, session), false, false, false, false, nil)
		}
		if err != nil {
			c.Close()
			time.Sleep(200 * time.Millisecond)
			continue
		}
	consume:
		for {
			select {
			case <-done:
				break consume
			case m, ok := <-msgs:
				if !ok {
					break consume
				}
				var k msgKey
				if _, err := fmt.Sscanf(string(m.Body), "%d:%d", &k.pub, &k.seq); err != nil {
					continue
				}
				l.deliver(session, k, m.Redelivered)
				_ = m.Ack(false)
			}
		}
		c.Close()
	}
}

// TestClusterQuorumFaults is the confirmed-message accounting under
// faults: a publisher with confirms through every node to one quorum
// queue, a consumer acking on every node, while the leader is killed
// (SIGKILL) and restarted and a follower is cut off and healed, once per
// cycle. At the end every confirmed message was delivered, none was
// delivered twice without the redelivered flag, and each consumer got
// each publisher's fresh messages in order. 3 cycles;
// HERALD_CLUSTER_CYCLES=20 is the long form:
//
//	HERALD_CLUSTER_CYCLES=20 go test -run TestClusterQuorumFaults -v ./test/cluster/
func TestClusterQuorumFaults(t *testing.T) {
	cycles := 3
	if s := os.Getenv("HERALD_CLUSTER_CYCLES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("HERALD_CLUSTER_CYCLES=%q: want a positive number", s)
		}
		cycles = n
	}
	h := newHarness(t, 3)
	const queue = "accounting"
	if err := h.nodes[0].declareQueue(queue, map[string]any{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	for _, nd := range h.nodes {
		eventually(t, 10*time.Second, nd.name+" has the queue", func() error { return nd.hasQueue(queue) })
	}
	l := newLedger()
	stopPub, stopCons := make(chan struct{}), make(chan struct{})
	var pubs, cons sync.WaitGroup
	var sessions atomic.Int64
	for i, nd := range h.nodes {
		pubs.Go(func() { quorumPublisher(nd, i, queue, l, stopPub) })
		cons.Go(func() { quorumConsumer(nd, i, queue, l, &sessions, stopCons) })
	}
	defer func() { // on a failure too: no goroutine left behind
		select {
		case <-stopPub:
		default:
			close(stopPub)
		}
		pubs.Wait()
		select {
		case <-stopCons:
		default:
			close(stopCons)
		}
		cons.Wait()
	}()
	eventually(t, 10*time.Second, "first confirms", func() error {
		if l.lastOK.Load() == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})

	rng := rand.New(rand.NewPCG(3, 4))
	var failovers []time.Duration
	for c := range cycles {
		leader := h.waitLeader(nil, 15*time.Second)
		l.recovered.Store(0)
		killed := time.Now()
		l.killedAt.Store(killed.UnixNano())
		h.kill(leader, syscall.SIGKILL)
		eventually(t, 15*time.Second, "a confirm of a message published after the leader was killed", func() error {
			if l.recovered.Load() != 0 {
				return nil
			}
			return fmt.Errorf("none since the kill")
		})
		failovers = append(failovers, time.Unix(0, l.recovered.Load()).Sub(killed))
		h.start(leader)
		victim := leader
		leader = h.waitLeader(nil, 20*time.Second)
		var follower *node
		for _, nd := range h.nodes {
			if nd != leader && (follower == nil || rng.IntN(2) == 0) {
				follower = nd
			}
		}
		follower.proxy.cut()
		time.Sleep(1500 * time.Millisecond)
		follower.proxy.heal()
		h.waitLeader(nil, 20*time.Second)
		for _, nd := range h.nodes {
			if !nd.running() {
				t.Fatalf("cycle %d: %s exited on its own", c, nd.name)
			}
		}
		t.Logf("cycle %d: leader %s killed, first confirm after %s; %s cut off 1.5 s", c+1, victim.name,
			failovers[len(failovers)-1].Round(time.Millisecond), follower.name)
	}
	close(stopPub)
	pubs.Wait()
	eventually(t, 60*time.Second, "every confirmed message delivered", func() error {
		if m := l.missing(); len(m) > 0 {
			slices.SortFunc(m, func(a, b msgKey) int { return (a.pub-b.pub)*1_000_000_000 + a.seq - b.seq })
			var state string
			for _, nd := range h.nodes {
				_, b, _ := nd.api("GET", "/api/queues/%2F/"+queue, nil)
				state += fmt.Sprintf("\n%s: %.300s", nd.name, b)
			}
			return fmt.Errorf("%d confirmed messages not delivered, first %v; the queue on each node:%s", len(m), m[0], state)
		}
		return nil
	})
	close(stopCons)
	cons.Wait()

	l.mu.Lock()
	defer l.mu.Unlock()
	dup := 0
	for k, n := range l.fresh {
		if n > 1 {
			dup++
			if dup <= 5 {
				t.Errorf("message %d:%d delivered %d times without the redelivered flag", k.pub, k.seq, n)
			}
		}
	}
	for i, d := range l.disorder {
		if i < 5 {
			t.Errorf("order: %s", d)
		}
	}
	slices.Sort(failovers)
	t.Logf("%d cycles: %d published, %d confirmed, %d nacked or unconfirmed, %d delivered, %d redeliveries, %d duplicates without the flag, %d out of order; leader killed -> first confirm: min %s, max %s",
		cycles, l.published, len(l.confirmed), l.nacked, len(l.delivered), l.redelivers, dup, len(l.disorder),
		failovers[0].Round(time.Millisecond), failovers[len(failovers)-1].Round(time.Millisecond))
	if failovers[len(failovers)-1] > 5*time.Second {
		t.Errorf("leader killed -> first confirm took %s (over 5 s)", failovers[len(failovers)-1])
	}
}
