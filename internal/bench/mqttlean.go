package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// A lean subscriber speaks just the MQTT 3.1.1 a fanout subscriber needs
// (CONNECT, SUBSCRIBE, PUBLISH in, PUBACK out) on one goroutine, reading
// PUBLISH packets in place from a 64 KiB buffer and sending the PUBACKs of
// everything a read brought in one write. The client library costs about
// twice the broker's CPU per delivery (several goroutine hand-offs per
// message); on a machine that runs the broker too, that leaves the broker
// short of CPU and makes the subscribers, not the broker, the measured
// thing. --paho-subscribers uses the library instead (and WebSocket and
// TLS URLs always do).
type leanSubscription struct {
	conn net.Conn
	done chan struct{} // closed when the read loop has returned
}

const leanReadBuf = 64 << 10

// leanBufSize is the read buffer of each of n subscribers: 64 KiB batches
// many deliveries per read; with thousands of subscribers (a broadcast,
// a few messages a second) it would cost the bench GiBs, so 4 KiB.
func leanBufSize(n int) int {
	if n > 1000 {
		return 4 << 10
	}
	return leanReadBuf
}

// leanSubscribers reports whether the run's subscribers are lean ones.
func leanSubscribers(cfg Config) bool {
	if cfg.PahoSubscribers {
		return false
	}
	u, err := url.Parse(cfg.URL)
	return err == nil && (strings.EqualFold(u.Scheme, "mqtt") || strings.EqualFold(u.Scheme, "tcp"))
}

// connectLean connects s, subscribes it to topic and starts its read loop.
func (s *mqttSubscriber) connectLean(clientID, topic string) error {
	r := s.r
	u, err := url.Parse(r.cfg.URL)
	if err != nil {
		return err
	}
	conn, err := r.dialer().DialContext(r.ctx, "tcp", u.Host)
	if err != nil {
		return fmt.Errorf("%s: cannot connect: %w", s.name, err)
	}
	conn.SetDeadline(time.Now().Add(setupConnectTimeout + time.Second))
	cp := &packet.Connect{ProtocolName: "MQTT", ProtocolLevel: packet.V311, CleanStart: true, ClientID: clientID}
	// Keep-alive 0: the connection needs no PINGREQ however long the run.
	if u.User != nil {
		cp.UsernameFlag, cp.Username = true, u.User.Username()
		if pw, ok := u.User.Password(); ok {
			cp.PasswordFlag, cp.Password = true, []byte(pw)
		}
	}
	qos := byte(r.cfg.QoS)
	sub := &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: topic, QoS: qos}}}
	out := cp.Encode(nil, packet.V311)
	out = sub.Encode(out, packet.V311)
	fail := func(err error) error {
		conn.Close()
		return err
	}
	if _, err := conn.Write(out); err != nil {
		return fail(fmt.Errorf("%s: cannot connect: %w", s.name, err))
	}
	br := bufio.NewReaderSize(conn, leanBufSize(r.cfg.Subscribers))
	p, err := packet.Read(br, packet.V311, 0)
	if err != nil {
		return fail(fmt.Errorf("%s: no CONNACK: %w", s.name, err))
	}
	if ack, ok := p.(*packet.Connack); !ok || ack.ReasonCode != 0 {
		return fail(fmt.Errorf("%s: the broker refused the connection: %v", s.name, p))
	}
	p, err = packet.Read(br, packet.V311, 0)
	if err != nil {
		return fail(fmt.Errorf("%s: no SUBACK for %s: %w", s.name, topic, err))
	}
	ack, ok := p.(*packet.Suback)
	if !ok || len(ack.Reasons) != 1 {
		return fail(fmt.Errorf("%s: expected a SUBACK for %s, got %v", s.name, topic, p))
	}
	switch granted := byte(ack.Reasons[0]); {
	case granted >= 0x80:
		return fail(fmt.Errorf("%s: the broker refused the subscription to %s (SUBACK 0x%02x)", s.name, topic, granted))
	case granted < qos && s.id == 0:
		r.warn("the broker granted QoS %d for a QoS %d subscription", granted, qos)
	}
	conn.SetDeadline(time.Time{})
	s.lean = &leanSubscription{conn: conn, done: make(chan struct{})}
	go s.readLean(br)
	return nil
}

// readLean accounts the PUBLISH packets that arrive until the connection
// ends; a QoS 1 one is acknowledged once the read buffer is drained.
func (s *mqttSubscriber) readLean(br *bufio.Reader) {
	l := s.lean
	defer close(l.done)
	var acks []byte
	err := func() error {
		for {
			if br.Buffered() == 0 && len(acks) > 0 {
				if _, err := l.conn.Write(acks); err != nil {
					return err
				}
				acks = acks[:0]
			}
			first, size, err := leanHeader(br)
			if err != nil {
				return err
			}
			var body []byte
			if size <= br.Size() {
				if body, err = br.Peek(size); err != nil {
					return err
				}
			} else {
				body = make([]byte, size)
				if _, err := io.ReadFull(br, body); err != nil {
					return err
				}
			}
			if first>>4 == packet.PUBLISH {
				payload, id, ok := leanPublish(first, body)
				if !ok {
					return errors.New("malformed PUBLISH")
				}
				now := time.Now().UnixNano()
				s.mu.Lock()
				s.observe(s.r, payload, first&0x08 != 0, now)
				s.mu.Unlock()
				if id != 0 {
					acks = append(acks, packet.PUBACK<<4, 2, byte(id>>8), byte(id))
				}
			}
			if size <= br.Size() {
				br.Discard(size)
			}
		}
	}()
	if !s.r.recvStopped.Load() {
		s.r.fail(fmt.Errorf("%s: connection lost: %v", s.name, err))
	}
}

// leanHeader reads a fixed header: the first byte and the remaining length.
func leanHeader(br *bufio.Reader) (first byte, size int, err error) {
	if first, err = br.ReadByte(); err != nil {
		return 0, 0, err
	}
	for shift := 0; shift < 28; shift += 7 {
		b, err := br.ReadByte()
		if err != nil {
			return 0, 0, err
		}
		size |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			return first, size, nil
		}
	}
	return 0, 0, errors.New("malformed remaining length")
}

// leanPublish returns a 3.1.1 PUBLISH body's payload and packet id (0 at
// QoS 0).
func leanPublish(first byte, body []byte) (payload []byte, id uint16, ok bool) {
	if len(body) < 2 {
		return nil, 0, false
	}
	p := 2 + (int(body[0])<<8 | int(body[1]))
	if (first>>1)&3 > 0 {
		if len(body) < p+2 {
			return nil, 0, false
		}
		id = uint16(body[p])<<8 | uint16(body[p+1])
		p += 2
	}
	if len(body) < p {
		return nil, 0, false
	}
	return body[p:], id, true
}

// close sends DISCONNECT, closes the connection and waits for the read
// loop.
func (l *leanSubscription) close() {
	l.conn.SetWriteDeadline(time.Now().Add(time.Second))
	l.conn.Write([]byte{packet.DISCONNECT << 4, 0})
	l.conn.Close()
	<-l.done
}
