package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/heraldmq/herald/internal/broker"
)

// scrape fetches the handler's text exposition and parses it.
func scrape(t *testing.T, h http.Handler) map[string]*familyView {
	t.Helper()
	hs := httptest.NewServer(h)
	defer hs.Close()
	resp, err := http.Get(hs.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("content type %q", ct)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, body)
	}
	out := map[string]*familyView{}
	for name, f := range fams {
		fv := &familyView{typ: f.GetType().String(), vals: map[string]float64{}}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetGauge().GetValue()
			if m.Counter != nil {
				v = m.GetCounter().GetValue()
			}
			fv.vals[strings.Join(labels, ",")] = v
		}
		out[name] = fv
	}
	return out
}

type familyView struct {
	typ  string
	vals map[string]float64 // by "k=v,k=v"
}

func value(t *testing.T, fams map[string]*familyView, name, labels string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric family %s", name)
	}
	v, ok := f.vals[labels]
	if !ok {
		t.Fatalf("%s has no series {%s}; has %v", name, labels, f.vals)
	}
	return v
}

func TestBrokerMetrics(t *testing.T) {
	b := broker.New(broker.Options{})
	m := New(b)
	v := b.VHost(broker.DefaultVHost)
	q, err := v.DeclareQueue("jobs", broker.QueueOptions{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.DeclareQueue("audit", broker.QueueOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := v.BindQueue("audit", "amq.fanout", "", nil, 0); err != nil {
		t.Fatal(err)
	}
	if err := v.BindQueue("jobs", "amq.fanout", "", nil, 0); err != nil {
		t.Fatal(err)
	}
	p := v.Publisher()
	for range 3 {
		if _, err := p.Publish(&broker.Message{RoutingKey: "jobs", Body: []byte("12345")}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := p.Publish(&broker.Message{Exchange: "amq.fanout", Body: []byte("x")}); err != nil || n != 2 {
		t.Fatalf("fanout routed %d, %v", n, err)
	}
	// One get acked, one get left unacknowledged.
	d, ok, err := q.Get(0, false)
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	q.Ack(d.ID)
	if _, ok, err := q.Get(0, false); err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}

	fams := scrape(t, m.Handler())
	jobs := "queue=jobs,vhost=/"
	for name, want := range map[string]float64{
		"herald_queue_messages_ready":           2,
		"herald_queue_messages_ready_bytes":     6, // "12345" and "x"
		"herald_queue_messages_unacked":         1,
		"herald_queue_consumers":                0,
		"herald_queue_messages_published_total": 4,
		"herald_queue_messages_delivered_total": 2,
		"herald_queue_messages_acked_total":     1,
	} {
		if got := value(t, fams, name, jobs); got != want {
			t.Errorf("%s{%s} = %v, want %v", name, jobs, got, want)
		}
	}
	if got := value(t, fams, "herald_queue_messages_published_total", "queue=audit,vhost=/"); got != 1 {
		t.Errorf("audit published = %v, want 1", got)
	}
	if got := fams["herald_queue_messages_acked_total"].typ; got != "COUNTER" {
		t.Errorf("acked type %s", got)
	}
	if got := fams["herald_queue_messages_ready"].typ; got != "GAUGE" {
		t.Errorf("ready type %s", got)
	}
	if got := value(t, fams, "herald_vhost_queues", "vhost=/"); got != 2 {
		t.Errorf("queues = %v", got)
	}
	exchanges := float64(len(v.Exchanges()))
	if got := value(t, fams, "herald_vhost_exchanges", "vhost=/"); got != exchanges || got < 6 {
		t.Errorf("exchanges = %v, want %v", got, exchanges)
	}
	// The runtime and process collectors are in the same registry.
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "promhttp_metric_handler_requests_total"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s", name)
		}
	}

	// A consumer, a second vhost, then a deleted queue: read at scrape time.
	c, err := q.Consume(broker.ConsumerOptions{Tag: "c1", NoAck: true, Sink: discard{}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Cancel()
	b.AddVHost("other")
	if _, err := v.DeleteQueue("audit", 0, false, false); err != nil {
		t.Fatal(err)
	}
	fams = scrape(t, m.Handler())
	if got := value(t, fams, "herald_queue_consumers", jobs); got != 1 {
		t.Errorf("consumers = %v, want 1", got)
	}
	if _, ok := fams["herald_queue_messages_ready"].vals["queue=audit,vhost=/"]; ok {
		t.Error("deleted queue still reported")
	}
	if got := value(t, fams, "herald_vhost_queues", "vhost=other"); got != 0 {
		t.Errorf("other queues = %v", got)
	}
}

// discard is a Sink that drops deliveries (the consumer is no-ack).
type discard struct{}

func (discard) Deliver(broker.Delivery) bool { return true }
func (discard) Cancelled(*broker.Consumer)   {}

func TestCounters(t *testing.T) {
	m := New(broker.New(broker.Options{}))
	m.Counters.ConnOpened(ProtocolMQTT)
	m.Counters.ConnOpened(ProtocolMQTT)
	m.Counters.ConnClosed(ProtocolMQTT)
	m.Counters.AuthFailed(ProtocolSTOMP)
	m.Counters.ProtocolError(ProtocolAMQP)
	fams := scrape(t, m.Handler())
	for _, c := range []struct {
		name, labels string
		want         float64
	}{
		{"herald_connections_opened_total", "protocol=mqtt", 2},
		{"herald_connections_closed_total", "protocol=mqtt", 1},
		{"herald_auth_failures_total", "protocol=stomp", 1},
		{"herald_protocol_errors_total", "protocol=amqp091", 1},
	} {
		if got := value(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// Adapters without metrics hold a nil *Counters.
	var none *Counters
	none.ConnOpened(ProtocolWS)
	none.ConnClosed(ProtocolWS)
	none.AuthFailed(ProtocolWS)
	none.ProtocolError(ProtocolWS)
}

// Two Metrics in one process must not collide: nothing is global.
func TestIndependentRegistries(t *testing.T) {
	a, b := New(broker.New(broker.Options{})), New(broker.New(broker.Options{}))
	a.Counters.ConnOpened(ProtocolHTTP)
	if a.Registry() == b.Registry() {
		t.Fatal("shared registry")
	}
	if _, ok := scrape(t, b.Handler())["herald_connections_opened_total"]; ok {
		t.Error("b sees a's counter")
	}
}
