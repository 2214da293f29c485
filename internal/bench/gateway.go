package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ScenarioRPCGateway calls an RPC service through Herald's HTTP gateway,
// POST /api/rpc/{vhost}/{service}/{method} (docs/rpc-gateway.md): --consumers
// service instances (AMQP, by the wire convention: consume rpc.S, reply
// with x-rpc-status OK) answer --callers HTTP clients that each keep one
// connection alive and send one call at a time. Reports calls per second
// and the call latency as the HTTP client sees it.
const ScenarioRPCGateway = "rpc-gateway"

const rpcGatewaySummary = "HTTP gateway: N --callers (keep-alive) POST /api/rpc/... -> --consumers service instances over AMQP; calls/s, latency"

// DefaultHTTPURL is where rpc-gateway finds the HTTP API.
const DefaultHTTPURL = "http://guest:guest@127.0.0.1:15672"

// normalizeGateway is Normalize for rpc-gateway: the AMQP URL serves the
// instances, HTTPURL the callers.
func (c Config) normalizeGateway() (Config, error) {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if _, err := amqp.ParseURI(c.URL); err != nil {
		return c, fmt.Errorf("invalid --url %q: %v (the service instances speak AMQP: amqp://user:password@host:port/vhost)", redactURL(c.URL), err)
	}
	if c.HTTPURL == "" {
		c.HTTPURL = DefaultHTTPURL
	}
	if u, err := url.Parse(c.HTTPURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, fmt.Errorf("invalid --http-url %q: want http://user:password@host:port", redactURL(c.HTTPURL))
	}
	for _, ch := range []flagCheck{
		{c.Subscribers != 0, "--subscribers", "does not apply"}, {c.QoS != 0, "--qos", "does not apply"},
		{c.Connections != 0, "--connections", "does not apply"}, {c.Confirm, "--confirm", "does not apply"},
		{c.DirectReplyTo, "--direct-reply-to", "does not apply (the gateway always uses direct reply-to)"},
		{c.Rate != 0, "--rate", "does not apply (callers go as fast as the replies come)"},
	} {
		if ch.bad {
			return c, fmt.Errorf("%s %s to --scenario %s", ch.flag, ch.msg, c.Scenario)
		}
	}
	if err := c.checkRanges(amqpNumericFlags); err != nil {
		return c, err
	}
	setDefault(&c.Duration, DefaultDuration)
	setDefault(&c.Drain, DefaultDrain)
	setDefault(&c.RPCTimeout, DefaultRPCTimeout)
	setDefault(&c.Consumers, 1)
	setDefault(&c.Size, DefaultSize)
	setDefault(&c.Callers, DefaultCallers)
	c.Producers, c.Queues = c.Callers, 1
	return c, checkBrokerPID(c.BrokerPID)
}

func describeGateway(c Config) string {
	return fmt.Sprintf("%s (HTTP keep-alive) -> gateway -> %s, %d B", plural(c.Callers, "caller"), plural(c.Consumers, "service instance"), c.Size)
}

// gatewayCaller sends one call at a time over its own keep-alive client.
type gatewayCaller struct {
	client            *http.Client
	url, user, pass   string
	timeout           string
	body              []byte
	sent, ok, failed  atomic.Uint64
	firstFailure      atomic.Pointer[string]
	measuring, warmup *atomic.Bool
	hist, warmHist    *Histogram
}

func (c *gatewayCaller) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		req, err := http.NewRequest(http.MethodPost, c.url, bytes.NewReader(c.body))
		if err != nil {
			c.fail(err.Error())
			return
		}
		req.SetBasicAuth(c.user, c.pass)
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("X-Herald-Timeout", c.timeout)
		inWindow, inWarmup := c.measuring.Load(), c.warmup.Load()
		t0 := time.Now()
		c.sent.Add(1)
		resp, err := c.client.Do(req)
		if err != nil {
			c.fail(err.Error())
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond): // a refused connection must not spin
			}
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(b) != len(c.body) {
			c.fail(fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b))))
			continue
		}
		d := time.Since(t0)
		c.ok.Add(1)
		if inWindow && c.measuring.Load() {
			c.hist.Record(d)
		} else if inWarmup && c.warmup.Load() {
			c.warmHist.Record(d)
		}
	}
}

func (c *gatewayCaller) fail(why string) {
	c.failed.Add(1)
	c.firstFailure.CompareAndSwap(nil, &why)
}

// gatewayInstance answers calls by the wire convention: the body back,
// x-rpc-status OK.
func gatewayInstance(r *run, cn *conn, ds <-chan amqp.Delivery) error {
	for {
		select {
		case d, ok := <-ds:
			if !ok {
				if r.recvStopped.Load() {
					return nil
				}
				return fmt.Errorf("%s: requests stopped: %v", cn.name, cn.reason(nil))
			}
			err := cn.ch.PublishWithContext(context.Background(), "", d.ReplyTo, false, false, amqp.Publishing{
				CorrelationId: d.CorrelationId, ContentType: d.ContentType, Body: d.Body,
				Headers: amqp.Table{"x-rpc-status": "OK"},
			})
			if err == nil && !r.cfg.AutoAck {
				err = cn.ch.Ack(d.DeliveryTag, false)
			}
			if err != nil {
				if r.recvStopped.Load() {
					return nil
				}
				return fmt.Errorf("%s: replying failed: %w", cn.name, cn.reason(err))
			}
		case <-r.stopRecv:
			return nil
		}
	}
}

func runRPCGateway(r *run) (res Result, err error) {
	cfg := r.cfg
	res = r.newResult()
	res.Config.HTTPURL = redactURL(cfg.HTTPURL)
	uri, _ := amqp.ParseURI(cfg.URL)
	hu, _ := url.Parse(cfg.HTTPURL)
	user := hu.User.Username()
	pass, _ := hu.User.Password()
	hu.User = nil

	admin, err := r.dial("admin")
	if err != nil {
		return res, err
	}
	service := strings.TrimSuffix(r.name("svc"), "-")
	queue := "rpc." + service
	defer func() { r.teardown(admin, []string{queue}, "") }()
	if err := adminCall(admin, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(queue, false, true, false, false, nil)
		return err
	}); err != nil {
		return res, brokerError("admin", "declaring "+queue, err)
	}
	var instancesWG sync.WaitGroup
	for i := 0; i < cfg.Consumers; i++ {
		cn, ds, err := r.consumeQueue(fmt.Sprintf("service instance %d", i), queue, fmt.Sprintf("%si%d", namePrefix, i))
		if err != nil {
			return res, err
		}
		r.goWorker(&instancesWG, func() error { return gatewayInstance(r, cn, ds) })
	}

	vhost := uri.Vhost
	if vhost == "" {
		vhost = "/"
	}
	callURL := strings.TrimSuffix(hu.String(), "/") + "/api/rpc/" + url.PathEscape(vhost) + "/" + url.PathEscape(service) + "/Echo"
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: setupConnectTimeout}).DialContext,
		MaxIdleConnsPerHost: cfg.Callers, MaxConnsPerHost: cfg.Callers, IdleConnTimeout: time.Minute,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: cfg.RPCTimeout + 5*time.Second}
	var measuring, warmup atomic.Bool
	hist, warmHist := new(Histogram), new(Histogram)
	callers := make([]*gatewayCaller, cfg.Callers)
	stop := make(chan struct{})
	var callersWG sync.WaitGroup
	warmup.Store(cfg.Warmup > 0)
	for i := range callers {
		c := &gatewayCaller{client: client, url: callURL, user: user, pass: pass, timeout: cfg.RPCTimeout.String(),
			body: NewBody(cfg.Size), measuring: &measuring, warmup: &warmup, hist: hist, warmHist: warmHist}
		callers[i] = c
		callersWG.Add(1)
		go func() {
			defer callersWG.Done()
			c.run(stop)
		}()
	}
	total := func() (sent, ok uint64) {
		for _, c := range callers {
			sent += c.sent.Load()
			ok += c.ok.Load()
		}
		return sent, ok
	}
	sleep := func(d time.Duration) bool {
		select {
		case <-time.After(d):
			return true
		case <-r.ctx.Done():
			return false
		}
	}
	interrupted := false
	if cfg.Warmup > 0 {
		t0 := time.Now()
		_, ok0 := total()
		interrupted = !sleep(cfg.Warmup)
		_, ok1 := total()
		el := time.Since(t0)
		res.Warmup = &Phase{Elapsed: el, Received: ok1 - ok0, MsgsPerSec: float64(ok1-ok0) / el.Seconds(), Latency: warmHist.Snapshot().Summary()}
		warmup.Store(false)
	}
	var cpu0 float64
	if cfg.BrokerPID > 0 {
		cpu0, _ = ProcessCPU(cfg.BrokerPID)
	}
	self0, _ := ProcessCPU(0)
	sent0, ok0 := total()
	measuring.Store(true)
	t0 := time.Now()
	if !interrupted {
		interrupted = !sleep(cfg.Duration)
	}
	measuring.Store(false)
	res.Elapsed = time.Since(t0)
	sent1, ok1 := total()
	if self1, err := ProcessCPU(0); err == nil {
		res.BenchCPU = self1 - self0
	}
	if cfg.BrokerPID > 0 {
		if cpu1, err := ProcessCPU(cfg.BrokerPID); err == nil {
			res.BrokerCPU = cpu1 - cpu0
			if res.BrokerCPU > 0 {
				res.MsgsPerBrokerCPUSec = float64(ok1-ok0) / res.BrokerCPU
			}
		}
	}
	close(stop)
	if !waitFor(&callersWG, cfg.RPCTimeout+6*time.Second) {
		r.warn("callers did not finish within %v", cfg.RPCTimeout+6*time.Second)
	}
	r.stopReceiving()
	waitFor(&instancesWG, 3*time.Second)

	res.Interrupted = interrupted && r.ctx.Err() != nil
	res.WindowSent, res.WindowReceived = sent1-sent0, ok1-ok0
	if s := res.Elapsed.Seconds(); s > 0 {
		res.MsgsPerSec = float64(res.WindowReceived) / s
		res.SentPerSec = float64(res.WindowSent) / s
		res.MBPerSec = res.MsgsPerSec * float64(cfg.Size) / 1e6
	}
	res.LatencySummary = hist.Snapshot().Summary()
	var firstFailure *string
	for _, c := range callers {
		res.Sent += c.sent.Load()
		res.Received += c.ok.Load()
		res.Malformed += c.failed.Load()
		if f := c.firstFailure.Load(); f != nil && firstFailure == nil {
			firstFailure = f
		}
	}
	if firstFailure != nil {
		r.warn("%s calls failed (counted as malformed); one of them: %s", FormatCount(res.Malformed), *firstFailure)
	}
	res.Expected = res.Sent
	res.Warnings = r.takeWarnings()
	select {
	case err := <-r.errs:
		return res, err
	default:
	}
	return res, nil
}
