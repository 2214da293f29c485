package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// `herald bench memory` loads a running broker in one of the ways that
// make a broker's memory grow, and samples its resident set size against
// its memory alarm's watermark: with the alarm working, publishers are held
// back (AMQP connection.blocked, MQTT/STOMP/WebSocket reads paused) and a
// subscriber that stops reading is cut off, so RSS stays within a little
// of the watermark whatever the clients do.
//
//   - flood: AMQP and MQTT publishers, as fast as they can, into a queue
//     nobody consumes;
//   - slow:  the same, with AMQP consumers that acknowledge one message
//     every 10 ms;
//   - stuck: the publishers flood a topic whose subscribers (MQTT and
//     /ws) never read their sockets;
//   - conns: --connections MQTT subscribers (reading) on the flooded topic.

// Memory patterns.
const (
	MemoryFlood = "flood"
	MemorySlow  = "slow"
	MemoryStuck = "stuck"
	MemoryConns = "conns"
)

// MemoryPatterns lists the patterns in the order help shows them.
var MemoryPatterns = []string{MemoryFlood, MemorySlow, MemoryStuck, MemoryConns}

// MemoryConfig configures a memory run.
type MemoryConfig struct {
	Pattern     string        `json:"pattern"`
	AMQPURL     string        `json:"amqp_url"`
	MQTTAddr    string        `json:"mqtt_addr"` // host:port
	HTTPURL     string        `json:"http_url"`  // management API and /ws: http://user:password@host:port
	BrokerPID   int           `json:"broker_pid"`
	Duration    time.Duration `json:"duration_ns"`
	Publishers  int           `json:"publishers"` // of each protocol
	Size        int           `json:"size"`
	Stuck       int           `json:"stuck"`       // stuck: subscribers of each protocol
	Connections int           `json:"connections"` // conns
	SourceAddrs []string      `json:"source_addrs,omitempty"`
}

// DefaultMemoryConfig returns the defaults of the flags.
func DefaultMemoryConfig() MemoryConfig {
	return MemoryConfig{Pattern: MemoryFlood, AMQPURL: DefaultURL, MQTTAddr: "127.0.0.1:1883", HTTPURL: DefaultHTTPURL,
		Duration: 30 * time.Second, Publishers: 2, Size: 4096, Stuck: 10, Connections: 15000}
}

// MemoryResult is what a memory run measured.
type MemoryResult struct {
	Config        MemoryConfig `json:"config"`
	Watermark     uint64       `json:"watermark_bytes"`
	RSSStart      uint64       `json:"rss_start_bytes"`
	RSSPeak       uint64       `json:"rss_peak_bytes"`
	RSSEnd        uint64       `json:"rss_end_bytes"`
	PeakRatio     float64      `json:"peak_over_watermark"` // RSSPeak / Watermark
	AlarmSeen     bool         `json:"alarm_seen"`          // the management API reported the memory alarm
	Blocked       int          `json:"amqp_blocked"`        // connection.blocked received by AMQP publishers
	PublishedAMQP uint64       `json:"published_amqp"`
	PublishedMQTT uint64       `json:"published_mqtt"`
	Consumed      uint64       `json:"consumed,omitempty"`
	StuckClosed   int          `json:"stuck_closed_by_broker"` // stuck subscribers the broker disconnected
	StuckTotal    int          `json:"stuck_total"`
	Connected     int          `json:"connected,omitempty"` // conns
	// PublisherError is the first error that ended a flooding publisher
	// before the end (amqp091-go drops a connection whose socket writes
	// block for 3 heartbeat intervals: its heartbeater, stuck in a write,
	// stops extending the read deadline).
	PublisherError string   `json:"publisher_error,omitempty"`
	Samples        []uint64 `json:"rss_every_second_bytes"`
	Within         bool     `json:"within"` // RSSPeak <= 1.1 * Watermark
}

// RunMemory runs one pattern against the broker and reports its RSS.
func RunMemory(ctx context.Context, cfg MemoryConfig, progress io.Writer) (MemoryResult, error) {
	res := MemoryResult{Config: cfg}
	if progress == nil {
		progress = io.Discard
	}
	if cfg.BrokerPID <= 0 {
		return res, errors.New("--broker-pid is required: the run samples the broker's RSS")
	}
	known := false
	for _, p := range MemoryPatterns {
		known = known || p == cfg.Pattern
	}
	if !known {
		return res, fmt.Errorf("unknown --pattern %q (one of %s)", cfg.Pattern, strings.Join(MemoryPatterns, ", "))
	}
	hu, err := url.Parse(cfg.HTTPURL)
	if err != nil || hu.Host == "" {
		return res, fmt.Errorf("invalid --http-url %q", redactURL(cfg.HTTPURL))
	}
	node, err := nodeMemory(ctx, hu)
	if err != nil {
		return res, fmt.Errorf("reading the watermark from %s/api/nodes: %w", hu.Redacted(), err)
	}
	if node.MemLimit == 0 {
		return res, errors.New("the broker's memory alarm is off (--vm-memory-high-watermark 0): nothing to measure against")
	}
	res.Watermark = node.MemLimit
	if _, err := raiseNoFile(); err != nil {
		fmt.Fprintf(progress, "cannot raise the open-file limit: %v\n", err)
	}
	if res.RSSStart, err = ProcessRSS(cfg.BrokerPID); err != nil {
		return res, err
	}

	r := newRun(ctx, Config{URL: cfg.AMQPURL, SourceAddrs: cfg.SourceAddrs}, progress)
	m := &memoryRun{r: r, cfg: cfg, http: hu, topic: "herald-bench/mem/" + r.id}
	defer m.teardown()

	// The sampler runs from before the clients connect (15,000 connects
	// are a load of their own) until the load stops.
	smp := &rssSampler{pid: cfg.BrokerPID, http: hu, watermark: res.Watermark, out: progress, m: m}
	sctx, stopSampling := context.WithCancel(ctx)
	samplerDone := make(chan struct{})
	go func() { defer close(samplerDone); smp.run(sctx) }()
	finish := func() {
		stopSampling()
		<-samplerDone
		res.RSSPeak, res.AlarmSeen, res.Samples = smp.peak, smp.alarm, smp.samples
	}
	if err := m.setup(); err != nil {
		finish()
		return res, err
	}
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	m.start(runCtx)
	<-runCtx.Done()
	finish()
	if smp.err != nil {
		return res, smp.err
	}
	m.stopClients()
	res.RSSEnd, _ = ProcessRSS(cfg.BrokerPID)
	res.PublishedAMQP, res.PublishedMQTT = m.pubAMQP.Load(), m.pubMQTT.Load()
	res.Consumed = m.consumed.Load()
	res.Blocked = int(m.blocked.Load())
	res.StuckTotal = len(m.stuck)
	res.StuckClosed = m.stuckClosed()
	res.Connected = int(m.connected.Load())
	m.errMu.Lock()
	if m.pubErr != nil {
		res.PublisherError = m.pubErr.Error()
	}
	m.errMu.Unlock()
	res.PeakRatio = float64(res.RSSPeak) / float64(res.Watermark)
	res.Within = res.RSSPeak*10 <= res.Watermark*11
	return res, nil
}

// rssSampler samples the broker's RSS every 100 ms, the memory alarm
// every second, and prints a progress line every second.
type rssSampler struct {
	pid       int
	http      *url.URL
	watermark uint64
	out       io.Writer
	m         *memoryRun

	// Read once run has returned.
	peak    uint64
	alarm   bool
	samples []uint64
	err     error
}

func (s *rssSampler) run(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	t0 := time.Now()
	nextSecond := t0.Add(time.Second)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			rss, err := ProcessRSS(s.pid)
			if err != nil {
				s.err = fmt.Errorf("the broker is gone: %w", err)
				return
			}
			s.peak = max(s.peak, rss)
			if now.Before(nextSecond) {
				continue
			}
			nextSecond = nextSecond.Add(time.Second)
			if n, err := nodeMemory(ctx, s.http); err == nil && n.MemAlarm {
				s.alarm = true
			}
			s.samples = append(s.samples, rss)
			m := s.m
			fmt.Fprintf(s.out, "%4ds  rss %s (%.0f%% of the watermark, peak %.0f%%)  connected %s  published amqp %s mqtt %s  blocked %d\n",
				int(now.Sub(t0).Seconds()+0.5), formatBytes(float64(rss)), 100*float64(rss)/float64(s.watermark), 100*float64(s.peak)/float64(s.watermark),
				FormatCount(uint64(m.connected.Load())), FormatCount(m.pubAMQP.Load()), FormatCount(m.pubMQTT.Load()), m.blocked.Load())
		}
	}
}

// nodeInfo is the part of GET /api/nodes a memory run reads.
type nodeInfo struct {
	MemUsed  uint64 `json:"mem_used"`
	MemLimit uint64 `json:"mem_limit"`
	MemAlarm bool   `json:"mem_alarm"`
}

func nodeMemory(ctx context.Context, hu *url.URL) (nodeInfo, error) {
	u := *hu
	u.User = nil
	u.Path = "/api/nodes"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nodeInfo{}, err
	}
	if hu.User != nil {
		pw, _ := hu.User.Password()
		req.SetBasicAuth(hu.User.Username(), pw)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nodeInfo{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nodeInfo{}, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var nodes []nodeInfo
	if err := json.NewDecoder(resp.Body).Decode(&nodes); err != nil {
		return nodeInfo{}, err
	}
	if len(nodes) == 0 {
		return nodeInfo{}, errors.New("no node listed")
	}
	return nodes[0], nil
}

// memoryRun holds the clients of one run.
type memoryRun struct {
	r     *run
	cfg   MemoryConfig
	http  *url.URL
	topic string // MQTT topic the publishers flood (AMQP: the same as a routing key)
	queue string // flood, slow: the queue nobody (or slow consumers) reads

	admin   *conn
	amqpPub []*conn
	mqttPub []net.Conn
	stuck   []stuckSub
	subs    []net.Conn // conns
	wg      sync.WaitGroup

	pubAMQP, pubMQTT, consumed atomic.Uint64
	blocked, connected         atomic.Int64

	errMu  sync.Mutex
	pubErr error // the first publisher error before the end
}

func (m *memoryRun) publisherFailed(ctx context.Context, who string, err error) {
	if ctx.Err() != nil {
		return
	}
	m.errMu.Lock()
	if m.pubErr == nil {
		m.pubErr = fmt.Errorf("%s: %w", who, err)
	}
	m.errMu.Unlock()
}

// stuckSub is a subscriber that never reads; closedBy tells whether the
// broker dropped it.
type stuckSub struct {
	kind string
	nc   net.Conn        // MQTT
	ws   *websocket.Conn // /ws
	wsNC *trackedConn    // the /ws socket, to tell whether the broker closed it
}

func (m *memoryRun) routingKey() string { return strings.ReplaceAll(m.topic, "/", ".") }

func (m *memoryRun) setup() error {
	r, cfg := m.r, m.cfg
	admin, err := r.dial("memory admin")
	if err != nil {
		return err
	}
	m.admin = admin
	if cfg.Pattern == MemoryFlood || cfg.Pattern == MemorySlow {
		m.queue = r.name("mem")
		if _, err := admin.ch.QueueDeclare(m.queue, false, false, false, false, nil); err != nil {
			return brokerError("admin", "queue.declare", err)
		}
		if err := admin.ch.QueueBind(m.queue, m.routingKey(), "amq.topic", false, nil); err != nil {
			return brokerError("admin", "queue.bind", err)
		}
	}
	// The publishers connect first: once 15,000 subscribers (conns) have
	// taken the broker to its watermark, the memory alarm holds new
	// connections at admission.
	if err := m.connectPublishers(); err != nil {
		return err
	}
	switch cfg.Pattern {
	case MemorySlow:
		for i := range 4 {
			cn, deliveries, err := r.consumeQueue(fmt.Sprintf("slow consumer %d", i), m.queue, "")
			if err != nil {
				return err
			}
			if err := cn.ch.Qos(100, 0, false); err != nil {
				return err
			}
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				for d := range deliveries {
					time.Sleep(10 * time.Millisecond)
					if d.Ack(false) != nil {
						return
					}
					m.consumed.Add(1)
				}
			}()
		}
	case MemoryStuck:
		for i := range cfg.Stuck {
			if err := m.addStuck(i); err != nil {
				return err
			}
		}
	case MemoryConns:
		if err := m.connectSubscribers(); err != nil {
			return err
		}
	}
	return nil
}

// connectPublishers opens the flooding publishers (they start in start).
func (m *memoryRun) connectPublishers() error {
	r := m.r
	for i := range m.cfg.Publishers {
		cn, err := r.dial(fmt.Sprintf("flood publisher %d", i))
		if err != nil {
			return err
		}
		blocked := cn.c.NotifyBlocked(make(chan amqp.Blocking, 4))
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			for b := range blocked {
				if b.Active {
					m.blocked.Add(1)
				}
			}
		}()
		m.amqpPub = append(m.amqpPub, cn)
		nc, _, err := m.mqttConnect(fmt.Sprintf("%s%s-pub%d", namePrefix, r.id, i), "")
		if err != nil {
			return err
		}
		m.mqttPub = append(m.mqttPub, nc)
	}
	return nil
}

// mqttConnect opens a lean MQTT 3.1.1 connection (keep-alive 0) and, with
// filter, subscribes at QoS 0.
func (m *memoryRun) mqttConnect(clientID, filter string) (net.Conn, *bufio.Reader, error) {
	nc, err := m.r.dialer().DialContext(m.r.ctx, "tcp", m.cfg.MQTTAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("MQTT %s: %w", clientID, err)
	}
	nc.SetDeadline(time.Now().Add(setupConnectTimeout))
	out := (&packet.Connect{ProtocolName: "MQTT", ProtocolLevel: packet.V311, CleanStart: true, ClientID: clientID}).Encode(nil, packet.V311)
	if filter != "" {
		out = (&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: filter}}}).Encode(out, packet.V311)
	}
	br := bufio.NewReaderSize(nc, 4096)
	if _, err = nc.Write(out); err == nil {
		if _, err = packet.Read(br, packet.V311, 0); err == nil && filter != "" {
			_, err = packet.Read(br, packet.V311, 0)
		}
	}
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("MQTT %s: %w", clientID, err)
	}
	nc.SetDeadline(time.Time{})
	return nc, br, nil
}

func (m *memoryRun) addStuck(i int) error {
	r := m.r
	// MQTT
	nc, _, err := m.mqttConnect(fmt.Sprintf("%s%s-stuck%d", namePrefix, r.id, i), m.topic)
	if err != nil {
		return err
	}
	m.stuck = append(m.stuck, stuckSub{kind: "mqtt", nc: nc})
	// (No AMQP one: amqp091-go buffers deliveries without bound whether or
	// not they are taken, so its socket is always read. An AMQP consumer
	// is bounded by its prefetch instead.)
	// /ws: subscribes, then never reads.
	d, err := newWSDialer("ws://" + m.http.User.String() + "@" + m.http.Host + "/ws")
	if err != nil {
		return err
	}
	tc := &trackedConn{}
	d.client.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := r.dialer().DialContext(ctx, network, addr)
		tc.Conn = c
		return tc, err
	}
	c, err := d.dial(r.ctx)
	if err == nil {
		if err = d.subscribe(r.ctx, c); err != nil {
			c.CloseNow()
		}
	}
	if err != nil {
		return fmt.Errorf("stuck /ws subscriber %d: %w", i, err)
	}
	m.stuck = append(m.stuck, stuckSub{kind: "ws", ws: c, wsNC: tc})
	return nil
}

// trackedConn remembers the socket under a WebSocket connection.
type trackedConn struct{ net.Conn }

func (m *memoryRun) connectSubscribers() error {
	n := m.cfg.Connections
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(subscribeWorkers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || m.r.ctx.Err() != nil {
					return
				}
				nc, br, err := m.mqttConnect(fmt.Sprintf("%s%s-c%d", namePrefix, m.r.id, i), m.topic)
				if err != nil {
					// A connect that times out is the memory alarm
					// holding new connections (admission): the run goes
					// on with those connected and reports the rest.
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						mu.Lock()
						firstErr = cmpOr(firstErr, err)
						mu.Unlock()
					}
					next.Store(int64(n))
					return
				}
				conns[i] = nc
				m.connected.Add(1)
				m.wg.Add(1)
				go func() { // reads and discards what arrives
					defer m.wg.Done()
					_, _ = io.Copy(io.Discard, br)
				}()
			}
		}()
	}
	wg.Wait()
	for _, c := range conns {
		if c != nil {
			m.subs = append(m.subs, c)
		}
	}
	if len(m.subs) < n {
		fmt.Fprintf(m.r.out, "  %s MQTT subscribers connected; the broker held the rest (a connect timed out)\n", FormatCount(uint64(len(m.subs))))
	} else {
		fmt.Fprintf(m.r.out, "  %s MQTT subscribers connected\n", FormatCount(uint64(len(m.subs))))
	}
	return firstErr
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// start runs the publishers until ctx ends.
func (m *memoryRun) start(ctx context.Context) {
	body := NewBody(m.cfg.Size)
	key := m.routingKey()
	for _, cn := range m.amqpPub {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			for ctx.Err() == nil {
				// A blocked connection holds Publish in its write; the
				// teardown closes the socket under it.
				if err := cn.ch.PublishWithContext(ctx, "amq.topic", key, false, false, amqp.Publishing{Body: body}); err != nil {
					m.publisherFailed(ctx, cn.name, err)
					return
				}
				m.pubAMQP.Add(1)
			}
		}()
	}
	pkt := (&packet.Publish{Topic: m.topic, Payload: body}).Encode(nil, packet.V311)
	batch := make([]byte, 0, 64<<10)
	for len(batch)+len(pkt) <= cap(batch) {
		batch = append(batch, pkt...)
	}
	perBatch := uint64(len(batch) / len(pkt))
	for _, nc := range m.mqttPub {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			stop := context.AfterFunc(ctx, func() { nc.SetWriteDeadline(time.Now()) })
			defer stop()
			for ctx.Err() == nil {
				if _, err := nc.Write(batch); err != nil {
					m.publisherFailed(ctx, "MQTT flood publisher", err)
					return
				}
				m.pubMQTT.Add(perBatch)
			}
		}()
	}
}

// stopClients ends the publishers (closing their sockets: a blocked one
// would not return otherwise) and the consumers.
func (m *memoryRun) stopClients() {
	for _, cn := range m.amqpPub {
		cn.kill()
	}
	for _, nc := range m.mqttPub {
		nc.Close()
	}
}

// stuckClosed counts the stuck subscribers the broker disconnected: each
// socket is drained for a moment; an end of stream means the broker
// closed it.
func (m *memoryRun) stuckClosed() int {
	var n atomic.Int64
	var wg sync.WaitGroup
	for _, s := range m.stuck {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var nc net.Conn
			switch s.kind {
			case "mqtt":
				nc = s.nc
			case "ws":
				nc = s.wsNC.Conn
			}
			deadline := time.Now().Add(3 * time.Second)
			nc.SetReadDeadline(deadline)
			buf := make([]byte, 256<<10)
			for {
				_, err := nc.Read(buf)
				if err == nil {
					continue
				}
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					n.Add(1) // EOF or reset: the broker closed it
				}
				return
			}
		}()
	}
	wg.Wait()
	return int(n.Load())
}

func (m *memoryRun) teardown() {
	m.stopClients()
	for _, s := range m.stuck {
		switch s.kind {
		case "mqtt":
			s.nc.Close()
		case "ws":
			s.ws.CloseNow()
		}
	}
	for _, c := range m.subs {
		c.Close()
	}
	if m.admin != nil && m.queue != "" {
		_ = withTimeout(m.admin, 10*time.Second, func() error {
			_, err := m.admin.ch.QueueDelete(m.queue, false, false, false)
			return err
		})
	}
	for _, cn := range m.r.conns {
		cn.kill()
	}
	m.wg.Wait()
}

// WriteMemoryTable prints a memory run's result.
func WriteMemoryTable(w io.Writer, res MemoryResult) error {
	var b strings.Builder
	row := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-10s %s\n", label, fmt.Sprintf(format, args...))
	}
	verdict := "within 10% of the watermark"
	if !res.Within {
		verdict = "MORE than 10% over the watermark"
	}
	row("pattern", "%s for %v", res.Config.Pattern, res.Config.Duration)
	row("rss", "peak %s = %.0f%% of the watermark %s (%s)   start %s   end %s",
		formatBytes(float64(res.RSSPeak)), 100*res.PeakRatio, formatBytes(float64(res.Watermark)), verdict,
		formatBytes(float64(res.RSSStart)), formatBytes(float64(res.RSSEnd)))
	row("alarm", "memory alarm seen %v   AMQP connection.blocked %d", res.AlarmSeen, res.Blocked)
	row("published", "AMQP %s   MQTT %s (%d B each)", FormatCount(res.PublishedAMQP), FormatCount(res.PublishedMQTT), res.Config.Size)
	if res.Consumed > 0 {
		row("consumed", "%s (slow consumers)", FormatCount(res.Consumed))
	}
	if res.StuckTotal > 0 {
		row("stuck", "%d of %d subscribers that never read were disconnected by the broker", res.StuckClosed, res.StuckTotal)
	}
	if res.PublisherError != "" {
		row("note", "a publisher stopped early: %s", res.PublisherError)
	}
	if res.Config.Pattern == MemoryConns {
		if res.Connected < res.Config.Connections {
			row("conns", "%s of %s MQTT subscribers connected (a connect timed out: the memory alarm held the rest at admission)", FormatCount(uint64(res.Connected)), FormatCount(uint64(res.Config.Connections)))
		} else {
			row("conns", "%s MQTT subscribers connected", FormatCount(uint64(res.Connected)))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
