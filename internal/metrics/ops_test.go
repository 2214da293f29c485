package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/store"
)

func TestConnectionsConsumersAlarms(t *testing.T) {
	b := broker.New(broker.Options{})
	m := New(b)
	_, un1 := b.RegisterConnection(broker.ConnectionInfo{Protocol: "AMQP 0-9-1", Peer: "a:1", Local: "b:2"})
	defer un1()
	_, un2 := b.RegisterConnection(broker.ConnectionInfo{Protocol: "AMQP 0-9-1", Peer: "a:3", Local: "b:2"})
	_, un3 := b.RegisterConnection(broker.ConnectionInfo{Protocol: "MQTT 3.1.1", Peer: "a:4", Local: "b:5"})
	defer un3()
	v := b.VHost("/")
	for _, name := range []string{"q1", "q2"} {
		q, err := v.DeclareQueue(name, broker.QueueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c, err := q.Consume(broker.ConsumerOptions{Sink: nopSink{}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Cancel()
	}
	b.SetAlarm("disk", true)
	fams := scrape(t, m.Handler())
	if got := value(t, fams, "herald_connections", "protocol=AMQP 0-9-1"); got != 2 {
		t.Errorf("amqp connections %v", got)
	}
	if got := value(t, fams, "herald_connections", "protocol=MQTT 3.1.1"); got != 1 {
		t.Errorf("mqtt connections %v", got)
	}
	if got := value(t, fams, "herald_consumers", ""); got != 2 {
		t.Errorf("consumers %v", got)
	}
	if value(t, fams, "herald_alarm", "resource=disk") != 1 || value(t, fams, "herald_alarm", "resource=memory") != 0 {
		t.Errorf("alarms %v", fams["herald_alarm"].vals)
	}
	un2()
	b.SetAlarm("disk", false)
	fams = scrape(t, m.Handler())
	if value(t, fams, "herald_connections", "protocol=AMQP 0-9-1") != 1 || value(t, fams, "herald_alarm", "resource=disk") != 0 {
		t.Errorf("after: %v %v", fams["herald_connections"].vals, fams["herald_alarm"].vals)
	}
}

type nopSink struct{}

func (nopSink) Deliver(broker.Delivery) bool { return true }
func (nopSink) Cancelled(*broker.Consumer)   {}

func TestFsyncHistogramAndLateBroker(t *testing.T) {
	m := New(nil) // as the server builds it: before the store and the broker
	m.ObserveFsync(200 * time.Microsecond)
	m.ObserveFsync(2 * time.Millisecond)
	hs := httptest.NewServer(m.Handler())
	defer hs.Close()
	// scrapeText returns the exposition; has reports a family in it.
	scrapeText := func() string {
		resp, err := http.Get(hs.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(scrapeText()))
	if err != nil {
		t.Fatal(err)
	}
	h := fams["herald_log_fsync_seconds"]
	if h == nil || h.GetType().String() != "HISTOGRAM" {
		t.Fatalf("no fsync histogram")
	}
	hist := h.GetMetric()[0].GetHistogram()
	if hist.GetSampleCount() != 2 || hist.GetSampleSum() < 0.0022 || hist.GetSampleSum() > 0.0023 {
		t.Fatalf("histogram count %d sum %v", hist.GetSampleCount(), hist.GetSampleSum())
	}
	if _, ok := fams["herald_consumers"]; ok {
		t.Fatal("broker metrics before the broker is set")
	}
	m.SetBroker(broker.New(broker.Options{}))
	if !strings.Contains(scrapeText(), "\nherald_consumers 0\n") {
		t.Fatal("no broker metrics after SetBroker")
	}
}

// TestStoreOnSync wires the message log to the histogram as the server
// does: every durable batch is one observation.
func TestStoreOnSync(t *testing.T) {
	m := New(nil)
	var n atomic.Int64
	l, _, err := store.Open(t.TempDir(), store.Options{OnSync: func(d time.Duration) {
		n.Add(1)
		m.ObserveFsync(d)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for id := uint64(1); id <= 3; id++ {
		if err := <-l.Append(store.Record{Kind: store.KindMessage, MessageID: id, Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if n.Load() != 3 {
		t.Fatalf("OnSync called %d times for 3 sequential batches", n.Load())
	}
	hs := httptest.NewServer(m.Handler())
	defer hs.Close()
	resp, err := http.Get(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "\nherald_log_fsync_seconds_count 3\n") {
		t.Fatalf("no 3 fsyncs in:\n%s", body)
	}
}
