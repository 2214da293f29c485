package test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
)

// Slow and hostile clients (issue 20): a client that trickles its
// handshake, one that sends a megabyte of garbage, and one that stops
// reading while it is flooded must each cost the broker one connection,
// closed, and never slow anyone else down.

// hostileTimeout is every listener's handshake timeout in these tests: small,
// so that a slowloris is dropped quickly, yet far above the time a real
// client takes to connect on loopback.
const hostileTimeout = time.Second

func withHostileTimeouts() serverOption {
	return func(c *app.Config) {
		withAllProtocols()(c)
		c.AMQP.HandshakeTimeout = hostileTimeout
		c.MQTT.ConnectTimeout = hostileTimeout
		c.STOMP.HandshakeTimeout = hostileTimeout
		c.HTTPReadHeaderTimeout = hostileTimeout
		// A subscriber that stopped reading is given up on after this.
		c.MQTT.WriteTimeout = hostileTimeout
		c.Web.WriteTimeout = hostileTimeout
		c.STOMP.WriteTimeout = hostileTimeout
		c.AMQP.WriteTimeout = hostileTimeout
	}
}

// hostilePort is one listener and the bytes of a handshake that is valid
// as far as it goes but never complete (so only the timeout ends it).
type hostilePort struct {
	name    string
	addr    func(*testServer) net.Addr
	trickle []byte
}

func hostilePorts() []hostilePort {
	// AMQP: the protocol header, then a method frame announcing 4 KiB.
	amqpHS := append([]byte("AMQP\x00\x00\x09\x01"), 1, 0, 0, 0, 0, 0x10, 0)
	amqpHS = append(amqpHS, make([]byte, 64)...)
	// MQTT: a CONNECT whose remaining length says 1000 bytes.
	mqttHS := append([]byte{0x10, 0xe8, 0x07, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60}, make([]byte, 64)...)
	httpAddr := func(s *testServer) net.Addr { return s.HTTPAddr() }
	return []hostilePort{
		{"amqp", func(s *testServer) net.Addr { return s.AMQPAddr() }, amqpHS},
		{"mqtt", func(s *testServer) net.Addr { return s.MQTTAddr() }, mqttHS},
		{"stomp", func(s *testServer) net.Addr { return s.STOMPAddr() },
			[]byte("CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\nx-slow:" + strings.Repeat("a", 64))},
		{"http", httpAddr, []byte("GET /api/overview HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 64))},
		{"ws", httpAddr, []byte("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Slow: " + strings.Repeat("a", 64))},
	}
}

// TestSlowlorisDropped: a client sending its handshake a byte at a time
// (ten a second, so that a timeout renewed by each byte would never fire)
// is dropped once the handshake timeout passes, on every port.
func TestSlowlorisDropped(t *testing.T) {
	t.Parallel()
	s := startServer(t, withHostileTimeouts())
	for _, p := range hostilePorts() {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			nc, err := net.Dial("tcp", p.addr(s).String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			start := time.Now()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for _, b := range p.trickle {
					if _, err := nc.Write([]byte{b}); err != nil {
						return
					}
					select {
					case <-tick.C:
					case <-stop:
						return
					}
				}
			})
			defer wg.Wait()
			defer close(stop)
			// Whatever the server says before closing (AMQP's
			// connection.start) is read and dropped; the close ends it.
			_ = nc.SetReadDeadline(time.Now().Add(10 * hostileTimeout))
			_, err = io.Copy(io.Discard, nc)
			took := time.Since(start)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("still open after %v; the handshake timeout is %v", took, hostileTimeout)
			}
			if took < hostileTimeout*9/10 {
				t.Fatalf("closed after %v (%v), before the handshake timeout %v: the trickle was refused, not timed out", took, err, hostileTimeout)
			}
		})
	}
}

// garbage is n bytes from a fixed seed: the same megabyte every run.
func garbage(n int) []byte {
	r := rand.New(rand.NewPCG(20, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	// Random bytes could start with a valid first byte by chance; these
	// start with a byte no protocol here takes as its first.
	b[0] = 0xff
	return b
}

// sendGarbage writes payload after prefix and returns all the server said
// until it closed the connection; it fails if the server keeps it open.
func sendGarbage(t *testing.T, addr net.Addr, prefix, payload []byte) []byte {
	t.Helper()
	nc, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		// The server closes before it has read it all: the write then
		// fails (broken pipe, reset), which is the point.
		_, _ = nc.Write(append(append([]byte(nil), prefix...), payload...))
	})
	_ = nc.SetReadDeadline(time.Now().Add(waitTimeout))
	var out bytes.Buffer
	_, err = io.Copy(&out, nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open after garbage (said %q)", clip(out.Bytes()))
	}
	_ = nc.Close() // ends the writer if the server never read
	return out.Bytes()
}

func clip(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

// TestGarbageRefused: a megabyte of garbage to every port gets that
// protocol's error and a close, and the server keeps serving others.
func TestGarbageRefused(t *testing.T) {
	t.Parallel()
	s := startServer(t, withHostileTimeouts())
	junk := garbage(1 << 20)
	// A client connected before, and one after, each attack must work.
	bystander := s.dial(t)

	mqttV5Connect := func() []byte {
		// A v5 CONNECT, clean start, whose properties are the garbage:
		// its length says the whole megabyte follows.
		body := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 60}
		rem := len(body) + len(junk)
		var hdr []byte
		hdr = append(hdr, 0x10)
		for {
			d := byte(rem % 128)
			rem /= 128
			if rem > 0 {
				d |= 0x80
			}
			hdr = append(hdr, d)
			if rem == 0 {
				break
			}
		}
		return append(hdr, body...)
	}

	cases := []struct {
		name   string
		addr   net.Addr
		prefix []byte
		check  func(t *testing.T, got []byte)
	}{
		{"amqp", s.AMQPAddr(), nil, func(t *testing.T, got []byte) {
			// A client that does not speak AMQP 0-9-1 is told the
			// protocol header the server does speak.
			if !bytes.Equal(got, []byte("AMQP\x00\x00\x09\x01")) {
				t.Fatalf("got %q, want the AMQP 0-9-1 protocol header", clip(got))
			}
		}},
		{"amqp-after-header", s.AMQPAddr(), []byte("AMQP\x00\x00\x09\x01"), func(t *testing.T, got []byte) {
			// connection.start, then connection.close 501 (frame error).
			code, ok := amqpCloseCode(got)
			if !ok || code != 501 {
				t.Fatalf("got %q, want connection.start then connection.close 501", clip(got))
			}
		}},
		{"mqtt", s.MQTTAddr(), nil, func(t *testing.T, got []byte) {
			// Not an MQTT client: MQTT has no answer for it but the close.
			if len(got) != 0 {
				t.Fatalf("got %q, want a bare close", clip(got))
			}
		}},
		{"mqtt-v5", s.MQTTAddr(), mqttV5Connect(), func(t *testing.T, got []byte) {
			// A v5 CONNECT whose properties do not parse: CONNACK with an
			// error reason (0x81 malformed packet: the first property
			// identifier is unknown), then the close.
			if len(got) < 4 || got[0] != 0x20 || got[3] < 0x80 {
				t.Fatalf("got %q, want CONNACK with an error reason", clip(got))
			}
		}},
		{"stomp", s.STOMPAddr(), nil, func(t *testing.T, got []byte) {
			if !bytes.HasPrefix(got, []byte("ERROR\n")) {
				t.Fatalf("got %q, want an ERROR frame", clip(got))
			}
		}},
		{"http", s.HTTPAddr(), nil, func(t *testing.T, got []byte) {
			if !bytes.HasPrefix(got, []byte("HTTP/1.1 400 ")) {
				t.Fatalf("got %q, want 400 Bad Request", clip(got))
			}
		}},
		{"ws", s.HTTPAddr(), wsUpgradeRequest(s), func(t *testing.T, got []byte) {
			// The upgrade succeeds; the garbage is not WebSocket frames
			// (a client's must be masked), so the server closes, with a
			// close frame if it gets one out.
			if !bytes.HasPrefix(got, []byte("HTTP/1.1 101 ")) {
				t.Fatalf("got %q, want 101 Switching Protocols first", clip(got))
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := sendGarbage(t, c.addr, c.prefix, junk)
			c.check(t, got)
			assertAlive(t, bystander)
			ch := mustChannel(t, s.dial(t))
			q := tempQueue(t, ch)
			mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte("still serving")})
			recv(t, mustConsume(t, ch, q, "", true))
		})
	}
}

func wsUpgradeRequest(s *testServer) []byte {
	auth := base64.StdEncoding.EncodeToString([]byte("guest:guest"))
	return []byte("GET /ws HTTP/1.1\r\nHost: " + s.HTTPAddr().String() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Basic " + auth + "\r\n\r\n")
}

// amqpCloseCode finds connection.close (class 10, method 50) among the
// frames in b and returns its reply code.
func amqpCloseCode(b []byte) (int, bool) {
	for len(b) >= 7 {
		typ, size := b[0], int(binary.BigEndian.Uint32(b[3:7]))
		if len(b) < 7+size+1 {
			return 0, false
		}
		p := b[7 : 7+size]
		if typ == 1 && len(p) >= 6 && binary.BigEndian.Uint16(p) == 10 && binary.BigEndian.Uint16(p[2:]) == 50 {
			return int(binary.BigEndian.Uint16(p[4:])), true
		}
		b = b[7+size+1:]
	}
	return 0, false
}

// stalledMQTT connects and subscribes to topic over a raw socket, then
// never reads again: its receive buffer fills and the broker's writes to
// it block.
func stalledMQTT(t *testing.T, addr net.Addr, topic string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	// Small buffers: the stall shows after a few KiB, not megabytes.
	_ = nc.(*net.TCPConn).SetReadBuffer(4096)
	user, pass := "guest", "guest"
	var p []byte
	p = append(p, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xc2, 0, 60)
	p = appendMQTTString(p, "stalled")
	p = appendMQTTString(p, user)
	p = appendMQTTString(p, pass)
	writeMQTT(t, nc, 0x10, p)
	br := bufio.NewReader(nc)
	readMQTT(t, nc, br, 0x20)
	s := []byte{0, 1}
	s = appendMQTTString(s, topic)
	s = append(s, 0) // QoS 0
	writeMQTT(t, nc, 0x82, s)
	readMQTT(t, nc, br, 0x90)
	return nc
}

func appendMQTTString(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

func writeMQTT(t *testing.T, nc net.Conn, typ byte, body []byte) {
	t.Helper()
	if len(body) > 127 {
		t.Fatal("writeMQTT: body too long for a one-byte length")
	}
	if _, err := nc.Write(append([]byte{typ, byte(len(body))}, body...)); err != nil {
		t.Fatal(err)
	}
}

func readMQTT(t *testing.T, nc net.Conn, br *bufio.Reader, typ byte) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(waitTimeout))
	h := make([]byte, 2)
	if _, err := io.ReadFull(br, h); err != nil || h[0]&0xf0 != typ {
		t.Fatalf("want packet type %#x, got %x (%v)", typ, h, err)
	}
	if _, err := io.ReadFull(br, make([]byte, h[1])); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Time{})
}

// TestStalledSubscriberDoesNotSlowOthers: subscribers that stop reading
// their socket (MQTT, /ws, STOMP, an AMQP no-ack consumer) while a flood is published are disconnected
// once their bounded outbox is full, and the other consumers of the same
// flood (AMQP and MQTT) keep receiving every message meanwhile.
func TestStalledSubscriberDoesNotSlowOthers(t *testing.T) {
	t.Parallel()
	s := startServer(t, withHostileTimeouts(), func(c *app.Config) {
		c.Web.Outbox = 16
		c.Web.SlowSubscriberDepth = 100
	})
	stalled := stalledMQTT(t, s.MQTTAddr(), "flood/#")
	stalledWS := stalledWebSocket(t, s)
	stalledSTOMP := stalledSTOMPSubscriber(t, s.STOMPAddr(), "/topic/flood.#")
	stalledAMQP := stalledAMQPConsumer(t, s, "flood.#")

	// The healthy consumers: an AMQP queue bound to the flood, and an
	// MQTT subscriber.
	conn := s.dial(t)
	ch := mustChannel(t, conn)
	q := tempQueue(t, ch)
	if err := ch.QueueBind(q, "flood.#", "amq.topic", false, nil); err != nil {
		t.Fatal(err)
	}
	amqpIn := mustConsume(t, ch, q, "", true)
	var mqttGot atomic.Int64
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + s.MQTTAddr().String()).SetClientID("healthy").
		SetUsername("guest").SetPassword("guest").SetAutoReconnect(false)
	opts.SetDefaultPublishHandler(func(mqtt.Client, mqtt.Message) { mqttGot.Add(1) })
	mc := mqtt.NewClient(opts)
	if tok := mc.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	defer mc.Disconnect(0)
	if tok := mc.Subscribe("flood/#", 1, nil); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("mqtt subscribe: %v", tok.Error())
	}

	// The flood: 1 KiB messages in rounds, until both stalled clients are
	// gone; every round must reach the healthy consumers in full while
	// the stalled ones are still connected (or being dropped).
	pubConn := s.dial(t)
	pub := mustChannel(t, pubConn)
	body := bytes.Repeat([]byte("f"), 1024)
	const round = 2000
	sent := 0
	// Reading the stalled sockets would un-stall them: whether they are
	// still connected is asked of the management API instead.
	stalledGone := func(nc net.Conn) bool { return !connectionListed(t, s, nc.LocalAddr()) }
	if stalledGone(stalled) || stalledGone(stalledWS) || stalledGone(stalledSTOMP) || stalledGone(stalledAMQP) {
		t.Fatal("the stalled subscribers are not listed as connections before the flood")
	}
	for r := 0; ; r++ {
		for range round {
			mustPublish(t, pub, "amq.topic", "flood.x", amqp.Publishing{Body: body})
		}
		sent += round
		for range round {
			recv(t, amqpIn)
		}
		eventually(t, fmt.Sprintf("the healthy MQTT subscriber to get %d messages", sent), func() bool {
			return mqttGot.Load() >= int64(sent)
		})
		if r >= 2 {
			break
		}
	}
	// Past the flood, with writes blocked for longer than the write
	// timeout, both stalled subscribers have been disconnected.
	eventually(t, "the stalled MQTT subscriber to be disconnected", func() bool { return stalledGone(stalled) })
	eventually(t, "the stalled /ws subscriber to be disconnected", func() bool { return stalledGone(stalledWS) })
	eventually(t, "the stalled STOMP subscriber to be disconnected", func() bool { return stalledGone(stalledSTOMP) })
	eventually(t, "the stalled AMQP consumer to be disconnected", func() bool { return stalledGone(stalledAMQP) })
	if got := mqttGot.Load(); got != int64(sent) {
		t.Fatalf("the healthy MQTT subscriber got %d of %d", got, sent)
	}
}

// stalledWebSocket upgrades /ws over a raw socket, subscribes to the
// flood's topic (a private queue per socket) and never reads again.
func stalledWebSocket(t *testing.T, s *testServer) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", s.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := nc.Write(wsUpgradeRequest(s)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	_ = nc.SetReadDeadline(time.Now().Add(waitTimeout))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	msg := []byte(`{"op":"subscribe","id":"s1","exchange":"amq.topic","key":"flood.#"}`)
	// A client frame: FIN+text, masked, with a zero mask.
	frame := append([]byte{0x81, 0x80 | byte(len(msg)), 0, 0, 0, 0}, msg...)
	if _, err := nc.Write(frame); err != nil {
		t.Fatal(err)
	}
	// Wait for "subscribed" so the subscription exists before the flood.
	for {
		h := make([]byte, 2)
		if _, err := io.ReadFull(br, h); err != nil {
			t.Fatal(err)
		}
		n := int(h[1] & 0x7f)
		if n == 126 {
			var l [2]byte
			if _, err := io.ReadFull(br, l[:]); err != nil {
				t.Fatal(err)
			}
			n = int(binary.BigEndian.Uint16(l[:]))
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(p, []byte(`"subscribed"`)) {
			break
		}
	}
	_ = nc.SetReadDeadline(time.Time{})
	return nc
}

// connectionListed reports whether GET /api/connections lists a connection
// from the client address local.
func connectionListed(t *testing.T, s *testServer, local net.Addr) bool {
	t.Helper()
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/api/connections?columns=peer_port", s.HTTPAddr()), nil)
	req.SetBasicAuth("guest", "guest")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var conns []struct {
		PeerPort int `json:"peer_port"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&conns); err != nil {
		t.Fatal(err)
	}
	port := local.(*net.TCPAddr).Port
	for _, c := range conns {
		if c.PeerPort == port {
			return true
		}
	}
	return false
}

// stalledSTOMPSubscriber connects and subscribes (auto ack) over a raw
// socket, then never reads again.
func stalledSTOMPSubscriber(t *testing.T, addr net.Addr, dest string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := nc.Write([]byte("CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\nheart-beat:0,0\n\n\x00" +
		"SUBSCRIBE\nid:0\ndestination:" + dest + "\nack:auto\nreceipt:sub\n\n\x00")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	_ = nc.SetReadDeadline(time.Now().Add(waitTimeout))
	for _, want := range []string{"CONNECTED", "RECEIPT"} {
		f, err := br.ReadString(0)
		if err != nil || !strings.HasPrefix(strings.TrimLeft(f, "\n"), want) {
			t.Fatalf("want %s, got %q (%v)", want, f, err)
		}
	}
	_ = nc.SetReadDeadline(time.Time{})
	return nc
}

// stalledAMQPConsumer consumes (no-ack) a private queue bound to key on
// amq.topic and never takes a delivery: the client library stops reading
// its socket once its delivery channel is full. It returns the socket.
func stalledAMQPConsumer(t *testing.T, s *testServer, key string) net.Conn {
	t.Helper()
	var raw net.Conn
	c, err := amqp.DialConfig(s.URL, amqp.Config{Dial: func(network, addr string) (net.Conn, error) {
		nc, err := net.DialTimeout(network, addr, waitTimeout)
		if err == nil {
			_ = nc.(*net.TCPConn).SetReadBuffer(4096)
			raw = nc
		}
		return nc, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	ch := mustChannel(t, c)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, key, "amq.topic", false, nil); err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Unblock the library's reader so that it sees the close.
		go func() {
			for range ds {
			}
		}()
		_ = c.Close()
	})
	return raw
}
