package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	amqp "github.com/rabbitmq/amqp091-go"
)

// soakPublisher is one publisher's accounting: every message it sends is
// entered in the lanes of the receivers that must get it, and marked
// there once the broker confirms it.
type soakPublisher struct {
	name      string
	lanes     []*lane
	rate      float64 // messages a second
	confirmed atomic.Uint64
	nacked    atomic.Uint64
}

func (s *soak) newPublisher(name string, rate float64, to ...*soakReceiver) *soakPublisher {
	p := &soakPublisher{name: name, rate: rate}
	for _, r := range to {
		p.lanes = append(p.lanes, r.laneFor(name))
	}
	s.pubs = append(s.pubs, p)
	return p
}

func (p *soakPublisher) sent(seq uint64) {
	for _, l := range p.lanes {
		l.sent(seq)
	}
}

func (p *soakPublisher) confirm(seq uint64, ok bool) {
	if !ok {
		p.nacked.Add(1)
		return
	}
	p.confirmed.Add(1)
	for _, l := range p.lanes {
		l.confirm(seq)
	}
}

// pace sleeps until message n is due at the publisher's rate; false once
// publishing stops.
func (s *soak) pace(start time.Time, n uint64, rate float64) bool {
	due := start.Add(time.Duration(float64(n) / rate * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.stop.Done():
			return false
		}
	}
	return s.stop.Err() == nil
}

// amqpPublisher publishes with confirms over AMQP (persistent when
// persistent is set), reconnecting when its connection is lost; messages
// whose confirm never came are simply not counted as confirmed.
func (s *soak) amqpPublisher(p *soakPublisher, exchange, key string, persistent bool) {
	s.wg.Go(func() {
		var seq uint64
		start := time.Now()
		for s.stop.Err() == nil {
			if err := s.amqpPublishSession(p, exchange, key, persistent, start, &seq); err != nil {
				s.fail(p.name, err)
				s.sleep(time.Second)
			}
		}
	})
}

func (s *soak) amqpPublishSession(p *soakPublisher, exchange, key string, persistent bool, start time.Time, seq *uint64) error {
	c, err := s.dialAMQP(p.name)
	if err != nil {
		return err
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	const window = 100
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, window))
	inflight := make(map[uint64]uint64, window) // delivery tag -> seq
	var tag uint64
	mode := amqp.Transient
	if persistent {
		mode = amqp.Persistent
	}
	settle := func(cf amqp.Confirmation) {
		if n, ok := inflight[cf.DeliveryTag]; ok {
			delete(inflight, cf.DeliveryTag)
			p.confirm(n, cf.Ack)
		}
	}
	for s.pace(start, *seq, p.rate) {
		for len(inflight) >= window {
			cf, ok := <-confirms
			if !ok {
				return fmt.Errorf("channel closed with %d publishes unconfirmed", len(inflight))
			}
			settle(cf)
		}
		n := *seq
		*seq++
		p.sent(n)
		if err := ch.Publish(exchange, key, false, false, amqp.Publishing{DeliveryMode: mode, Body: soakBody(p.name, n, s.cfg.Size)}); err != nil {
			return err
		}
		tag++
		inflight[tag] = n
		for drained := false; !drained; {
			select {
			case cf, ok := <-confirms:
				if !ok {
					return fmt.Errorf("channel closed with %d publishes unconfirmed", len(inflight))
				}
				settle(cf)
			default:
				drained = true
			}
		}
	}
	// Publishing stopped: wait for the confirms still in flight.
	wait := time.NewTimer(30 * time.Second)
	defer wait.Stop()
	for len(inflight) > 0 {
		select {
		case cf, ok := <-confirms:
			if !ok {
				return nil
			}
			settle(cf)
		case <-wait.C:
			return fmt.Errorf("%d confirms never came", len(inflight))
		}
	}
	return nil
}

// mqttPublisher publishes at QoS 1: PUBACK is the confirm. A lost
// connection is reconnected after a second.
func (s *soak) mqttPublisher(p *soakPublisher, topic string) {
	s.wg.Go(func() {
		start := time.Now()
		var seq uint64
		for s.stop.Err() == nil {
			c := mqtt.NewClient(s.mqttOptions(p.name, true))
			if err := mqttConnect(p.name, c); err != nil {
				s.fail(p.name, err)
				s.sleep(time.Second)
				continue
			}
			for s.pace(start, seq, p.rate) {
				n := seq
				seq++
				p.sent(n)
				tok := c.Publish(topic, 1, false, soakBody(p.name, n, s.cfg.Size))
				if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
					s.fail(p.name, fmt.Errorf("publish %d: no PUBACK (%v)", n, tok.Error()))
					break
				}
				p.confirm(n, true)
			}
			c.Disconnect(250)
		}
	})
}

// stompPublisher sends persistent messages with a receipt each: the
// RECEIPT is the confirm.
func (s *soak) stompPublisher(p *soakPublisher, dest string) {
	s.wg.Go(func() {
		start := time.Now()
		var seq uint64
		for s.stop.Err() == nil {
			c, err := s.dialSTOMP()
			if err != nil {
				s.fail(p.name, err)
				s.sleep(time.Second)
				continue
			}
			for s.pace(start, seq, p.rate) {
				n := seq
				seq++
				p.sent(n)
				if err = c.Send(dest, "text/plain", soakBody(p.name, n, s.cfg.Size), stomp.SendOpt.Receipt,
					stomp.SendOpt.Header("persistent", "true")); err != nil {
					break
				}
				p.confirm(n, true)
			}
			if err != nil {
				s.fail(p.name, err)
			}
			_ = c.Disconnect()
		}
	})
}

// sleep waits d or until everything stops.
func (s *soak) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.quit.Done():
	}
}

// done is the context a client's loop watches: consumers run until quit.
func (s *soak) done() context.Context { return s.quit }
