package web_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/admin"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/web"
)

func TestListPagingSortingFiltering(t *testing.T) {
	f := newFixture(t, web.Config{})
	v := f.b.VHost("/")
	for i := range 12 {
		if _, err := v.DeclareQueue(fmt.Sprintf("q%02d", i), broker.QueueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	p := v.Publisher()
	for range 3 {
		if _, err := p.Publish(&broker.Message{RoutingKey: "q07", Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Publish(&broker.Message{RoutingKey: "q03", Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}

	// Without page: the plain array (sorted and filtered when asked).
	var plain []admin.QueueJSON
	f.call("GET", "/api/queues", nil, 200, &plain)
	if len(plain) != 12 {
		t.Fatalf("%d queues", len(plain))
	}
	f.call("GET", "/api/queues?name=Q1", nil, 200, &plain) // substring, case-insensitive
	if len(plain) != 2 || plain[0].Name != "q10" || plain[1].Name != "q11" {
		t.Fatalf("filtered: %+v", plain)
	}

	var paged struct {
		Items                                                           []admin.QueueJSON
		Page, PageCount, PageSize, ItemCount, FilteredCount, TotalCount int
	}
	decodePaged := func(path string) {
		t.Helper()
		st, body, _ := f.do("GET", path, nil)
		if st != 200 {
			t.Fatalf("%s: %d %s", path, st, body)
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"items", "page", "page_count", "page_size", "item_count", "filtered_count", "total_count"} {
			if _, ok := raw[k]; !ok {
				t.Fatalf("%s: no %q in %s", path, k, body)
			}
		}
		paged.Items = nil
		_ = json.Unmarshal(raw["items"], &paged.Items)
		for k, p := range map[string]*int{"page": &paged.Page, "page_count": &paged.PageCount, "page_size": &paged.PageSize,
			"item_count": &paged.ItemCount, "filtered_count": &paged.FilteredCount, "total_count": &paged.TotalCount} {
			_ = json.Unmarshal(raw[k], p)
		}
	}
	decodePaged("/api/queues?page=2&page_size=5")
	if paged.Page != 2 || paged.PageCount != 3 || paged.PageSize != 5 || paged.ItemCount != 5 || paged.FilteredCount != 12 || paged.TotalCount != 12 {
		t.Fatalf("paged: %+v", paged)
	}
	if paged.Items[0].Name != "q05" {
		t.Fatalf("page 2 starts with %s", paged.Items[0].Name)
	}
	decodePaged("/api/queues?page=1&" + url.Values{"name": {"^q0[0-4]$"}, "use_regex": {"true"}, "sort": {"name"}, "sort_reverse": {"true"}}.Encode())
	if paged.FilteredCount != 5 || paged.TotalCount != 12 || paged.PageSize != 100 || paged.Items[0].Name != "q04" || paged.Items[4].Name != "q00" {
		t.Fatalf("regex, reverse: %+v", paged)
	}
	// Numeric sort on a field, and on a nested one.
	f.call("GET", "/api/queues?sort=messages&sort_reverse=true", nil, 200, &plain)
	if plain[0].Name != "q07" || plain[1].Name != "q03" {
		t.Fatalf("by messages: %s, %s", plain[0].Name, plain[1].Name)
	}
	f.call("GET", "/api/queues?sort=message_stats.publish", nil, 200, &plain)
	if plain[11].Name != "q07" || plain[10].Name != "q03" {
		t.Fatalf("by message_stats.publish: %s, %s", plain[10].Name, plain[11].Name)
	}
	// The last page may be short; past it is an error.
	decodePaged("/api/queues?page=3&page_size=5")
	if paged.ItemCount != 2 || len(paged.Items) != 2 {
		t.Fatalf("last page: %+v", paged)
	}
	for _, bad := range []string{"page=4&page_size=5", "page=0", "page=x", "page_size=501", "page_size=0", "name=(&use_regex=true"} {
		if st, body, _ := f.do("GET", "/api/queues?"+bad, nil); st != 400 {
			t.Fatalf("%s: %d %s", bad, st, body)
		}
	}
	// An empty list pages as page 1 of 0.
	decodePaged("/api/queues?page=1&name=nothing-matches")
	if paged.PageCount != 0 || paged.ItemCount != 0 || paged.TotalCount != 12 {
		t.Fatalf("empty: %+v", paged)
	}

	// Every list endpoint goes through the same helper.
	for _, path := range []string{"/api/exchanges", "/api/bindings", "/api/connections", "/api/consumers", "/api/users",
		"/api/vhosts", "/api/policies", "/api/permissions", "/api/channels", "/api/nodes", "/api/vhosts/%2F/permissions",
		"/api/users/guest/permissions", "/api/exchanges/%2F", "/api/queues/%2F", "/api/bindings/%2F"} {
		st, body, _ := f.do("GET", path+"?page=1&page_size=2", nil)
		var pj admin.PagedJSON
		if st != 200 || json.Unmarshal(body, &pj) != nil || pj.Page != 1 || pj.PageSize != 2 || pj.ItemCount > 2 {
			t.Fatalf("%s: %d %s", path, st, body)
		}
	}
	var exs []admin.ExchangeJSON
	f.call("GET", "/api/exchanges/%2F?name=amq.t", nil, 200, &exs)
	if len(exs) != 1 || exs[0].Name != "amq.topic" {
		t.Fatalf("exchanges: %+v", exs)
	}
}

func TestNodes(t *testing.T) {
	started := time.Now().Add(-time.Hour)
	f := newFixture(t, web.Config{Node: func() web.NodeInfo {
		return web.NodeInfo{MemUsed: 100, MemLimit: 1000, DiskFree: 5 << 30, DiskFreeLimit: 50 << 20, Started: started}
	}})
	f.b.SetAlarm("disk", true)
	var nodes []map[string]any
	f.call("GET", "/api/nodes", nil, 200, &nodes)
	if len(nodes) != 1 {
		t.Fatalf("%d nodes", len(nodes))
	}
	n := nodes[0]
	want := map[string]any{"type": "disc", "running": true, "mem_used": 100.0, "mem_limit": 1000.0, "mem_alarm": false,
		"disk_free": float64(5 << 30), "disk_free_limit": float64(50 << 20), "disk_free_alarm": true, "run_queue": 0.0, "rates_mode": "basic"}
	for k, v := range want {
		if n[k] != v {
			t.Errorf("%s = %v, want %v", k, n[k], v)
		}
	}
	if up, _ := n["uptime"].(float64); up < float64(time.Hour.Milliseconds()) {
		t.Errorf("uptime %v", n["uptime"])
	}
	if pu, _ := n["proc_used"].(float64); pu < 1 {
		t.Errorf("proc_used %v", n["proc_used"])
	}
	if pr, _ := n["processors"].(float64); pr < 1 {
		t.Errorf("processors %v", n["processors"])
	}
	name, _ := n["name"].(string)
	var one map[string]any
	f.call("GET", "/api/nodes/"+url.PathEscape(name), nil, 200, &one)
	if one["name"] != name {
		t.Fatalf("node %v", one)
	}
	f.call("GET", "/api/nodes/nobody@nowhere", nil, 404, nil)
	var ov map[string]any
	f.call("GET", "/api/overview", nil, 200, &ov)
	if ov["node"] != name {
		t.Fatalf("overview node %v, nodes %v", ov["node"], name)
	}

	// Without the server's callback the node still answers.
	f2 := newFixture(t, web.Config{})
	f2.call("GET", "/api/nodes", nil, 200, &nodes)
	if mu, _ := nodes[0]["mem_used"].(float64); mu <= 0 {
		t.Fatalf("mem_used %v", nodes[0]["mem_used"])
	}
}

func TestChannels(t *testing.T) {
	f := newFixture(t, web.Config{})
	conn, err := amqp.Dial(f.startAMQP())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch1, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	ch2, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch1.Qos(7, 0, false); err != nil {
		t.Fatal(err)
	}
	if err := ch1.Qos(20, 0, true); err != nil {
		t.Fatal(err)
	}
	if err := ch1.Confirm(false); err != nil {
		t.Fatal(err)
	}
	if err := ch2.Tx(); err != nil {
		t.Fatal(err)
	}
	q, err := ch1.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch2.Publish("", q.Name, false, false, amqp.Publishing{Body: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	if err := ch2.Publish("", q.Name, false, false, amqp.Publishing{Body: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	if err := ch2.TxCommit(); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch1.Consume(q.Name, "c1", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		<-deliveries
	}

	var chans []admin.ChannelJSON
	f.call("GET", "/api/channels", nil, 200, &chans)
	if len(chans) != 2 {
		t.Fatalf("channels: %+v", chans)
	}
	c1, c2 := chans[0], chans[1]
	connName := f.amqpAddr(conn)
	if c1.Number != 1 || c1.ConsumerCount != 1 || c1.PrefetchCount != 7 || c1.GlobalPrefetchCount != 20 || !c1.Confirm ||
		c1.Transactional || c1.MessagesUnacknowledged != 2 || c1.User != "guest" || c1.VHost != "/" {
		t.Fatalf("channel 1: %+v", c1)
	}
	if c2.Number != 2 || !c2.Transactional || c2.Confirm || c2.ConsumerCount != 0 {
		t.Fatalf("channel 2: %+v", c2)
	}
	var conns []admin.ConnectionJSON
	f.call("GET", "/api/connections", nil, 200, &conns)
	if len(conns) != 1 || conns[0].PeerPort == 0 || conns[0].Channels != 2 {
		t.Fatalf("connections: %+v (amqp local %s)", conns, connName)
	}
	var byConn []admin.ChannelJSON
	f.call("GET", "/api/connections/"+url.PathEscape(conns[0].Name)+"/channels", nil, 200, &byConn)
	if len(byConn) != 2 || byConn[0].Name != conns[0].Name+" (1)" {
		t.Fatalf("by connection: %+v", byConn)
	}
	var one admin.ChannelJSON
	f.call("GET", "/api/channels/"+url.PathEscape(byConn[1].Name), nil, 200, &one)
	if one.Number != 2 {
		t.Fatalf("one: %+v", one)
	}
	f.call("GET", "/api/channels/"+url.PathEscape(conns[0].Name+" (9)"), nil, 404, nil)
	f.call("GET", "/api/vhosts/%2F/channels?sort=number&sort_reverse=true", nil, 200, &chans)
	if len(chans) != 2 || chans[0].Number != 2 {
		t.Fatalf("vhost channels: %+v", chans)
	}
	// A user without the tag to see every connection sees none of guest's.
	st, body, _ := f.doAs("alice", "secret", "GET", "/api/channels", nil, nil)
	if st != 200 || string(body) != "[]\n" {
		t.Fatalf("alice: %d %s", st, body)
	}

	// Closing a channel shows at once; acking drops the unacked count.
	if err := ch2.Close(); err != nil {
		t.Fatal(err)
	}
	f.call("GET", "/api/channels", nil, 200, &chans)
	if len(chans) != 1 || chans[0].Number != 1 {
		t.Fatalf("after close: %+v", chans)
	}
	if err := ch1.Ack(2, true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.call("GET", "/api/channels", nil, 200, &chans)
		if chans[0].MessagesUnacknowledged == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unacked stays %d", chans[0].MessagesUnacknowledged)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
