package web_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/admin"
	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/web"
)

func TestPolicies(t *testing.T) {
	f := newFixture(t, web.Config{})
	q := f.declareQueue("q.limited")
	for i := range 5 {
		f.publish("", "q.limited", fmt.Sprint(i))
	}
	body := map[string]any{"pattern": `^q\.`, "definition": map[string]any{"max-length": 2}, "priority": 1, "apply-to": "queues"}
	f.call("PUT", "/api/policies/%2F/limit", body, http.StatusCreated, nil)
	f.call("PUT", "/api/policies/%2F/limit", body, http.StatusNoContent, nil)
	if st := q.Stats(); st.Ready != 2 {
		t.Fatalf("policy not applied: %d ready", st.Ready)
	}
	if q.Policy() != "limit" {
		t.Fatalf("queue policy %q", q.Policy())
	}
	var p admin.PolicyJSON
	f.call("GET", "/api/policies/%2F/limit", nil, http.StatusOK, &p)
	if p.Name != "limit" || p.VHost != "/" || p.Pattern != `^q\.` || p.ApplyTo != "queues" || p.Priority != 1 || p.Definition["max-length"] != float64(2) {
		t.Fatalf("policy %+v", p)
	}
	var ps []admin.PolicyJSON
	f.call("GET", "/api/policies", nil, http.StatusOK, &ps)
	f.call("GET", "/api/policies/%2F", nil, http.StatusOK, &ps)
	if len(ps) != 1 {
		t.Fatalf("policies %+v", ps)
	}
	var e map[string]string
	f.call("PUT", "/api/policies/%2F/bad", map[string]any{"pattern": "(", "definition": map[string]any{"max-length": 1}}, http.StatusBadRequest, &e)
	f.call("PUT", "/api/policies/%2F/bad", map[string]any{"pattern": ".*", "definition": map[string]any{"nonsense": 1}}, http.StatusBadRequest, &e)
	f.call("PUT", "/api/policies/%2F/bad", map[string]any{"definition": map[string]any{"max-length": 1}}, http.StatusBadRequest, &e)
	f.call("PUT", "/api/policies/nope/x", body, http.StatusNotFound, &e)
	f.call("GET", "/api/policies/%2F/missing", nil, http.StatusNotFound, &e)

	// alice has only the management tag: RabbitMQ wants policymaker.
	if st, _, _ := f.doAs("alice", "secret", "GET", "/api/policies", nil, nil); st != http.StatusForbidden {
		t.Fatalf("management user listed policies: %d", st)
	}
	f.users.PutUser("pm", "pw", []string{auth.TagPolicymaker})
	if st, out, _ := f.doAs("pm", "pw", "PUT", "/api/policies/%2F/x", body, nil); st != http.StatusForbidden {
		t.Fatalf("policymaker without vhost permissions: %d %s", st, out)
	}
	if err := f.users.SetPermissions("pm", "/", auth.Permissions{Configure: ".*", Write: ".*", Read: ".*"}); err != nil {
		t.Fatal(err)
	}
	if st, out, _ := f.doAs("pm", "pw", "PUT", "/api/policies/%2F/x", body, nil); st != http.StatusCreated {
		t.Fatalf("policymaker: %d %s", st, out)
	}
	f.call("DELETE", "/api/policies/%2F/x", nil, http.StatusNoContent, nil)
	f.call("DELETE", "/api/policies/%2F/limit", nil, http.StatusNoContent, nil)
	f.call("DELETE", "/api/policies/%2F/limit", nil, http.StatusNotFound, &e)
	if q.Policy() != "" {
		t.Fatal("policy still applied")
	}
}

// rabbitHash is RabbitMQ's rabbit_password_hashing_sha256 encoding.
func rabbitHash(salt, password string) string {
	sum := sha256.Sum256([]byte(salt + password))
	return base64.StdEncoding.EncodeToString(append([]byte(salt), sum[:]...))
}

func TestDefinitionsImportExport(t *testing.T) {
	f := newFixture(t, web.Config{})
	// A RabbitMQ export, as `rabbitmqctl export_definitions` writes it.
	doc := `{
  "rabbit_version": "3.13.7", "rabbitmq_version": "3.13.7", "product_name": "RabbitMQ", "product_version": "3.13.7",
  "users": [
    {"name": "bob", "password_hash": "` + rabbitHash("salt", "bobpw") + `", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"], "limits": {}},
    {"name": "app", "password_hash": "` + rabbitHash("SALT", "apppw") + `", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": "", "limits": {}}
  ],
  "vhosts": [{"name": "/"}, {"name": "orders", "limits": [], "metadata": {"description": "", "tags": []}}],
  "permissions": [
    {"user": "bob", "vhost": "orders", "configure": ".*", "write": ".*", "read": ".*"},
    {"user": "app", "vhost": "orders", "configure": "", "write": "^amq\\.topic$", "read": "^orders\\."}
  ],
  "topic_permissions": [], "parameters": [], "global_parameters": [{"name": "cluster_name", "value": "rabbit@x"}],
  "policies": [{"vhost": "orders", "name": "dlx", "pattern": "^orders\\.", "apply-to": "queues", "definition": {"dead-letter-exchange": "dead", "message-ttl": 60000}, "priority": 0}],
  "queues": [
    {"name": "orders.new", "vhost": "orders", "durable": true, "auto_delete": false, "arguments": {"x-queue-type": "classic", "x-max-length": 1000}},
    {"name": "orders.dead", "vhost": "orders", "durable": true, "auto_delete": false, "arguments": {}}
  ],
  "exchanges": [
    {"name": "dead", "vhost": "orders", "type": "fanout", "durable": true, "auto_delete": false, "internal": false, "arguments": {}},
    {"name": "orders", "vhost": "orders", "type": "topic", "durable": true, "auto_delete": false, "internal": false, "arguments": {}}
  ],
  "bindings": [
    {"source": "orders", "vhost": "orders", "destination": "orders.new", "destination_type": "queue", "routing_key": "order.*", "arguments": {}},
    {"source": "dead", "vhost": "orders", "destination": "orders.dead", "destination_type": "queue", "routing_key": "", "arguments": {}}
  ]
}`
	// Administrator only.
	if st, _, _ := f.doAs("alice", "secret", "POST", "/api/definitions", doc, nil); st != http.StatusForbidden {
		t.Fatalf("management user imported: %d", st)
	}
	f.call("POST", "/api/definitions", doc, http.StatusNoContent, nil)

	v := f.b.VHost("orders")
	if v == nil {
		t.Fatal("vhost orders not created")
	}
	q, err := v.Queue("orders.new")
	if err != nil || !q.Durable() || q.Policy() != "dlx" {
		t.Fatalf("queue %v %v", q, err)
	}
	if n, _ := broker.Table(q.Args())["x-max-length"].(int64); n != 1000 {
		t.Fatalf("x-max-length %T %v", q.Args()["x-max-length"], q.Args()["x-max-length"])
	}
	if _, err := v.Queue("orders.dead"); err != nil {
		t.Fatal(err)
	}
	if n, err := v.Publisher().Publish(&broker.Message{Exchange: "orders", RoutingKey: "order.created", Body: []byte("o1")}); err != nil || n != 1 {
		t.Fatalf("binding: %d %v", n, err)
	}
	ps := v.Policies()
	if len(ps) != 1 || ps[0].Definition["message-ttl"] != int64(60000) {
		t.Fatalf("policies %+v", ps)
	}
	// bob logs in with the password behind the imported hash.
	if st, out, _ := f.doAs("bob", "bobpw", "GET", "/api/whoami", nil, nil); st != http.StatusOK || !strings.Contains(string(out), "administrator") {
		t.Fatalf("bob: %d %s", st, out)
	}
	if p, ok := f.users.Permissions("app", "orders"); !ok || p.Read != `^orders\.` {
		t.Fatalf("app permissions %+v %v", p, ok)
	}

	// The export has everything in the same shape; it imports back.
	var exp map[string]json.RawMessage
	f.call("GET", "/api/definitions", nil, http.StatusOK, &exp)
	for _, k := range []string{"users", "vhosts", "permissions", "policies", "queues", "exchanges", "bindings", "rabbit_version"} {
		if _, ok := exp[k]; !ok {
			t.Fatalf("export lacks %q", k)
		}
	}
	if !strings.Contains(string(exp["users"]), rabbitHash("salt", "bobpw")) {
		t.Fatalf("export users %s", exp["users"])
	}
	var vexp struct {
		Queues []broker.QueueDef `json:"queues"`
		Users  []any             `json:"users"`
	}
	f.call("GET", "/api/definitions/orders", nil, http.StatusOK, &vexp)
	if len(vexp.Queues) != 2 || vexp.Users != nil {
		t.Fatalf("vhost export %+v", vexp)
	}
	whole, _ := json.Marshal(exp)
	f.call("POST", "/api/definitions", whole, http.StatusNoContent, nil)

	var e map[string]string
	f.call("POST", "/api/definitions", "{not json", http.StatusBadRequest, &e)
	f.call("POST", "/api/definitions", `{"queues":[{"name":"x","vhost":"/","durable":true,"arguments":{"x-max-length":"ten"}}]}`, http.StatusBadRequest, &e)
}

func TestConnectionsAndConsumers(t *testing.T) {
	f := newFixture(t, web.Config{})
	conn, err := amqp.Dial(f.startAMQP())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Channel(); err != nil {
		t.Fatal(err)
	}
	f.declareQueue("work")
	if err := ch.Qos(7, 0, false); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Consume("work", "c1", false, false, false, false, amqp.Table{"x-priority": int32(3)}); err != nil {
		t.Fatal(err)
	}

	var cs []admin.ConnectionJSON
	f.call("GET", "/api/connections", nil, http.StatusOK, &cs)
	if len(cs) != 1 {
		t.Fatalf("connections %+v", cs)
	}
	c := cs[0]
	if c.Protocol != "AMQP 0-9-1" || c.User != "guest" || c.VHost != "/" || c.Channels != 2 || c.ConnectedAt == 0 ||
		c.Name != conn.LocalAddr().String()+" -> "+f.amqpAddr(conn) || c.PeerHost != "127.0.0.1" {
		t.Fatalf("connection %+v (local %s)", c, conn.LocalAddr())
	}
	// alice sees only her own connections.
	if st, out, _ := f.doAs("alice", "secret", "GET", "/api/connections", nil, nil); st != http.StatusOK || string(out) != "[]\n" {
		t.Fatalf("alice: %d %s", st, out)
	}

	var cons []admin.ConsumerJSON
	f.call("GET", "/api/consumers/%2F", nil, http.StatusOK, &cons)
	if len(cons) != 1 {
		t.Fatalf("consumers %+v", cons)
	}
	k := cons[0]
	if k.ConsumerTag != "c1" || !k.AckRequired || k.PrefetchCount != 7 || k.Priority != 3 || k.Queue.Name != "work" || k.ChannelDetails["connection_name"] != c.Name {
		t.Fatalf("consumer %+v", k)
	}
	var ov struct {
		ObjectTotals map[string]int `json:"object_totals"`
	}
	f.call("GET", "/api/overview", nil, http.StatusOK, &ov)
	if ov.ObjectTotals["connections"] != 1 || ov.ObjectTotals["consumers"] != 1 || ov.ObjectTotals["channels"] != 2 {
		t.Fatalf("overview %+v", ov.ObjectTotals)
	}

	// Close it with a reason: connection.close 320 reaches the client.
	var e map[string]string
	f.call("DELETE", "/api/connections/nope", nil, http.StatusNotFound, &e)
	if st, _, _ := f.doAs("guest", "guest", "DELETE", "/api/connections/"+url.PathEscape(c.Name), nil, http.Header{"X-Reason": {"maintenance"}}); st != http.StatusNoContent {
		t.Fatalf("close: %d", st)
	}
	select {
	case ae := <-closed:
		if ae == nil || ae.Code != amqp.ConnectionForced || !strings.Contains(ae.Reason, "maintenance") {
			t.Fatalf("close error %+v", ae)
		}
	case <-testCtx(t).Done():
		t.Fatal("connection not closed")
	}
	waitFor(t, "unregister", func() bool { return len(f.b.Connections()) == 0 })
}

// amqpAddr is the server side of the client's connection.
func (f *fixture) amqpAddr(c *amqp.Connection) string { return c.RemoteAddr().String() }

func TestPeekMoveDelete(t *testing.T) {
	f := newFixture(t, web.Config{})
	dlq := f.declareQueue("dlq")
	work := f.declareQueue("work")
	for _, s := range []string{"a", "b", "c", "\xff\xfe"} {
		f.publish("", "dlq", s)
	}
	var peek []admin.PeekMessage
	f.call("GET", "/api/queues/%2F/dlq/messages?count=3", nil, http.StatusOK, &peek)
	if len(peek) != 3 || peek[0].Payload != "a" || peek[0].PayloadEncoding != "string" || peek[0].MessageCount != 3 || peek[2].MessageCount != 1 {
		t.Fatalf("peek %+v", peek)
	}
	if dlq.Stats().Ready != 4 {
		t.Fatal("peek consumed")
	}
	var all []admin.PeekMessage
	f.call("GET", "/api/queues/%2F/dlq/messages?count=10", nil, http.StatusOK, &all)
	if len(all) != 4 || all[3].PayloadEncoding != "base64" {
		t.Fatalf("binary peek %+v", all[3])
	}

	f.call("DELETE", fmt.Sprintf("/api/queues/%%2F/dlq/messages/%d", peek[1].ID), nil, http.StatusNoContent, nil)
	var e map[string]string
	f.call("DELETE", fmt.Sprintf("/api/queues/%%2F/dlq/messages/%d", peek[1].ID), nil, http.StatusNotFound, &e)
	f.call("DELETE", "/api/queues/%2F/dlq/messages/xyz", nil, http.StatusBadRequest, &e)

	var mv map[string]any
	f.call("POST", "/api/queues/%2F/dlq/move", map[string]any{"to": "work", "count": 2}, http.StatusOK, &mv)
	if mv["moved"] != float64(2) {
		t.Fatalf("move %v", mv)
	}
	if got := work.Peek(10); len(got) != 2 || string(got[0].Message.Body) != "a" || string(got[1].Message.Body) != "c" {
		t.Fatalf("work %d", len(got))
	}
	if dlq.Stats().Ready != 1 {
		t.Fatalf("dlq %+v", dlq.Stats())
	}
	f.call("POST", "/api/queues/%2F/dlq/move", map[string]any{"to": "nope", "count": 2}, http.StatusNotFound, &e)
	f.call("POST", "/api/queues/%2F/dlq/move", map[string]any{"count": 2}, http.StatusBadRequest, &e)
	f.call("POST", "/api/queues/%2F/dlq/move", map[string]any{"to": "work"}, http.StatusBadRequest, &e)
	f.call("GET", "/api/queues/%2F/nope/messages", nil, http.StatusNotFound, &e)
	f.call("GET", "/api/queues/%2F/dlq/messages?count=-1", nil, http.StatusBadRequest, &e)

	// Without read permission on the queue: 403.
	f.users.PutUser("carol", "pw", []string{auth.TagManagement})
	if err := f.users.SetPermissions("carol", "/", auth.Permissions{Read: "^work$"}); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := f.doAs("carol", "pw", "GET", "/api/queues/%2F/dlq/messages", nil, nil); st != http.StatusForbidden {
		t.Fatalf("carol peeked: %d", st)
	}
}
