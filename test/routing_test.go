package test

import (
	"fmt"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// collect drains whatever is in q right now via basic.get (auto-ack) and
// returns the bodies in order.
func collect(t testing.TB, ch *amqp.Channel, q string) []string {
	t.Helper()
	var out []string
	for {
		d, ok, err := ch.Get(q, true)
		if err != nil {
			t.Fatalf("basic.get %q: %v", q, err)
		}
		if !ok {
			return out
		}
		out = append(out, string(d.Body))
	}
}

// publishConfirmed publishes on a confirm-mode channel and waits for the
// broker's ack, so that routing has happened when it returns.
type confirmedPublisher struct {
	t     testing.TB
	ch    *amqp.Channel
	acks  chan amqp.Confirmation
	rets  chan amqp.Return
	count int
}

func newConfirmedPublisher(t testing.TB, c *amqp.Connection) *confirmedPublisher {
	t.Helper()
	ch := mustChannel(t, c)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	p := &confirmedPublisher{t: t, ch: ch}
	p.acks = ch.NotifyPublish(make(chan amqp.Confirmation, 1))
	p.rets = ch.NotifyReturn(make(chan amqp.Return, 16))
	return p
}

func (p *confirmedPublisher) publish(exchange, key string, msg amqp.Publishing) {
	p.t.Helper()
	mustPublish(p.t, p.ch, exchange, key, msg)
	p.count++
	c := waitConfirm(p.t, p.acks)
	if !c.Ack || c.DeliveryTag != uint64(p.count) {
		p.t.Fatalf("confirm %+v, want ack of %d", c, p.count)
	}
}

func waitConfirm(t testing.TB, c <-chan amqp.Confirmation) amqp.Confirmation {
	t.Helper()
	select {
	case cf, ok := <-c:
		if !ok {
			t.Fatal("confirm channel closed")
		}
		return cf
	case <-timeAfterWait():
		t.Fatal("timed out waiting for a publisher confirm")
	}
	panic("unreachable")
}

func TestFanoutCopies(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	if err := ch.ExchangeDeclare("fan", "fanout", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	const k = 5
	var qs []string
	for i := 0; i < k; i++ {
		q := tempQueue(t, ch)
		// The routing key is ignored by fanout; use different ones to prove it.
		if err := ch.QueueBind(q, fmt.Sprintf("ignored-%d", i), "fan", false, nil); err != nil {
			t.Fatal(err)
		}
		qs = append(qs, q)
	}
	p := newConfirmedPublisher(t, c)
	p.publish("fan", "whatever", amqp.Publishing{Body: []byte("one")})
	p.publish("amq.fanout", "x", amqp.Publishing{Body: []byte("unbound")}) // no queue bound: dropped
	for _, q := range qs {
		if got := collect(t, ch, q); len(got) != 1 || got[0] != "one" {
			t.Fatalf("queue %s got %v, want exactly one copy", q, got)
		}
	}
}

func TestDirectAndDefaultExchange(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	qa, qb := tempQueue(t, ch), tempQueue(t, ch)
	must(t, ch.QueueBind(qa, "a", "amq.direct", false, nil))
	must(t, ch.QueueBind(qb, "b", "amq.direct", false, nil))
	must(t, ch.QueueBind(qb, "both", "amq.direct", false, nil))
	must(t, ch.QueueBind(qa, "both", "amq.direct", false, nil))
	p := newConfirmedPublisher(t, c)
	p.publish("amq.direct", "a", amqp.Publishing{Body: []byte("to-a")})
	p.publish("amq.direct", "b", amqp.Publishing{Body: []byte("to-b")})
	p.publish("amq.direct", "both", amqp.Publishing{Body: []byte("to-both")})
	p.publish("amq.direct", "nobody", amqp.Publishing{Body: []byte("lost")})
	p.publish("amq.direct", "A", amqp.Publishing{Body: []byte("case-sensitive")})
	// The default exchange routes by queue name, no binding needed.
	p.publish("", qa, amqp.Publishing{Body: []byte("default")})
	assertBodies(t, collect(t, ch, qa), "to-a", "to-both", "default")
	assertBodies(t, collect(t, ch, qb), "to-b", "to-both")

	// Unbind stops the route.
	must(t, ch.QueueUnbind(qa, "a", "amq.direct", nil))
	p.publish("amq.direct", "a", amqp.Publishing{Body: []byte("after-unbind")})
	assertBodies(t, collect(t, ch, qa))
}

func TestTopicMatching(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	patterns := map[string][]string{
		"star":      {"stock.*.nyse"},
		"hash":      {"stock.#"},
		"hashmid":   {"a.#.z"},
		"exact":     {"stock.usd.nyse"},
		"all":       {"#"},
		"two":       {"*.*"},
		"several":   {"*.orange.*", "*.*.rabbit", "lazy.#"},
		"emptyword": {"a..b"},
	}
	qs := map[string]string{}
	for name, ps := range patterns {
		q := tempQueue(t, ch)
		qs[name] = q
		for _, p := range ps {
			must(t, ch.QueueBind(q, p, "amq.topic", false, nil))
		}
	}
	keys := []string{
		"stock.usd.nyse", "stock.eur.nyse", "stock.nyse", "stock", "stock.usd.lse",
		"a.z", "a.b.c.z", "a.z.z", "quick.orange.rabbit", "lazy.orange.elephant",
		"quick.orange.fox", "lazy.brown.fox", "lazy.pink.rabbit", "quick.brown.fox",
		"quick.orange.male.rabbit", "lazy", "a..b", "",
	}
	p := newConfirmedPublisher(t, c)
	for _, k := range keys {
		p.publish("amq.topic", k, amqp.Publishing{Body: []byte(k)})
	}
	want := map[string][]string{
		"star":      {"stock.usd.nyse", "stock.eur.nyse"},
		"hash":      {"stock.usd.nyse", "stock.eur.nyse", "stock.nyse", "stock", "stock.usd.lse"},
		"hashmid":   {"a.z", "a.b.c.z", "a.z.z"},
		"exact":     {"stock.usd.nyse"},
		"all":       keys,
		"two":       {"stock.nyse", "a.z"},
		"several":   {"quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox", "lazy.brown.fox", "lazy.pink.rabbit", "lazy"},
		"emptyword": {"a..b"},
	}
	for name, w := range want {
		assertBodies(t, collect(t, ch, qs[name]), w...)
	}
}

func TestHeadersExchange(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	bind := func(args amqp.Table) string {
		q := tempQueue(t, ch)
		must(t, ch.QueueBind(q, "", "amq.headers", false, args))
		return q
	}
	qAll := bind(amqp.Table{"x-match": "all", "format": "pdf", "type": "report"})
	qDefault := bind(amqp.Table{"format": "pdf", "type": "report"}) // x-match defaults to all
	qAny := bind(amqp.Table{"x-match": "any", "format": "pdf", "type": "report"})
	qNum := bind(amqp.Table{"x-match": "all", "n": int32(42)})
	qAllX := bind(amqp.Table{"x-match": "all-with-x", "x-tenant": "t1", "format": "pdf"})
	qAnyX := bind(amqp.Table{"x-match": "any-with-x", "x-tenant": "t1"})
	qAllIgnX := bind(amqp.Table{"x-match": "all", "x-tenant": "t1", "format": "pdf"}) // x- args ignored

	p := newConfirmedPublisher(t, c)
	pub := func(body string, h amqp.Table) {
		p.publish("amq.headers", "ignored", amqp.Publishing{Body: []byte(body), Headers: h})
	}
	pub("both", amqp.Table{"format": "pdf", "type": "report"})
	pub("format-only", amqp.Table{"format": "pdf"})
	pub("wrong-value", amqp.Table{"format": "zip", "type": "report"})
	pub("extra", amqp.Table{"format": "pdf", "type": "report", "other": true})
	pub("none", nil)
	pub("num64", amqp.Table{"n": int64(42)}) // numbers compare by value
	pub("num-wrong", amqp.Table{"n": int64(43)})
	pub("pdf-t1", amqp.Table{"format": "pdf", "x-tenant": "t1"})
	pub("pdf-t2", amqp.Table{"format": "pdf", "x-tenant": "t2"})
	pub("t1-only", amqp.Table{"x-tenant": "t1"})

	assertBodies(t, collect(t, ch, qAll), "both", "extra")
	assertBodies(t, collect(t, ch, qDefault), "both", "extra")
	assertBodies(t, collect(t, ch, qAny), "both", "format-only", "wrong-value", "extra", "pdf-t1", "pdf-t2")
	assertBodies(t, collect(t, ch, qNum), "num64")
	assertBodies(t, collect(t, ch, qAllX), "pdf-t1")
	assertBodies(t, collect(t, ch, qAnyX), "pdf-t1", "t1-only")
	assertBodies(t, collect(t, ch, qAllIgnX), "both", "format-only", "extra", "pdf-t1", "pdf-t2")
}

func TestHeadersInvalidXMatch(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	err := ch.QueueBind(q, "", "amq.headers", false, amqp.Table{"x-match": "some"})
	expectCode(t, err, amqp.PreconditionFailed)
	assertAlive(t, c)
}

func TestExchangeToExchange(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	must(t, ch.ExchangeDeclare("e2e.src", "topic", false, false, false, false, nil))
	must(t, ch.ExchangeDeclare("e2e.mid", "direct", false, false, false, false, nil))
	must(t, ch.ExchangeDeclare("e2e.fan", "fanout", false, false, false, false, nil))
	// src --(orders.#)--> mid --(orders.eu)--> qEU
	// src --(#)--> fan --> qAll
	must(t, ch.ExchangeBind("e2e.mid", "orders.#", "e2e.src", false, nil))
	must(t, ch.ExchangeBind("e2e.fan", "#", "e2e.src", false, nil))
	qEU, qAll := tempQueue(t, ch), tempQueue(t, ch)
	must(t, ch.QueueBind(qEU, "orders.eu", "e2e.mid", false, nil))
	must(t, ch.QueueBind(qAll, "", "e2e.fan", false, nil))
	// A queue reached by two paths gets one copy.
	must(t, ch.QueueBind(qAll, "orders.eu", "e2e.mid", false, nil))

	p := newConfirmedPublisher(t, c)
	p.publish("e2e.src", "orders.eu", amqp.Publishing{Body: []byte("eu")})
	p.publish("e2e.src", "orders.us", amqp.Publishing{Body: []byte("us")})
	p.publish("e2e.src", "billing", amqp.Publishing{Body: []byte("billing")})
	assertBodies(t, collect(t, ch, qEU), "eu")
	assertBodies(t, collect(t, ch, qAll), "eu", "us", "billing")

	// Unbinding an exchange stops the flow through it.
	must(t, ch.ExchangeUnbind("e2e.fan", "#", "e2e.src", false, nil))
	p.publish("e2e.src", "billing", amqp.Publishing{Body: []byte("billing2")})
	assertBodies(t, collect(t, ch, qAll))
}

func TestExchangeBindingCycle(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	must(t, ch.ExchangeDeclare("cyc.a", "fanout", false, false, false, false, nil))
	must(t, ch.ExchangeDeclare("cyc.b", "fanout", false, false, false, false, nil))
	must(t, ch.ExchangeDeclare("cyc.c", "fanout", false, false, false, false, nil))
	must(t, ch.ExchangeBind("cyc.b", "", "cyc.a", false, nil))
	must(t, ch.ExchangeBind("cyc.c", "", "cyc.b", false, nil))
	must(t, ch.ExchangeBind("cyc.a", "", "cyc.c", false, nil)) // a -> b -> c -> a
	must(t, ch.ExchangeBind("cyc.a", "", "cyc.a", false, nil)) // and a self-loop
	qa, qc := tempQueue(t, ch), tempQueue(t, ch)
	must(t, ch.QueueBind(qa, "", "cyc.a", false, nil))
	must(t, ch.QueueBind(qc, "", "cyc.c", false, nil))
	p := newConfirmedPublisher(t, c) // a confirm proves the publish finished routing
	p.publish("cyc.b", "", amqp.Publishing{Body: []byte("round")})
	assertBodies(t, collect(t, ch, qa), "round")
	assertBodies(t, collect(t, ch, qc), "round")
}

func TestInternalExchange(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	must(t, ch.ExchangeDeclare("int.x", "fanout", false, false, true, false, nil))
	q := tempQueue(t, ch)
	must(t, ch.QueueBind(q, "", "int.x", false, nil))
	// Reachable through an exchange-to-exchange binding...
	must(t, ch.ExchangeDeclare("int.front", "fanout", false, false, false, false, nil))
	must(t, ch.ExchangeBind("int.x", "", "int.front", false, nil))
	p := newConfirmedPublisher(t, c)
	p.publish("int.front", "", amqp.Publishing{Body: []byte("via-front")})
	assertBodies(t, collect(t, ch, q), "via-front")

	// ...but publishing to it directly closes the channel with 403.
	pch := mustChannel(t, c)
	closed := pch.NotifyClose(make(chan *amqp.Error, 1))
	mustPublish(t, pch, "int.x", "", amqp.Publishing{Body: []byte("direct")})
	e := waitClose(t, closed)
	if e.Code != amqp.AccessRefused {
		t.Fatalf("close code %d (%s), want 403", e.Code, e.Reason)
	}
	assertAlive(t, c)
	assertBodies(t, collect(t, ch, q))
}

func TestAutoDeleteExchange(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	must(t, ch.ExchangeDeclare("ad.x", "direct", false, true, false, false, nil))
	q1, q2 := tempQueue(t, ch), tempQueue(t, ch)
	must(t, ch.QueueBind(q1, "k", "ad.x", false, nil))
	must(t, ch.QueueBind(q2, "k", "ad.x", false, nil))
	must(t, ch.QueueUnbind(q1, "k", "ad.x", nil))
	if !exchangeExists(t, c, "ad.x", "direct") {
		t.Fatal("auto-delete exchange deleted while it still has a binding")
	}
	must(t, ch.QueueUnbind(q2, "k", "ad.x", nil))
	if exchangeExists(t, c, "ad.x", "direct") {
		t.Fatal("auto-delete exchange still exists after its last binding was removed")
	}

	// Deleting the bound queue also removes the binding, and so the exchange.
	must(t, ch.ExchangeDeclare("ad.y", "fanout", false, true, false, false, nil))
	q3 := tempQueue(t, ch)
	must(t, ch.QueueBind(q3, "", "ad.y", false, nil))
	if _, err := ch.QueueDelete(q3, false, false, false); err != nil {
		t.Fatal(err)
	}
	if exchangeExists(t, c, "ad.y", "fanout") {
		t.Fatal("auto-delete exchange still exists after its only bound queue was deleted")
	}

	// A fresh auto-delete exchange without any binding yet stays.
	must(t, ch.ExchangeDeclare("ad.z", "fanout", false, true, false, false, nil))
	if !exchangeExists(t, c, "ad.z", "fanout") {
		t.Fatal("auto-delete exchange deleted before it ever had a binding")
	}
}

func TestAlternateExchange(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	must(t, ch.ExchangeDeclare("ae.unrouted", "fanout", false, false, false, false, nil))
	must(t, ch.ExchangeDeclare("ae.main", "direct", false, false, false, false, amqp.Table{"alternate-exchange": "ae.unrouted"}))
	qMain, qAlt := tempQueue(t, ch), tempQueue(t, ch)
	must(t, ch.QueueBind(qMain, "known", "ae.main", false, nil))
	must(t, ch.QueueBind(qAlt, "", "ae.unrouted", false, nil))

	p := newConfirmedPublisher(t, c)
	p.publish("ae.main", "known", amqp.Publishing{Body: []byte("routed")})
	// Mandatory + caught by the AE: routed, so no basic.return.
	must(t, p.ch.Publish("ae.main", "unknown", true, false, amqp.Publishing{Body: []byte("alt")}))
	p.count++
	if cf := waitConfirm(t, p.acks); !cf.Ack {
		t.Fatal("nacked")
	}
	assertBodies(t, collect(t, ch, qMain), "routed")
	assertBodies(t, collect(t, ch, qAlt), "alt")
	select {
	case r := <-p.rets:
		t.Fatalf("message caught by the alternate exchange was returned: %+v", r)
	default:
	}
}

func TestMandatoryReturn(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	rets := ch.NotifyReturn(make(chan amqp.Return, 4))
	// Unroutable and mandatory: returned with 312 NO_ROUTE, body and properties intact.
	must(t, ch.Publish("amq.direct", "nowhere", true, false, amqp.Publishing{
		Body: []byte("bounce"), CorrelationId: "c-1", Headers: amqp.Table{"h": "v"},
	}))
	select {
	case r := <-rets:
		if r.ReplyCode != amqp.NoRoute || r.ReplyText != "NO_ROUTE" || r.Exchange != "amq.direct" ||
			r.RoutingKey != "nowhere" || string(r.Body) != "bounce" || r.CorrelationId != "c-1" || r.Headers["h"] != "v" {
			t.Fatalf("return = %+v", r)
		}
	case <-timeAfterWait():
		t.Fatal("no basic.return for an unroutable mandatory message")
	}
	// Unroutable but not mandatory: silently dropped.
	must(t, ch.Publish("amq.direct", "nowhere", false, false, amqp.Publishing{Body: []byte("drop")}))
	// Routable and mandatory: delivered, not returned. The get is a
	// round trip after both publishes, so a return would have come first.
	must(t, ch.Publish("", q, true, false, amqp.Publishing{Body: []byte("ok")}))
	d, ok, err := ch.Get(q, true)
	if err != nil || !ok || string(d.Body) != "ok" {
		t.Fatalf("get = %q %v %v", d.Body, ok, err)
	}
	select {
	case r := <-rets:
		t.Fatalf("unexpected return %+v", r)
	default:
	}
}

func assertBodies(t testing.TB, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages %v, want %v", len(got), got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v (order matters)", got, want)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
