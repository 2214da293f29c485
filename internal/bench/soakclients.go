package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	amqp "github.com/rabbitmq/amqp091-go"
)

// The soak's names: its own queues, deleted at the start (leftovers of an
// interrupted run) and at the end.
const (
	soakWorkQueue = "herald-soak-work"
	soakSlowQueue = "herald-soak-slow"
	soakRPCQueue  = "herald-soak-rpc"
	soakFanKey    = "herald-soak.fan"      // on amq.topic
	soakFanTopic  = "herald-soak/fan"      // the same, as MQTT sees it
	soakSlowDepth = 500                    // the slow queue's x-max-length
	soakPrefetch  = 50                     // competing consumers' prefetch
	soakRPCWait   = 10 * time.Second       // an RPC call's timeout
	soakReconnect = 250 * time.Millisecond // between reconnecting cycles
)

// setup declares the queues and starts every client: receivers first, so
// that fan-out subscribers exist before anything is published to them.
func (s *soak) setup() error {
	u, err := url.Parse(s.cfg.HTTPURL)
	if err != nil {
		return err
	}
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.Path = "/ws"
	if s.ws, err = newWSDialer(u.String()); err != nil {
		return err
	}
	c, err := s.dialAMQP("setup")
	if err != nil {
		return err
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return err
	}
	for _, q := range []string{soakWorkQueue, soakSlowQueue, soakRPCQueue} {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			return fmt.Errorf("soak: delete %s: %w", q, err)
		}
	}
	if _, err := ch.QueueDeclare(soakWorkQueue, true, false, false, false, nil); err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(soakSlowQueue, true, false, false, false,
		amqp.Table{"x-max-length": int32(soakSlowDepth), "x-overflow": "reject-publish"}); err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(soakRPCQueue, false, false, false, false, nil); err != nil {
		return err
	}

	rate := float64(s.cfg.Rate)
	// Competing consumers of a durable queue: two AMQP, one STOMP, and one
	// that drops its connection every few seconds with deliveries unacked.
	work := s.receiverNamed("work queue (competing consumers)")
	for i := range 2 {
		s.amqpConsumer(work, fmt.Sprintf("work-amqp-%d", i), soakWorkQueue, soakPrefetch, false)
	}
	s.amqpConsumer(work, "work-reconnecting", soakWorkQueue, 20, true)
	if err := s.stompConsumer(work, "work-stomp", "/amq/queue/"+soakWorkQueue); err != nil {
		return err
	}

	// Fan-out: one subscriber per protocol on amq.topic.
	fanAMQP := s.receiverNamed("fan-out amqp")
	fanMQTT := s.receiverNamed("fan-out mqtt")
	fanSTOMP := s.receiverNamed("fan-out stomp")
	fanWS := s.receiverNamed("fan-out ws")
	if err := s.amqpSubscriber(fanAMQP); err != nil {
		return err
	}
	if err := s.mqttSubscriber(fanMQTT); err != nil {
		return err
	}
	if err := s.stompConsumer(fanSTOMP, "fan-stomp", "/topic/"+soakFanKey); err != nil {
		return err
	}
	if err := s.wsSubscriber(fanWS); err != nil {
		return err
	}

	// The slow consumer: a tenth of the rate its publisher offers, on a
	// bounded queue that refuses the rest (nacks, which are not confirms).
	slow := s.receiverNamed("slow consumer")
	s.slowConsumer(slow, rate/10)

	if err := s.rpcServer(); err != nil {
		return err
	}

	// Publishers last.
	s.amqpPublisher(s.newPublisher("work-amqp-pub-0", rate, work), "", soakWorkQueue, true)
	s.amqpPublisher(s.newPublisher("work-amqp-pub-1", rate, work), "", soakWorkQueue, true)
	s.stompPublisher(s.newPublisher("work-stomp-pub", rate/5, work), "/amq/queue/"+soakWorkQueue)
	fans := []*soakReceiver{fanAMQP, fanMQTT, fanSTOMP, fanWS}
	s.amqpPublisher(s.newPublisher("fan-amqp-pub", rate/2, fans...), "amq.topic", soakFanKey, false)
	s.mqttPublisher(s.newPublisher("fan-mqtt-pub", rate/2, fans...), soakFanTopic)
	s.amqpPublisher(s.newPublisher("slow-pub", rate/2, slow), "", soakSlowQueue, true)
	for i := range 2 {
		s.rpcCaller(fmt.Sprintf("rpc-caller-%d", i), rate/4)
	}
	s.reconnecting()
	return nil
}

// cleanup deletes the soak's queues.
func (s *soak) cleanup() {
	c, err := s.dialAMQP("cleanup")
	if err != nil {
		s.progress("cleanup: %v", err)
		return
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return
	}
	for _, q := range []string{soakWorkQueue, soakSlowQueue, soakRPCQueue} {
		_, _ = ch.QueueDelete(q, false, false, false)
	}
}

func (s *soak) dialAMQP(name string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("herald-soak " + name)
	c, err := amqp.DialConfig(s.cfg.AMQPURL, amqp.Config{Properties: props, Dial: amqp.DefaultDial(setupConnectTimeout)})
	if err != nil {
		return nil, describeDialError(s.cfg.AMQPURL, err)
	}
	return c, nil
}

func (s *soak) mqttOptions(clientID string, clean bool) *mqtt.ClientOptions {
	return mqtt.NewClientOptions().AddBroker(s.cfg.MQTTURL).SetClientID("herald-soak-" + clientID).
		SetProtocolVersion(4).SetCleanSession(clean).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(setupConnectTimeout).SetKeepAlive(30 * time.Second).SetOrderMatters(false)
}

func (s *soak) dialSTOMP() (*stomp.Conn, error) {
	u, err := url.Parse(s.cfg.STOMPURL)
	if err != nil {
		return nil, err
	}
	opts := []func(*stomp.Conn) error{stomp.ConnOpt.Host("/"), stomp.ConnOpt.HeartBeat(0, 0),
		stomp.ConnOpt.RcvReceiptTimeout(30 * time.Second), stomp.ConnOpt.Logger(quietSTOMP{})}
	if u.User != nil {
		pass, _ := u.User.Password()
		opts = append(opts, stomp.ConnOpt.Login(u.User.Username(), pass))
	}
	nc, err := net.DialTimeout("tcp", u.Host, setupConnectTimeout)
	if err != nil {
		return nil, err
	}
	c, err := stomp.Connect(nc, opts...)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// quietSTOMP drops go-stomp's log lines (a soak's disconnects are planned).
type quietSTOMP struct{}

func (quietSTOMP) Debugf(string, ...any)   {}
func (quietSTOMP) Infof(string, ...any)    {}
func (quietSTOMP) Warningf(string, ...any) {}
func (quietSTOMP) Errorf(string, ...any)   {}
func (quietSTOMP) Debug(string)            {}
func (quietSTOMP) Info(string)             {}
func (quietSTOMP) Warning(string)          {}
func (quietSTOMP) Error(string)            {}

// amqpConsumer consumes queue with manual acks, reconnecting when its
// connection is lost. A flaky one closes its connection after a random
// few seconds, acking all but the deliveries it holds at that moment
// (which the broker redelivers to the others, flagged).
func (s *soak) amqpConsumer(r *soakReceiver, name, queue string, prefetch int, flaky bool) {
	s.wg.Go(func() {
		for s.quit.Err() == nil {
			if flaky && s.draining.Load() {
				return // its unacked messages must go to the steady consumers
			}
			err := s.amqpConsumeSession(r, name, queue, prefetch, flaky)
			if err != nil {
				s.fail(name, err)
				s.sleep(time.Second)
			} else if flaky {
				s.reconnects.Add(1)
				s.sleep(soakReconnect)
			}
		}
	})
}

func (s *soak) amqpConsumeSession(r *soakReceiver, name, queue string, prefetch int, flaky bool) error {
	c, err := s.dialAMQP(name)
	if err != nil {
		return err
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return err
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return err
	}
	ds, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	var until <-chan time.Time
	if flaky {
		t := time.NewTimer(s.randDuration(time.Second, 4*time.Second))
		defer t.Stop()
		until = t.C
	}
	// At until the connection closes with whatever is in flight unacked.
	return s.eachDelivery(ds, until, func(d amqp.Delivery) error {
		if !r.observe(d.Body, d.Redelivered) {
			s.fail(name, fmt.Errorf("not a soak message: %.40q", d.Body))
		}
		return d.Ack(false)
	})
}

// errDeliveriesEnded is eachDelivery's answer when the broker ends the
// consumer or the connection is lost.
var errDeliveriesEnded = errors.New("consumer cancelled or connection lost")

// eachDelivery runs handle on every delivery of ds until the soak quits or
// until fires (nil), ds ends (errDeliveriesEnded) or handle fails (its
// error).
func (s *soak) eachDelivery(ds <-chan amqp.Delivery, until <-chan time.Time, handle func(amqp.Delivery) error) error {
	for {
		select {
		case <-s.quit.Done():
			return nil
		case <-until:
			return nil
		case d, ok := <-ds:
			if !ok {
				return errDeliveriesEnded
			}
			if err := handle(d); err != nil {
				return err
			}
		}
	}
}

// amqpSubscriber is the fan-out's AMQP subscriber: an exclusive queue
// bound to the fan-out key, auto-ack.
func (s *soak) amqpSubscriber(r *soakReceiver) error {
	c, err := s.dialAMQP("fan-amqp")
	if err != nil {
		return err
	}
	ch, err := c.Channel()
	if err == nil {
		var q amqp.Queue
		if q, err = ch.QueueDeclare("", false, true, true, false, nil); err == nil {
			if err = ch.QueueBind(q.Name, soakFanKey, "amq.topic", false, nil); err == nil {
				var ds <-chan amqp.Delivery
				if ds, err = ch.Consume(q.Name, "", true, true, false, false, nil); err == nil {
					s.wg.Go(func() {
						defer c.Close()
						if err := s.eachDelivery(ds, nil, func(d amqp.Delivery) error {
							r.observe(d.Body, d.Redelivered)
							return nil
						}); err != nil {
							s.fail("fan-amqp", err)
						}
					})
					return nil
				}
			}
		}
	}
	c.Close()
	return err
}

// mqttSubscriber is the fan-out's MQTT subscriber, QoS 1.
func (s *soak) mqttSubscriber(r *soakReceiver) error {
	opts := s.mqttOptions("fan-mqtt", true)
	opts.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { r.observe(m.Payload(), m.Duplicate()) })
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) { s.fail("fan-mqtt", fmt.Errorf("connection lost: %w", err)) })
	c := mqtt.NewClient(opts)
	if err := mqttConnect("fan-mqtt", c); err != nil {
		return err
	}
	tok := c.Subscribe(soakFanTopic, 1, nil)
	if !tok.WaitTimeout(setupConnectTimeout) || tok.Error() != nil {
		c.Disconnect(0)
		return fmt.Errorf("fan-mqtt: subscribe: %v", tok.Error())
	}
	s.wg.Go(func() {
		<-s.quit.Done()
		c.Disconnect(250)
	})
	return nil
}

// stompConsumer subscribes dest with client-individual acks.
func (s *soak) stompConsumer(r *soakReceiver, name, dest string) error {
	c, err := s.dialSTOMP()
	if err != nil {
		return err
	}
	sub, err := c.Subscribe(dest, stomp.AckClientIndividual, stomp.SubscribeOpt.Header("prefetch-count", strconv.Itoa(soakPrefetch)))
	if err != nil {
		_ = c.Disconnect()
		return err
	}
	s.wg.Go(func() {
		defer func() { _ = c.Disconnect() }()
		for {
			select {
			case <-s.quit.Done():
				return
			case m, ok := <-sub.C:
				if !ok {
					s.fail(name, errors.New("subscription ended"))
					return
				}
				if m.Err != nil {
					s.fail(name, m.Err)
					return
				}
				r.observe(m.Body, m.Header.Get("redelivered") == "true")
				if err := c.Ack(m); err != nil {
					s.fail(name, err)
					return
				}
			}
		}
	})
	return nil
}

// wsSubscriber is the fan-out's /ws subscriber.
func (s *soak) wsSubscriber(r *soakReceiver) error {
	c, err := s.ws.dial(context.Background())
	if err != nil {
		return fmt.Errorf("fan-ws: %w", err)
	}
	f, _ := json.Marshal(map[string]any{"op": "subscribe", "id": "s", "exchange": "amq.topic", "key": soakFanKey})
	ctx, cancel := context.WithTimeout(context.Background(), setupConnectTimeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, f); err != nil {
		c.CloseNow()
		return err
	}
	subscribed := make(chan struct{})
	var once sync.Once
	s.wg.Go(func() {
		defer c.CloseNow()
		stop := context.AfterFunc(s.quit, func() { c.CloseNow() })
		defer stop()
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				if s.quit.Err() == nil {
					s.fail("fan-ws", err)
				}
				return
			}
			for line := range bytes.SplitSeq(b, []byte{'\n'}) {
				var m struct {
					Op          string `json:"op"`
					Body        string `json:"body"`
					Redelivered bool   `json:"redelivered"`
					Message     string `json:"message"`
				}
				if json.Unmarshal(line, &m) != nil {
					continue
				}
				switch m.Op {
				case "subscribed":
					once.Do(func() { close(subscribed) })
				case "error":
					s.fail("fan-ws", errors.New(m.Message))
				case "message":
					r.observe([]byte(m.Body), m.Redelivered)
				}
			}
		}
	})
	select {
	case <-subscribed:
		return nil
	case <-ctx.Done():
		return errors.New("fan-ws: no subscribed answer")
	}
}

// slowConsumer acks one message at a time at rate a second until the
// drain, then as fast as it can (so that the backlog is accounted for).
func (s *soak) slowConsumer(r *soakReceiver, rate float64) {
	gap := time.Duration(float64(time.Second) / rate)
	s.wg.Go(func() {
		for s.quit.Err() == nil {
			err := func() error {
				c, err := s.dialAMQP("slow-consumer")
				if err != nil {
					return err
				}
				defer c.Close()
				ch, err := c.Channel()
				if err != nil {
					return err
				}
				if err := ch.Qos(1, 0, false); err != nil {
					return err
				}
				ds, err := ch.Consume(soakSlowQueue, "", false, false, false, false, nil)
				if err != nil {
					return err
				}
				return s.eachDelivery(ds, nil, func(d amqp.Delivery) error {
					r.observe(d.Body, d.Redelivered)
					if !s.draining.Load() {
						s.sleep(gap)
					}
					return d.Ack(false)
				})
			}()
			if err != nil {
				s.fail("slow-consumer", err)
				s.sleep(time.Second)
			}
		}
	})
}

// rpcServer answers every request on the RPC queue with its body.
func (s *soak) rpcServer() error {
	c, err := s.dialAMQP("rpc-server")
	if err != nil {
		return err
	}
	ch, err := c.Channel()
	if err != nil {
		c.Close()
		return err
	}
	ds, err := ch.Consume(soakRPCQueue, "", true, false, false, false, nil)
	if err != nil {
		c.Close()
		return err
	}
	s.wg.Go(func() {
		defer c.Close()
		if err := s.eachDelivery(ds, nil, func(d amqp.Delivery) error {
			return ch.Publish("", d.ReplyTo, false, false, amqp.Publishing{CorrelationId: d.CorrelationId, Body: d.Body})
		}); err != nil {
			s.fail("rpc-server", err)
		}
	})
	return nil
}

// rpcCaller calls at rate a second over direct reply-to, reconnecting on
// failure; a call without its reply within soakRPCWait is a failure.
func (s *soak) rpcCaller(name string, rate float64) {
	s.wg.Go(func() {
		start := time.Now()
		var n uint64
		for s.stop.Err() == nil {
			err := func() error {
				c, err := s.dialAMQP(name)
				if err != nil {
					return err
				}
				defer c.Close()
				ch, err := c.Channel()
				if err != nil {
					return err
				}
				replies, err := ch.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
				if err != nil {
					return err
				}
				for s.pace(start, n, rate) {
					id := name + "-" + strconv.FormatUint(n, 10)
					n++
					s.rpcCalls.Add(1)
					if err := ch.Publish("", soakRPCQueue, false, false, amqp.Publishing{CorrelationId: id, ReplyTo: "amq.rabbitmq.reply-to", Body: []byte(id)}); err != nil {
						s.rpcFailures.Add(1)
						return err
					}
					if err := awaitReply(replies, id); err != nil {
						s.rpcFailures.Add(1)
						return fmt.Errorf("call %s: %w", id, err)
					}
				}
				return nil
			}()
			if err != nil {
				s.fail(name, err)
				s.sleep(time.Second)
			}
		}
	})
}

func awaitReply(replies <-chan amqp.Delivery, id string) error {
	t := time.NewTimer(soakRPCWait)
	defer t.Stop()
	for {
		select {
		case d, ok := <-replies:
			if !ok {
				return errors.New("reply consumer ended")
			}
			if d.CorrelationId == id {
				if string(d.Body) != id {
					return fmt.Errorf("reply %q", d.Body)
				}
				return nil
			}
		case <-t.C:
			return fmt.Errorf("no reply within %v", soakRPCWait)
		}
	}
}

// reconnecting opens and closes connections of every protocol in turn,
// each doing a little work, until publishing stops: what a fleet of
// devices coming and going does to the broker's files and goroutines.
func (s *soak) reconnecting() {
	s.wg.Go(func() {
		steps := []struct {
			name string
			do   func() error
		}{
			{"reconnect-amqp", s.reconnectAMQP},
			{"reconnect-mqtt", s.reconnectMQTT},
			{"reconnect-stomp", s.reconnectSTOMP},
			{"reconnect-ws", s.reconnectWS},
		}
		for i := 0; s.stop.Err() == nil; i++ {
			st := steps[i%len(steps)]
			if err := st.do(); err != nil {
				s.fail(st.name, err)
			} else {
				s.reconnects.Add(1)
			}
			s.sleep(soakReconnect)
		}
	})
}

// reconnectAMQP: a private queue, a message through it, and a close.
func (s *soak) reconnectAMQP() error {
	c, err := s.dialAMQP("reconnect")
	if err != nil {
		return err
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return err
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return err
	}
	if err := ch.Publish("", q.Name, false, false, amqp.Publishing{Body: []byte("ping")}); err != nil {
		return err
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, ok, err := ch.Get(q.Name, true); err != nil {
			return err
		} else if ok {
			return nil
		}
	}
	return errors.New("the message to its own queue never arrived")
}

// reconnectMQTT: a persistent session that subscribes, leaves, and is
// cleaned up by a clean-session connect.
func (s *soak) reconnectMQTT() error {
	c := mqtt.NewClient(s.mqttOptions("reconnect", false))
	if err := mqttConnect("reconnect-mqtt", c); err != nil {
		return err
	}
	tok := c.Subscribe("herald-soak/reconnect", 1, func(mqtt.Client, mqtt.Message) {})
	ok := tok.WaitTimeout(setupConnectTimeout)
	c.Disconnect(100)
	if !ok || tok.Error() != nil {
		return fmt.Errorf("subscribe: %v", tok.Error())
	}
	clean := mqtt.NewClient(s.mqttOptions("reconnect", true))
	if err := mqttConnect("reconnect-mqtt", clean); err != nil {
		return err
	}
	clean.Disconnect(100)
	return nil
}

func (s *soak) reconnectSTOMP() error {
	c, err := s.dialSTOMP()
	if err != nil {
		return err
	}
	// No Unsubscribe: go-stomp's wait for the UNSUBSCRIBE receipt misses
	// it now and then (about one in a few hundred back-to-back here, while
	// the same frames over a raw socket got their RECEIPT 3,000 times out
	// of 3,000), then reports a 30-second timeout. DISCONNECT ends the
	// subscription as well.
	_, err = c.Subscribe("/topic/herald-soak.reconnect", stomp.AckAuto)
	if derr := c.Disconnect(); err == nil {
		err = derr
	}
	return err
}

func (s *soak) reconnectWS() error {
	c, err := s.ws.dial(s.quit)
	if err != nil {
		return err
	}
	return c.Close(websocket.StatusNormalClosure, "")
}
