package test

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	amqp "github.com/rabbitmq/amqp091-go"
)

// The crash test of TestCrashRecovery for the other protocols' positive
// acknowledgements: an MQTT QoS 1 PUBACK and a STOMP RECEIPT of a
// persistent SEND promise what a publisher confirm does. Publishers speak
// the protocol under test; the durable queue is declared, consumed during
// the crashes and drained at the end over AMQP (a message delivered again
// must be flagged redelivered).

// crashProtocolKills is fewer than TestCrashRecovery's: these tests are
// about the acknowledgement path, which every kill exercises the same way.
const crashProtocolKills = 3

// crashProtocol runs the crash test: listener is the protocol's listener
// ("mqtt", "stomp"), addr picks its address from a run, bind (may be nil)
// routes the protocol's messages to queue, and session publishes as
// publisher p on one connection to addr until it drops or stop is closed,
// recording in p.confirmed the sequences the server acknowledged.
func crashProtocol(t *testing.T, queue, listener string, addr func(*heraldProc) string,
	bind func(ch *amqp.Channel) error, session func(p *crashPublisher, addr string, stop <-chan struct{})) {
	t.Helper()
	rng, testDeadline := crashRNG(t), time.Now().Add(40*time.Second)
	bin, dataDir, logs, proc := startCrashRun(t, queue, bind, listener)
	gen := 1
	amqpURL := func() string { return "amqp://guest:guest@" + proc.addr + "/" }

	consumers, publishers := newTarget(), newTarget()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	pubs := make([]*crashPublisher, crashPublishers)
	for i := range pubs {
		p := &crashPublisher{id: i, confirmed: map[int]bool{}}
		pubs[i] = p
		wg.Add(1)
		go func() {
			defer wg.Done()
			gen := 0
			for {
				a, g, ok := publishers.await(gen, stop)
				if !ok {
					return
				}
				gen = g
				session(p, a, stop)
			}
		}()
	}
	cons := &crashConsumer{queue: queue}
	wg.Add(1)
	go func() { defer wg.Done(); cons.run(consumers, stop) }()
	stopped := false
	stopClients := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	t.Cleanup(stopClients)
	point := func() {
		consumers.set(amqpURL())
		publishers.set(addr(proc))
	}
	point()

	for kill := 1; kill <= crashProtocolKills; kill++ {
		d := time.Duration(200+rng.IntN(701)) * time.Millisecond
		time.Sleep(d) // the random moment of the crash is the point of the test
		if time.Now().Add(10 * time.Second).After(testDeadline) {
			t.Fatalf("out of time after %d kills", kill-1)
		}
		proc.kill()
		t.Logf("kill %d after %v", kill, d)
		if !queueSurvives(t, bin, dataDir, &gen, logs, &proc, queue, listener) {
			return
		}
		point()
	}
	time.Sleep(time.Duration(200+rng.IntN(300)) * time.Millisecond) // progress on the last run
	stopClients()
	if len(cons.bad) > 0 {
		t.Errorf("consumer got %d malformed bodies, e.g. %s", len(cons.bad), cons.bad[0])
	}
	final := drainCrashQueue(t, amqpURL(), queue, testDeadline)
	checkCrashDeliveries(t, pubs, append(cons.seen, final...), len(final))
	logs.mu.Lock()
	t.Logf("messages recovered at each restart: %v", logs.recovered)
	logs.mu.Unlock()
}

// TestCrashRecoveryMQTT: every QoS 1 publish whose PUBACK an MQTT 3.1.1
// publisher got survives SIGKILL. Each publisher keeps up to crashWindow
// publishes in flight, so their PUBACKs wait for shared group commits.
func TestCrashRecoveryMQTT(t *testing.T) {
	const queue = "crash-mqtt"
	crashProtocol(t, queue, "mqtt", func(p *heraldProc) string { return p.mqtt },
		func(ch *amqp.Channel) error { return ch.QueueBind(queue, "crash.mqtt.#", "amq.topic", false, nil) },
		mqttCrashSession)
}

type pendingPuback struct {
	seq int
	tok mqtt.Token
}

func mqttCrashSession(p *crashPublisher, addr string, stop <-chan struct{}) {
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("crash-pub-%d", p.id)).
		SetUsername("guest").SetPassword("guest").SetProtocolVersion(4).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(2 * time.Second).SetWriteTimeout(2 * time.Second)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		c.Disconnect(0)
		return
	}
	defer c.Disconnect(0) // completes (with an error) every token still pending
	pending := make(chan pendingPuback, crashWindow)
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		for pp := range pending {
			// A lost connection (clean session, no reconnect) completes
			// every pending token with an error.
			pp.tok.Wait()
			if pp.tok.Error() == nil {
				p.confirmed[pp.seq] = true
			}
		}
	}()
	defer func() {
		close(pending)
		select {
		case <-waited:
		case <-time.After(waitTimeout):
			c.Disconnect(0)
			<-waited
		}
	}()
	topic := fmt.Sprintf("crash/mqtt/%d", p.id)
	for c.IsConnectionOpen() {
		select {
		case <-stop:
			return
		default:
		}
		seq := p.next
		p.next++ // spent whatever happens
		tok := c.Publish(topic, 1, false, crashBody(p.id, seq))
		select {
		case pending <- pendingPuback{seq, tok}:
		case <-stop:
			return // not waited for: it simply does not count as acknowledged
		}
	}
}

// TestCrashRecoverySTOMP: every persistent SEND whose RECEIPT a STOMP
// publisher got survives SIGKILL, and so does every SEND before it (a
// receipt says the frames before it are done too). Publishers send
// batches of up to stompCrashBatch SENDs with a receipt on the last, so
// that many are in flight when the broker dies.
func TestCrashRecoverySTOMP(t *testing.T) {
	const queue = "crash-stomp"
	crashProtocol(t, queue, "stomp", func(p *heraldProc) string { return p.stomp }, nil,
		func(p *crashPublisher, addr string, stop <-chan struct{}) {
			stompCrashSession(p, addr, queue, stop)
		})
}

func stompCrashSession(p *crashPublisher, addr, queue string, stop <-chan struct{}) {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return
	}
	defer nc.Close()
	c, err := stomp.Connect(nc, stomp.ConnOpt.Login("guest", "guest"), stomp.ConnOpt.Logger(quietStompLogger{}),
		stomp.ConnOpt.RcvReceiptTimeout(waitTimeout), stomp.ConnOpt.DisconnectReceiptTimeout(time.Second))
	if err != nil {
		return
	}
	persistent := stomp.SendOpt.Header("persistent", "true")
	for batch := 1; ; batch = batch%stompCrashBatch + 1 {
		select {
		case <-stop:
			_ = c.Disconnect()
			return
		default:
		}
		first := p.next
		p.next += batch // spent whatever happens
		for seq := first; seq < p.next-1; seq++ {
			if err := c.Send("/queue/"+queue, "application/octet-stream", crashBody(p.id, seq), persistent); err != nil {
				return
			}
		}
		// Send with a receipt returns once the RECEIPT arrived, or fails
		// when the connection is lost first.
		if err := c.Send("/queue/"+queue, "application/octet-stream", crashBody(p.id, p.next-1),
			stomp.SendOpt.Receipt, persistent); err != nil {
			return
		}
		for seq := first; seq < p.next; seq++ {
			p.confirmed[seq] = true
		}
	}
}

// stompCrashBatch bounds the SENDs per receipt in TestCrashRecoverySTOMP.
const stompCrashBatch = 16

type quietStompLogger struct{}

func (quietStompLogger) Debugf(string, ...interface{})   {}
func (quietStompLogger) Debug(string)                    {}
func (quietStompLogger) Infof(string, ...interface{})    {}
func (quietStompLogger) Info(string)                     {}
func (quietStompLogger) Warningf(string, ...interface{}) {}
func (quietStompLogger) Warning(string)                  {}
func (quietStompLogger) Errorf(string, ...interface{})   {}
func (quietStompLogger) Error(string)                    {}
