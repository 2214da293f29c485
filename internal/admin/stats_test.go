package admin

import (
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/broker"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestStatsSampler: rates are the counters' deltas over the last
// interval; a queue declared after a sample counts from zero; the first
// sample is the baseline.
func TestStatsSampler(t *testing.T) {
	b := broker.New(broker.Options{})
	defer b.Close()
	v := b.VHost("/")
	old, err := v.DeclareQueue("old", broker.QueueOptions{})
	must(t, err)
	pub := func(key string, n int) {
		for range n {
			if _, err := v.Publisher().Publish(&broker.Message{RoutingKey: key, Body: []byte("x")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	pub("old", 7) // before the baseline: no rate
	st := newStatsSampler(b)
	t0 := time.Unix(1000, 0)
	st.sample(t0)
	if r := st.queue(old); r != (msgRates{}) {
		t.Fatalf("baseline rates %+v", r)
	}
	pub("old", 10)
	young, err := v.DeclareQueue("young", broker.QueueOptions{})
	must(t, err)
	pub("young", 4)
	if _, ok, err := young.Get(0, true); !ok || err != nil {
		t.Fatalf("get: %v %v", ok, err)
	}
	st.sample(t0.Add(2 * time.Second))
	if r := st.queue(old); r.Publish != 5 || r.DeliverGet != 0 {
		t.Fatalf("old: %+v", r)
	}
	if r := st.queue(young); r.Publish != 2 || r.DeliverGet != 0.5 {
		t.Fatalf("young: %+v", r)
	}
	if r := st.overall(); r.Publish != 7 || r.DeliverGet != 0.5 {
		t.Fatalf("overall: %+v", r)
	}
	st.sample(t0.Add(4 * time.Second))
	if r := st.overall(); r != (msgRates{}) {
		t.Fatalf("idle rates %+v", r)
	}
	_, err = v.DeleteQueue("young", 0, false, false)
	must(t, err)
	st.sample(t0.Add(6 * time.Second))
	if _, ok := st.rates[young]; ok {
		t.Fatal("a deleted queue kept its rates")
	}
}
