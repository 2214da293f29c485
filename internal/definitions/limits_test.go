package definitions

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
)

// TestLimitsRoundTrip: vhost limits export as RabbitMQ's "vhost-limits"
// parameters and user limits as users[].limits, and import back.
func TestLimitsRoundTrip(t *testing.T) {
	b := broker.New(broker.Options{})
	users := auth.NewDefaultUsers()
	if err := b.SetVHostLimit("/", broker.LimitMaxQueues, 7); err != nil {
		t.Fatal(err)
	}
	if err := b.SetUserLimit("guest", broker.LimitMaxConnections, 3); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(Export(b, users, true))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"component":"vhost-limits"`, `"value":{"max-queues":7}`, `"limits":{"max-connections":3}`, `"queues":[`} {
		if !strings.Contains(string(data), want) {
			t.Fatalf("export lacks %s:\n%s", want, data)
		}
	}
	doc, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	b2 := broker.New(broker.Options{})
	if err := Import(b2, auth.NewDefaultUsers(), doc, true); err != nil {
		t.Fatal(err)
	}
	if v := b2.VHostLimits(); len(v) != 1 || v[0].Limits[broker.LimitMaxQueues] != 7 {
		t.Fatalf("vhost limits: %+v", v)
	}
	if u := b2.UserLimits(); len(u) != 1 || u[0].Name != "guest" || u[0].Limits[broker.LimitMaxConnections] != 3 {
		t.Fatalf("user limits: %+v", u)
	}
}
