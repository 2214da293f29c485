package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// ScenarioWSIdle holds idle WebSocket connections and reports what each
// costs the broker. The dialect follows --url's path: Herald's /ws (the
// socket answers one ping op, nothing else), /mqtt (an MQTT 3.1.1
// CONNECT over subprotocol "mqtt", no keep-alive), or Centrifugo's
// /connection/websocket (a connect command), so that one client measures
// Herald and Centrifugo side by side.
const ScenarioWSIdle = "ws-idle"

const wsIdleSummary = "WebSocket (/ws, /mqtt or Centrifugo): hold N idle --connections (default 10,000); connect rate, broker RSS per connection"

// normalizeWSIdle is Normalize for ws-idle.
func (c Config) normalizeWSIdle() (Config, error) {
	if c.URL == "" || c.URL == DefaultURL {
		c.URL = "ws://guest:guest@127.0.0.1:15672/ws"
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return c, fmt.Errorf("invalid --url %q: --scenario %s wants ws://user:password@host:port/ws (or /mqtt, or Centrifugo's /connection/websocket)", redactURL(c.URL), c.Scenario)
	}
	for _, ch := range []struct {
		bad  bool
		flag string
	}{
		{c.Rate != 0, "--rate"}, {c.Subscribers != 0, "--subscribers"}, {c.Producers > 1, "--producers"},
		{c.LibrarySubscribers, "--library-subscribers"}, {c.PahoSubscribers, "--paho-subscribers"},
		{c.QoS != 0, "--qos"}, {c.Confirm, "--confirm"}, {c.Persistent, "--persistent"}, {c.Queues != 0, "--queues"},
		{c.DirectReplyTo, "--direct-reply-to"}, {c.Duration < 0, "--duration"}, {c.Connections < 0, "--connections"},
		{c.BrokerPID < 0, "--broker-pid"},
	} {
		if ch.bad {
			return c, fmt.Errorf("%s: not valid with --scenario %s", ch.flag, c.Scenario)
		}
	}
	setDefault(&c.Duration, DefaultDuration)
	setDefault(&c.Connections, DefaultConnections)
	c.Producers, c.Consumers, c.Warmup = 0, 0, 0
	return c, checkBrokerPID(c.BrokerPID)
}

func describeWSIdle(c Config) string {
	kind := "/ws"
	switch {
	case strings.Contains(c.URL, centrifugoPath):
		kind = "Centrifugo"
	case strings.HasSuffix(strings.SplitN(c.URL, "?", 2)[0], "/mqtt"):
		kind = "MQTT over WebSocket"
	}
	return fmt.Sprintf("%s idle WebSocket connections (%s), held %v", FormatCount(uint64(c.Connections)), kind, c.Duration)
}

// wsIdleDialect opens one idle connection of --url's kind.
type wsIdleDialect struct {
	d        *wsDialer
	mqtt     bool
	user     string
	password string
}

func newWSIdleDialect(raw string) (*wsIdleDialect, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	x := &wsIdleDialect{mqtt: strings.HasSuffix(u.Path, "/mqtt")}
	if x.mqtt && u.User != nil {
		// MQTT logs in in CONNECT, not on the upgrade.
		x.user = u.User.Username()
		x.password, _ = u.User.Password()
		u.User = nil
		raw = u.String()
	}
	if x.d, err = newWSDialer(raw); err != nil {
		return nil, err
	}
	if x.mqtt {
		x.d.url = raw // no ?batch=1 on /mqtt
	}
	return x, nil
}

// open dials and waits for the protocol's answer (pong, CONNACK,
// Centrifugo's connect reply), so that the broker holds the session.
func (x *wsIdleDialect) open(ctx context.Context, i int, id string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, setupConnectTimeout+time.Second)
	defer cancel()
	opts := &websocket.DialOptions{HTTPHeader: x.d.header, HTTPClient: x.d.client}
	if x.mqtt {
		opts.Subprotocols = []string{"mqtt"}
	}
	c, resp, err := websocket.Dial(ctx, x.d.url, opts)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, err
	}
	err = x.handshake(ctx, c, fmt.Sprintf("%s%s-w%d", namePrefix, id, i))
	if err != nil {
		_ = c.CloseNow()
		return nil, err
	}
	return c, nil
}

func (x *wsIdleDialect) handshake(ctx context.Context, c *websocket.Conn, clientID string) error {
	switch {
	case x.mqtt:
		if err := c.Write(ctx, websocket.MessageBinary, mqttConnectPacket(clientID, x.user, x.password)); err != nil {
			return err
		}
		_, b, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if len(b) < 4 || b[0] != 0x20 || b[3] != 0 {
			return fmt.Errorf("connect refused: CONNACK %x", b)
		}
		return nil
	case x.d.centrifugo:
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"id":1,"connect":{}}`)); err != nil {
			return err
		}
	default:
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"op":"ping","id":1}`)); err != nil {
			return err
		}
	}
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return err
		}
		for _, line := range splitLines(b) {
			var m struct {
				ID    json.RawMessage `json:"id"`
				Op    string          `json:"op"`
				Error json.RawMessage `json:"error"`
			}
			if json.Unmarshal(line, &m) != nil || (string(m.ID) != "1" && string(m.ID) != `"1"`) {
				continue
			}
			if len(m.Error) > 0 && string(m.Error) != "null" {
				return fmt.Errorf("connect refused: %s", line)
			}
			return nil
		}
	}
}

// mqttConnectPacket is an MQTT 3.1.1 CONNECT: clean session, keep-alive
// 0 (none: the connection is idle for as long as the run holds it).
func mqttConnectPacket(clientID, user, password string) []byte {
	str := func(b []byte, s string) []byte {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		return append(b, s...)
	}
	flags := byte(0x02)
	var v []byte
	v = str(v, "MQTT")
	v = append(v, 4, 0, 0, 0) // level 4, flags (set below), keep-alive 0
	v = str(v, clientID)
	if user != "" {
		flags |= 0x80
		v = str(v, user)
		if password != "" {
			flags |= 0x40
			v = str(v, password)
		}
	}
	v[7] = flags
	p := []byte{0x10}
	for n := len(v); ; {
		b := byte(n & 0x7F)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		p = append(p, b)
		if n == 0 {
			break
		}
	}
	return append(p, v...)
}

// runWSIdle runs the ws-idle scenario.
func runWSIdle(r *run) (Result, error) {
	cfg := r.cfg
	res := r.newResult()
	idle := &IdleResult{Requested: cfg.Connections}
	res.Idle = idle
	x, err := newWSIdleDialect(cfg.URL)
	if err != nil {
		return res, err
	}
	defer x.d.client.CloseIdleConnections()
	if len(cfg.SourceAddrs) > 0 {
		// Each source address has its own ephemeral ports: 15,000
		// sockets to one port, run after run, outgrow one address's.
		x.d.client.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return r.dialer().DialContext(ctx, network, addr)
		}
	}
	r.beginIdle(idle, "")

	conns := make([]*websocket.Conn, cfg.Connections) // slot i is written by one worker only
	readCtx, cancelRead := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	var lost atomic.Int64
	defer func() {
		r.stopAll()
		cancelRead()
		for _, c := range conns {
			if c != nil {
				_ = c.CloseNow()
			}
		}
		readers.Wait()
	}()
	err = r.connectIdle(idle, wsDialWorkers, func(i int) error {
		c, err := x.open(r.ctx, i, r.id)
		if err != nil {
			return err
		}
		conns[i] = c
		// Read, so that the client answers the broker's pings; anything
		// but a ping counts the socket as lost.
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				_, b, err := c.Read(readCtx)
				if err != nil {
					if readCtx.Err() == nil {
						lost.Add(1)
					}
					return
				}
				if x.d.centrifugo && string(b) == centrifugoPing {
					_ = c.Write(readCtx, websocket.MessageText, b)
				}
			}
		}()
		return nil
	})
	if err != nil {
		return res, err
	}
	w := r.holdIdle(idle, &lost, "")
	r.fill(&res, w)
	res.Warnings = r.takeWarnings()
	if errors.Is(r.ctx.Err(), context.Canceled) {
		res.Interrupted = true
	}
	return res, nil
}
