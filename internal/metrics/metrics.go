// Package metrics exposes Herald's Prometheus metrics.
//
// Nothing here is global: New builds a fresh registry (never the default
// one) holding the Go runtime and process collectors, a collector that
// reads the broker core at scrape time, and the Counters that protocol
// adapters bump. cmd/herald builds one Metrics and mounts Handler at
// /metrics.
//
// # Metrics read from the broker at scrape time
//
// Per queue, labels vhost and queue:
//
//	herald_queue_messages_ready              gauge: messages waiting for a consumer
//	herald_queue_messages_ready_bytes        gauge: body bytes of those messages
//	herald_queue_messages_unacked            gauge: delivered, not yet acknowledged
//	herald_queue_consumers                   gauge
//	herald_queue_messages_published_total    counter: messages enqueued (a fanned-out message counts once per queue)
//	herald_queue_messages_delivered_total    counter: deliveries and gets, redeliveries included
//	herald_queue_messages_acked_total        counter
//
// Per vhost, label vhost: herald_vhost_queues and herald_vhost_exchanges
// (gauges, the default and amq.* exchanges included).
//
// Broker-wide:
//
//	herald_connections{protocol}             gauge: open client connections, by the registry's protocol name ("AMQP 0-9-1", "MQTT 3.1.1", ...)
//	herald_consumers                         gauge: consumers of every queue
//	herald_alarm{resource="memory"|"disk"}   gauge: 1 while the resource alarm is raised (publishers blocked)
//	herald_published_total{protocol}         counter: messages clients of the protocol published
//	herald_delivered_total{protocol}         counter: messages delivered to clients of the protocol (basic.get included)
//	herald_acked_total{protocol}             counter: deliveries clients of the protocol acknowledged
//	herald_channels                          gauge: open channels (AMQP; sessions elsewhere) of every connection
//
// The three message counters use the Protocol label constants
// ("amqp091", "mqtt", "stomp", "websocket" for /ws, "mqtt-ws", "http" for
// the plain HTTP publish, get and fetch requests, "sse" for Server-Sent
// Events deliveries); the connections keep them (one atomic add per
// message, see broker.Connection), the registry keeps the totals of
// closed connections, so they never go back, and requests without a
// connection count on broker.ProtocolCounter.
//
// # The message log
//
//	herald_log_fsync_seconds                 histogram: latency of the fsync that makes a group-commit batch durable
//
// The store reports it through store.Options.OnSync = m.ObserveFsync.
//
// The per-queue counters live in the queue, so they start at zero when a
// queue is (re)declared and vanish with it; Prometheus' rate() treats that
// as a counter reset.
//
// # Counters bumped by the adapters
//
// See Counters: adapters call its nil-safe helpers. A counter shows in a
// scrape from the first time its protocol label is used.
package metrics

import (
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heraldmq/herald/internal/broker"
)

// Metrics owns a Prometheus registry describing one broker.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler
	// Counters are the counters protocol adapters bump; hand this pointer
	// to their configs.
	Counters *Counters
	fsync    prometheus.Histogram
	broker   *brokerCollector
}

// New returns the metrics of b in a fresh registry. b may be nil when
// the metrics must exist before the broker (the store reports fsyncs and
// the broker is built on the store): call SetBroker once it exists.
func New(b *broker.Broker) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg, Counters: newCounters(), broker: newBrokerCollector(b),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "herald_log_fsync_seconds",
			Help: "Latency of the message log's fsync of a group-commit batch.",
			// 50µs (a fast NVMe) to ~3s (a saturated disk).
			Buckets: prometheus.ExponentialBuckets(50e-6, 3, 11),
		})}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.broker,
		m.fsync,
	)
	m.Counters.register(reg)
	// Built once: InstrumentMetricHandler registers its own counters in
	// reg, which would panic on a second registration.
	m.handler = promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:          reg,
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	}))
	return m
}

// SetBroker sets the broker read at scrape time (see New).
func (m *Metrics) SetBroker(b *broker.Broker) { m.broker.b.Store(b) }

// ObserveFsync records one fsync of the message log; it is the store's
// Options.OnSync. Safe for concurrent use.
func (m *Metrics) ObserveFsync(d time.Duration) { m.fsync.Observe(d.Seconds()) }

// Registry is the registry every Herald metric lives in; other packages
// may register their own collectors in it.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text (or OpenMetrics)
// exposition format. It needs no authentication, as RabbitMQ's
// Prometheus endpoint; mount it where that is acceptable.
func (m *Metrics) Handler() http.Handler { return m.handler }

// brokerCollector reads the broker's queues at scrape time, so that the
// hot path pays nothing for metrics: the queues count their messages
// anyway (atomics read by Queue.Stats).
type brokerCollector struct {
	b atomic.Pointer[broker.Broker] // nil until set: nothing is reported

	connections, consumersTotal, alarm *prometheus.Desc
	protoPublished, protoDelivered     *prometheus.Desc
	protoAcked, channels               *prometheus.Desc

	ready, readyBytes, unacked, consumers *prometheus.Desc
	published, delivered, acked           *prometheus.Desc
	queues, exchanges                     *prometheus.Desc
}

func newBrokerCollector(b *broker.Broker) *brokerCollector {
	q := []string{"vhost", "queue"}
	v := []string{"vhost"}
	c := &brokerCollector{
		connections:    prometheus.NewDesc("herald_connections", "Open client connections.", []string{"protocol"}, nil),
		consumersTotal: prometheus.NewDesc("herald_consumers", "Consumers of every queue.", nil, nil),
		alarm:          prometheus.NewDesc("herald_alarm", "1 while the resource alarm is raised and publishers are blocked.", []string{"resource"}, nil),
		protoPublished: prometheus.NewDesc("herald_published_total", "Messages published by clients, by protocol.", []string{"protocol"}, nil),
		protoDelivered: prometheus.NewDesc("herald_delivered_total", "Messages delivered to clients, by protocol.", []string{"protocol"}, nil),
		protoAcked:     prometheus.NewDesc("herald_acked_total", "Deliveries acknowledged by clients, by protocol.", []string{"protocol"}, nil),
		channels:       prometheus.NewDesc("herald_channels", "Open channels of every client connection.", nil, nil),
		ready:          prometheus.NewDesc("herald_queue_messages_ready", "Messages ready for delivery in the queue.", q, nil),
		readyBytes:     prometheus.NewDesc("herald_queue_messages_ready_bytes", "Body bytes of the messages ready in the queue.", q, nil),
		unacked:        prometheus.NewDesc("herald_queue_messages_unacked", "Messages delivered from the queue and not yet acknowledged.", q, nil),
		consumers:      prometheus.NewDesc("herald_queue_consumers", "Consumers of the queue.", q, nil),
		published:      prometheus.NewDesc("herald_queue_messages_published_total", "Messages enqueued in the queue since it was declared.", q, nil),
		delivered:      prometheus.NewDesc("herald_queue_messages_delivered_total", "Messages delivered or got from the queue since it was declared, redeliveries included.", q, nil),
		acked:          prometheus.NewDesc("herald_queue_messages_acked_total", "Deliveries from the queue acknowledged since it was declared.", q, nil),
		queues:         prometheus.NewDesc("herald_vhost_queues", "Queues in the virtual host.", v, nil),
		exchanges:      prometheus.NewDesc("herald_vhost_exchanges", "Exchanges in the virtual host, the default and amq.* ones included.", v, nil),
	}
	if b != nil {
		c.b.Store(b)
	}
	return c
}

func (c *brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.ready, c.readyBytes, c.unacked, c.consumers,
		c.published, c.delivered, c.acked, c.queues, c.exchanges, c.connections, c.consumersTotal, c.alarm,
		c.protoPublished, c.protoDelivered, c.protoAcked, c.channels} {
		ch <- d
	}
}

func (c *brokerCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	b := c.b.Load()
	if b == nil {
		return
	}
	consumers := 0
	for _, v := range b.VHosts() {
		vname := v.Name()
		queues := v.Queues()
		gauge(c.queues, float64(len(queues)), vname)
		gauge(c.exchanges, float64(len(v.Exchanges())), vname)
		for _, q := range queues {
			st := q.Stats()
			qname := q.Name()
			gauge(c.ready, float64(st.Ready), vname, qname)
			gauge(c.readyBytes, float64(st.ReadyBytes), vname, qname)
			gauge(c.unacked, float64(st.Unacked), vname, qname)
			gauge(c.consumers, float64(st.Consumers), vname, qname)
			consumers += st.Consumers
			counter(c.published, st.Published, vname, qname)
			counter(c.delivered, st.Delivered, vname, qname)
			counter(c.acked, st.Acks, vname, qname)
		}
	}
	gauge(c.consumersTotal, float64(consumers))
	byProtocol := map[string]int{}
	for _, ci := range b.Connections() {
		byProtocol[ci.Protocol]++
	}
	for p, n := range byProtocol {
		gauge(c.connections, float64(n), p)
	}
	counts, channels := b.ProtocolCounters()
	byLabel := map[string]broker.MessageCounts{}
	for p, n := range counts {
		l := ProtocolLabel(p)
		t := byLabel[l]
		t.Published += n.Published
		t.Delivered += n.Delivered
		t.Acked += n.Acked
		byLabel[l] = t
	}
	for l, n := range byLabel {
		counter(c.protoPublished, n.Published, l)
		counter(c.protoDelivered, n.Delivered, l)
		counter(c.protoAcked, n.Acked, l)
	}
	open := 0
	for _, n := range channels {
		open += n
	}
	gauge(c.channels, float64(open))
	alarms := b.Alarms()
	for _, r := range []string{"memory", "disk"} {
		on := 0.0
		if slices.Contains(alarms, r) {
			on = 1
		}
		gauge(c.alarm, on, r)
	}
}
