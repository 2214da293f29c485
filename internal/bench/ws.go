package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// ScenarioWSFanout broadcasts over Herald's /ws protocol: one publisher
// connection publishes to amq.topic with key "ticks" and --subscribers
// connections each subscribe to that exchange and key (a private queue
// each), as browsers of a live dashboard would.
const ScenarioWSFanout = "ws-fanout"

// wsFanoutSummary is ws-fanout's line in the scenario help.
const wsFanoutSummary = "WebSocket (/ws): 1 publisher -> amq.topic 'ticks' -> N --subscribers (default 100); deliveries/s, latency, loss, broker RSS"

const (
	wsExchange = "amq.topic"
	wsKey      = "ticks"
	// wsDialWorkers bounds the connections being opened at once: a
	// listener's accept backlog is finite, and 10,000 simultaneous SYNs
	// would overflow it and turn into retries.
	wsDialWorkers = 64
	// wsShards spreads the latency histograms: one per subscriber would
	// cost ~60 KiB each (600 MiB at 10,000), one shared would be contended.
	wsShards = 16
)

// WSResult holds what ws-fanout measures beyond the common figures.
type WSResult struct {
	Subscribers    int    `json:"subscribers"`
	ClosedByBroker int    `json:"closed_by_broker"` // subscriber sockets the broker closed during the run (e.g. 1008 too slow)
	FirstClose     string `json:"first_close,omitempty"`
	NoFileLimit    uint64 `json:"nofile_limit"`
	// Broker resident set size (VmRSS, bytes) before the subscribers
	// connect, with them subscribed, and at the end of the window
	// (--broker-pid).
	RSSBefore     uint64        `json:"rss_before_bytes,omitempty"`
	RSSSubscribed uint64        `json:"rss_subscribed_bytes,omitempty"`
	RSSEnd        uint64        `json:"rss_end_bytes,omitempty"`
	ConnectTime   time.Duration `json:"connect_ns"` // opening and subscribing every subscriber
}

// normalizeWS is Normalize for ws-fanout.
func (c Config) normalizeWS() (Config, error) {
	if c.URL == "" || c.URL == DefaultURL {
		c.URL = "ws://guest:guest@127.0.0.1:15672/ws"
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return c, fmt.Errorf("invalid --url %q: --scenario %s wants ws://user:password@host:port/ws", redactURL(c.URL), c.Scenario)
	}
	for _, ch := range []struct {
		bad  bool
		flag string
	}{
		{c.Duration < 0, "--duration"}, {c.Warmup < 0, "--warmup"}, {c.Drain < 0, "--drain"},
		{c.Rate < 0, "--rate"}, {c.Subscribers < 0, "--subscribers"}, {c.BrokerPID < 0, "--broker-pid"},
		{c.Producers > 1, "--producers (ws-fanout has one publisher)"}, {c.QoS != 0, "--qos"},
		{c.Connections != 0, "--connections"}, {c.Confirm, "--confirm"}, {c.Persistent, "--persistent"},
		{c.Queues != 0, "--queues"}, {c.DirectReplyTo, "--direct-reply-to"},
		{c.PahoSubscribers, "--paho-subscribers (use --library-subscribers)"},
	} {
		if ch.bad {
			return c, fmt.Errorf("%s: not valid with --scenario %s", ch.flag, c.Scenario)
		}
	}
	setDefault(&c.Duration, DefaultDuration)
	setDefault(&c.Drain, DefaultDrain)
	setDefault(&c.Size, DefaultSize)
	if c.Size < HeaderSize {
		return c, fmt.Errorf("--size %d is too small: every message carries a %d-byte header", c.Size, HeaderSize)
	}
	setDefault(&c.Subscribers, DefaultSubscribers)
	c.Producers, c.Consumers = 1, c.Subscribers
	return c, checkBrokerPID(c.BrokerPID)
}

func describeWS(c Config) string {
	s := fmt.Sprintf("1 WebSocket publisher -> %s '%s' -> %s", wsExchange, wsKey, plural(c.Subscribers, "WebSocket subscriber"))
	if strings.Contains(c.URL, centrifugoPath) {
		s = fmt.Sprintf("1 WebSocket publisher -> Centrifugo channel '%s' -> %s", wsKey, plural(c.Subscribers, "WebSocket subscriber"))
	}
	if c.Rate > 0 {
		s += " at " + FormatCount(uint64(c.Rate)) + " msg/s"
	}
	return s + ", " + fmt.Sprint(c.Size) + " B (base64 on the wire)"
}

// wsDialer opens /ws connections with the URL's credentials as basic auth.
type wsDialer struct {
	url    string
	header http.Header
	client *http.Client
	// centrifugo: the URL is Centrifugo's (centrifugo.go).
	centrifugo bool
	// lean: subscribers use the bench's own reader (wslean.go), dialing
	// parsed with dialContext.
	lean        bool
	parsed      *url.URL
	dialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// wsConn is what a subscriber needs of its socket: the library's
// *websocket.Conn or the bench's leanWS.
type wsConn interface {
	Read(ctx context.Context) (websocket.MessageType, []byte, error)
	Write(ctx context.Context, typ websocket.MessageType, p []byte) error
	CloseNow() error
}

func newWSDialer(raw string) (*wsDialer, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	if u.User != nil {
		pass, _ := u.User.Password()
		req := &http.Request{Header: http.Header{}}
		req.SetBasicAuth(u.User.Username(), pass)
		h.Set("Authorization", req.Header.Get("Authorization"))
		u.User = nil
	}
	centrifugo := strings.HasSuffix(u.Path, centrifugoPath)
	if !centrifugo {
		q := u.Query()
		q.Set("batch", "1") // several frames per WebSocket message (see internal/web)
		u.RawQuery = q.Encode()
	}
	// Upgraded connections leave the transport, so no pool limit applies;
	// the dial timeout keeps a stuck accept from hanging the setup.
	dial := (&net.Dialer{Timeout: setupConnectTimeout}).DialContext
	tr := &http.Transport{DialContext: dial}
	return &wsDialer{url: u.String(), header: h, client: &http.Client{Transport: tr}, centrifugo: centrifugo,
		parsed: u, dialContext: dial}, nil
}

// setDial makes the connections dial with dial (--source-addrs).
func (d *wsDialer) setDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
	d.dialContext = dial
	d.client.Transport.(*http.Transport).DialContext = dial
}

// dialSubscriber opens a subscriber's socket: a lean one (wslean.go)
// unless the run asked for the library or the URL is wss://.
func (d *wsDialer) dialSubscriber(ctx context.Context, bufSize int) (wsConn, error) {
	if !d.lean || d.parsed.Scheme != "ws" {
		return d.dial(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, setupConnectTimeout+time.Second)
	defer cancel()
	return dialLeanWS(ctx, d.dialContext, d.parsed, d.header, bufSize)
}

func (d *wsDialer) dial(ctx context.Context) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, setupConnectTimeout+time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, d.url, &websocket.DialOptions{HTTPHeader: d.header, HTTPClient: d.client})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, err
	}
	c.SetReadLimit(64 << 20)
	return c, nil
}

// wsSubscriber is one subscriber socket and its accounting (its latency
// recorder is a shard shared with other subscribers; its tracker is owned
// by read until done is closed).
type wsSubscriber struct {
	receiverAccount
	r       *run
	c       wsConn
	closed  string // why the broker closed the socket; set before done
	started bool   // read runs (set before it starts)
	done    chan struct{}
	// centrifugo: answer Centrifugo's pings (centrifugo.go).
	centrifugo bool
}

// bodyField finds the body string of a /ws message frame without decoding
// the whole frame (the broker writes "body" as a plain JSON string here:
// the publisher sends base64 text, which needs no escaping).
var bodyField = []byte(`"body":"`)

func (s *wsSubscriber) read(ctx context.Context) {
	defer close(s.done)
	var buf bytes.Buffer
	var raw []byte
	lib, _ := s.c.(*websocket.Conn)
	for {
		var msg []byte
		var err error
		if lib != nil { // (the library's Reader spares Read's copy)
			var rd io.Reader
			if _, rd, err = lib.Reader(ctx); err == nil {
				buf.Reset()
				_, err = buf.ReadFrom(rd)
				msg = buf.Bytes()
			}
		} else {
			_, msg, err = s.c.Read(ctx)
		}
		if err != nil {
			if ctx.Err() == nil && !s.r.recvStopped.Load() {
				s.closed = err.Error()
			}
			return
		}
		now := time.Now().UnixNano()
		for len(msg) > 0 { // a batched message holds one frame per line
			frame := msg
			if k := bytes.IndexByte(msg, '\n'); k >= 0 {
				frame, msg = msg[:k], msg[k+1:]
			} else {
				msg = nil
			}
			if s.centrifugo && string(frame) == centrifugoPing {
				_ = s.c.Write(ctx, websocket.MessageText, frame)
				continue
			}
			s.observeFrame(frame, now, &raw)
		}
	}
}

// observeFrame accounts one /ws frame: a message's body carries the
// bench header with the send time.
func (s *wsSubscriber) observeFrame(frame []byte, now int64, scratch *[]byte) {
	raw := *scratch
	defer func() { *scratch = raw }()
	i := bytes.Index(frame, bodyField)
	if i < 0 {
		return // not a message (subscribed, error, ...)
	}
	b64 := frame[i+len(bodyField):]
	j := bytes.IndexByte(b64, '"')
	if j < 0 {
		s.tracker.Malformed++
		return
	}
	var err error
	raw = raw[:0]
	if raw, err = base64.StdEncoding.AppendDecode(raw, b64[:j]); err != nil {
		s.tracker.Malformed++
		return
	}
	h, ok := DecodeHeader(raw)
	if !ok {
		s.tracker.Malformed++
		return
	}
	s.latency.record(s.r, h, now)
	if !s.tracker.Observe(h.Producer, h.Seq, false) && h.Producer == 0 {
		s.last.record(s.r, h.Seq, now)
	}
	s.received.Add(1)
}

// subscribe sends the subscribe frame and waits for "subscribed", so that
// the binding exists before anything is published.
func wsSubscribe(ctx context.Context, c wsConn) error {
	f, _ := json.Marshal(map[string]any{"op": "subscribe", "id": "s", "exchange": wsExchange, "key": wsKey})
	if err := c.Write(ctx, websocket.MessageText, f); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, setupConnectTimeout)
	defer cancel()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return err
		}
		var m struct{ Op, Message string }
		if json.Unmarshal(b, &m) == nil {
			switch m.Op {
			case "subscribed":
				return nil
			case "error":
				return errors.New("subscribe refused: " + m.Message)
			}
		}
	}
}

// wsPublisher publishes the benchmark messages on one /ws connection.
type wsPublisher struct {
	r           *run
	c           *websocket.Conn
	subscribers int // each should receive every publish
	sent        atomic.Uint64
	centrifugo  bool // Centrifugo's protocol (centrifugo.go)

	last *lastDelivery // armed before each publish
}

func (p *wsPublisher) sentCount() uint64            { return p.sent.Load() }
func (p *wsPublisher) deliveriesPerMessage() uint64 { return uint64(p.subscribers) }

// run sends paced publish frames until told to stop.
func (p *wsPublisher) run(start <-chan struct{}) error {
	if p.centrifugo {
		return p.runCentrifugo(start)
	}
	r := p.r
	select {
	case <-start:
	case <-r.stopSend:
		return nil
	}
	pc := newPacer(float64(r.cfg.Rate), time.Now())
	body := NewBody(r.cfg.Size)
	prefix := []byte(`{"op":"publish","exchange":"` + wsExchange + `","key":"` + wsKey + `","body":"`)
	frame := make([]byte, 0, len(prefix)+base64.StdEncoding.EncodedLen(len(body))+2)
	var seq uint64
	for !r.sendStopped.Load() {
		intended, now, ok := pc.nextSend(r.stopSend)
		if !ok {
			break
		}
		EncodeHeader(body, Header{Seq: seq, SentAt: now, Intended: intended})
		p.last.arm(r, seq, now)
		frame = base64.StdEncoding.AppendEncode(append(frame[:0], prefix...), body)
		frame = append(frame, `"}`...)
		if err := p.c.Write(r.ctx, websocket.MessageText, frame); err != nil {
			if r.sendStopped.Load() || r.ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("publisher: %w", err)
		}
		seq++
		p.sent.Store(seq)
	}
	return nil
}

// runWSFanout runs the ws-fanout scenario.
func runWSFanout(r *run) (res Result, err error) {
	cfg := r.cfg
	res = r.newResult()
	wr := &WSResult{Subscribers: cfg.Subscribers}
	res.WS = wr
	if wr.NoFileLimit, err = raiseNoFile(); err != nil {
		r.warn("cannot raise the open-file limit (now %d): %v", wr.NoFileLimit, err)
	}
	if need := uint64(cfg.Subscribers) + 64; wr.NoFileLimit < need {
		r.warn("open-file limit %d is below the %d sockets needed", wr.NoFileLimit, need)
	}
	rss := func(dst *uint64) {
		if cfg.BrokerPID > 0 {
			if v, err := ProcessRSS(cfg.BrokerPID); err == nil {
				*dst = v
			} else {
				r.warn("cannot read the broker's RSS: %v", err)
			}
		}
	}
	rss(&wr.RSSBefore)
	d, err := newWSDialer(cfg.URL)
	if err != nil {
		return res, err
	}
	if len(cfg.SourceAddrs) > 0 {
		d.setDial(func(ctx context.Context, network, addr string) (net.Conn, error) {
			return r.dialer().DialContext(ctx, network, addr)
		})
	}
	d.lean = !cfg.LibrarySubscribers
	bufSize := leanBufSize(cfg.Subscribers)
	last := newLastDelivery(cfg.Subscribers)
	defer d.client.CloseIdleConnections()

	m := &trafficMeter[*wsPublisher, *wsSubscriber]{}
	var shards [wsShards]*deliveryLatency
	for i := range shards {
		shards[i] = m.newDeliveryLatency()
	}
	// readCtx ends every subscriber's read loop at teardown.
	readCtx, cancelRead := context.WithCancel(context.Background())
	var pubConn *websocket.Conn
	var pubWG sync.WaitGroup
	defer func() {
		r.stopAll()
		waitFor(&pubWG, cfg.Drain+2*time.Second)
		if pubConn != nil {
			_ = pubConn.CloseNow()
		}
		cancelRead()
		closeWS(m.receivers)
	}()

	// Open and subscribe in parallel, bounded.
	t0 := time.Now()
	m.receivers = make([]*wsSubscriber, cfg.Subscribers)
	var next atomic.Int64
	var setupErr error
	var setupMu sync.Mutex
	var wg sync.WaitGroup
	for range min(wsDialWorkers, cfg.Subscribers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= cfg.Subscribers || r.ctx.Err() != nil {
					return
				}
				c, err := d.dialSubscriber(r.ctx, bufSize)
				if err == nil {
					if err = d.subscribe(r.ctx, c); err != nil {
						_ = c.CloseNow()
					}
				}
				if err != nil {
					setupMu.Lock()
					if setupErr == nil {
						setupErr = fmt.Errorf("subscriber %d: %w", i, err)
					}
					setupMu.Unlock()
					next.Store(int64(cfg.Subscribers)) // stop the other workers
					return
				}
				m.receivers[i] = &wsSubscriber{
					r: r, c: c, done: make(chan struct{}), centrifugo: d.centrifugo,
					receiverAccount: receiverAccount{tracker: NewTracker(1), latency: shards[i%wsShards], last: last},
				}
			}
		}()
	}
	wg.Wait()
	if setupErr == nil {
		setupErr = r.ctx.Err()
	}
	if setupErr != nil {
		m.receivers = compactSubs(m.receivers)
		return res, setupErr
	}
	wr.ConnectTime = time.Since(t0)
	fmt.Fprintf(r.out, "  %s subscribers connected and subscribed in %.1fs\n", FormatCount(uint64(len(m.receivers))), wr.ConnectTime.Seconds())
	for _, s := range m.receivers {
		s.started = true
		go s.read(readCtx)
	}
	rss(&wr.RSSSubscribed)

	if pubConn, err = d.dial(r.ctx); err != nil {
		return res, fmt.Errorf("publisher: %w", err)
	}
	if !d.centrifugo { // (the Centrifugo publisher reads its replies itself)
		// The publisher reads too: the library answers the broker's pings
		// only while reading, and a peer that answers none for
		// --ws-heartbeat (25 s) is closed. What arrives is discarded.
		go func(c *websocket.Conn) {
			for {
				if _, _, err := c.Read(readCtx); err != nil {
					return
				}
			}
		}(pubConn)
	}
	pub := &wsPublisher{r: r, c: pubConn, subscribers: len(m.receivers), centrifugo: d.centrifugo, last: last}
	m.senders = []*wsPublisher{pub}
	w, err := m.runSenders(r, &pubWG)
	if err != nil {
		return res, err
	}
	rss(&wr.RSSEnd)
	r.stopSending()
	drainStart := time.Now()
	if !waitFor(&pubWG, 2*cfg.Drain+2*time.Second) {
		return res, errors.New("the publisher did not stop")
	}
	if err := m.awaitInFlight(r, &res, drainStart); err != nil {
		return res, err
	}
	r.stopReceiving()
	cancelRead()
	closeWS(m.receivers) // the read loops have returned: the trackers are final

	sent := pub.sent.Load()
	res.Sent = sent
	trackers := make([]*Tracker, len(m.receivers))
	for i, s := range m.receivers {
		trackers[i] = s.tracker
		if s.closed != "" {
			wr.ClosedByBroker++
			if wr.FirstClose == "" {
				wr.FirstClose = s.closed
			}
		}
	}
	total, per := tallySubscribers(trackers, []Expect{{Producer: 0, Count: sent}})
	res.PerSubscriber = per
	res.setDeliveryCounts(total)
	r.fill(&res, w)
	m.fillLatency(&res)
	res.LastDelivery = last.result()
	if wr.ClosedByBroker > 0 {
		r.warn("the broker closed %s subscriber sockets during the run (first: %s)", FormatCount(uint64(wr.ClosedByBroker)), wr.FirstClose)
	}
	res.Warnings = r.takeWarnings()
	return res, nil
}

func compactSubs(subs []*wsSubscriber) []*wsSubscriber {
	out := subs[:0]
	for _, s := range subs {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// closeWS closes every subscriber socket and waits for its read loop (if
// started) to end.
func closeWS(subs []*wsSubscriber) {
	var wg sync.WaitGroup
	var next atomic.Int64
	for range min(wsDialWorkers, len(subs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(subs) {
					return
				}
				if s := subs[i]; s != nil {
					_ = s.c.CloseNow()
				}
			}
		}()
	}
	wg.Wait()
	for _, s := range subs {
		if s != nil && s.started {
			<-s.done
		}
	}
}

// writeWSRows prints the ws-fanout figures after the common ones.
func writeWSRows(row func(label, format string, args ...any), res Result) {
	ws := res.WS
	line := fmt.Sprintf("%s subscribers connected in %.1fs   closed by the broker %s   open-file limit %d",
		FormatCount(uint64(ws.Subscribers)), ws.ConnectTime.Seconds(), FormatCount(uint64(ws.ClosedByBroker)), ws.NoFileLimit)
	row("sockets", "%s", line)
	if ws.RSSEnd > 0 {
		per := 0.0
		if ws.Subscribers > 0 {
			per = (float64(ws.RSSSubscribed) - float64(ws.RSSBefore)) / float64(ws.Subscribers)
		}
		row("rss", "%s before -> %s subscribed (%s per subscriber) -> %s at window end",
			formatBytes(float64(ws.RSSBefore)), formatBytes(float64(ws.RSSSubscribed)), formatBytes(per), formatBytes(float64(ws.RSSEnd)))
	}
}
