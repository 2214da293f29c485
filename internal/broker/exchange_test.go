package broker

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// The binding tables against a model: random binds and unbinds (the same
// destination under several keys and arguments, removals in any order,
// enough to compact the holes), after each of which the listing keeps the
// binding order and every key routes to what the model says.
func TestBindingTablesMatchAModel(t *testing.T) {
	for _, kind := range []string{KindDirect, KindFanout, KindTopic, KindHeaders} {
		t.Run(kind, func(t *testing.T) {
			v := New(Options{}).VHost(DefaultVHost)
			e, err := v.DeclareExchange("x", ExchangeOptions{Kind: kind})
			if err != nil {
				t.Fatal(err)
			}
			const queues = 40
			for i := range queues {
				if _, err := v.DeclareQueue(fmt.Sprint("q", i), QueueOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			keys := []string{"a", "b", "a.b", "*"}
			argsOf := func(j int) Table {
				if kind == KindHeaders {
					return Table{"x-match": "any", "k": fmt.Sprint(j)}
				}
				return Table{"n": int32(j)}
			}
			type bound struct {
				queue, key string
				j          int
			}
			var model []bound
			rng := rand.New(rand.NewPCG(1, uint64(len(kind))))
			for step := range 3000 {
				b := bound{fmt.Sprint("q", rng.IntN(queues)), keys[rng.IntN(len(keys))], rng.IntN(2)}
				i := slices.Index(model, b)
				if rng.IntN(3) == 0 || i >= 0 && rng.IntN(2) == 0 { // unbind
					if err := v.UnbindQueue(b.queue, "x", b.key, argsOf(b.j), 0); err != nil {
						t.Fatal(err)
					}
					if i >= 0 {
						model = slices.Delete(model, i, i+1)
					}
				} else {
					if err := v.BindQueue(b.queue, "x", b.key, argsOf(b.j), 0); err != nil {
						t.Fatal(err)
					}
					if i < 0 {
						model = append(model, b)
					}
				}
				if step%7 == 0 && rng.IntN(20) == 0 { // a queue goes, with its bindings
					q := fmt.Sprint("q", rng.IntN(queues))
					if _, err := v.DeleteQueue(q, 0, false, false); err != nil {
						t.Fatal(err)
					}
					if _, err := v.DeclareQueue(q, QueueOptions{}); err != nil {
						t.Fatal(err)
					}
					model = slices.DeleteFunc(model, func(b bound) bool { return b.queue == q })
				}
				var listed []bound
				for _, lb := range e.Bindings() {
					j := 0
					if fmt.Sprint(lb.Args["n"]) == "1" || lb.Args["k"] == "1" {
						j = 1
					}
					listed = append(listed, bound{lb.Destination, lb.RoutingKey, j})
				}
				if !slices.Equal(listed, model) {
					t.Fatalf("step %d: listed %v, model %v", step, listed, model)
				}
				if got := e.bindingCount(); got != len(model) {
					t.Fatalf("step %d: %d bindings counted, model has %d", step, got, len(model))
				}
				for _, key := range []string{"a", "b", "a.b"} {
					m := &Message{RoutingKey: key, Properties: Properties{Headers: Table{"k": "1"}}}
					var got []string
					for _, d := range e.match(m, nil) {
						got = append(got, d.destName())
					}
					want := modelRoute(kind, key, len(model), func(i int) (string, string, int) {
						return model[i].queue, model[i].key, model[i].j
					})
					slices.Sort(got)
					if kind == KindTopic { // the trie yields each queue once
						got = slices.Compact(got)
						want = slices.Compact(want)
					}
					if !slices.Equal(got, want) {
						t.Fatalf("step %d: key %q routes to %v, model %v", step, key, got, want)
					}
				}
			}
		})
	}
}

// modelRoute is what a message with key (and header k=1) routes to, one
// entry per matching binding, sorted.
func modelRoute(kind, key string, n int, at func(int) (queue, bkey string, j int)) []string {
	var out []string
	for i := range n {
		q, bkey, j := at(i)
		var ok bool
		switch kind {
		case KindDirect:
			ok = bkey == key
		case KindFanout:
			ok = true
		case KindTopic:
			ok = bkey == key || bkey == "*" && key != "a.b"
		case KindHeaders:
			ok = j == 1
		}
		if ok {
			out = append(out, q)
		}
	}
	slices.Sort(out)
	return out
}
