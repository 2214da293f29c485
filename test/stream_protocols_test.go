package test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
)

// TestStreamOverSTOMP: SUBSCRIBE /amq/queue/<stream> with RabbitMQ STOMP's
// x-stream-offset header and a prefetch-count; every MESSAGE carries
// x-stream-offset; SEND publishes into the stream with a RECEIPT after
// the fsync.
func TestStreamOverSTOMP(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols())
	ch := mustChannel(t, s.dial(t))
	if _, err := ch.QueueDeclare("st", true, false, false, false, streamArgs); err != nil {
		t.Fatal(err)
	}
	publishConfirmed(t, ch, "st", "s", 0, 10, nil)
	sc, err := stomp.Dial("tcp", s.STOMPAddr().String(), stomp.ConnOpt.Login("guest", "guest"), stomp.ConnOpt.Host("/"))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.MustDisconnect()
	sub, err := sc.Subscribe("/amq/queue/st", stomp.AckClientIndividual,
		stomp.SubscribeOpt.Header("x-stream-offset", "offset=6"), stomp.SubscribeOpt.Header("prefetch-count", "3"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Send("/amq/queue/st", "text/plain", []byte("from-stomp"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	for want := 6; want <= 10; want++ {
		select {
		case m := <-sub.C:
			if m.Err != nil {
				t.Fatal(m.Err)
			}
			if got := m.Header.Get("x-stream-offset"); got != strconv.Itoa(want) {
				t.Fatalf("MESSAGE x-stream-offset %q, want %d (%q)", got, want, m.Body)
			}
			if want == 10 && string(m.Body) != "from-stomp" {
				t.Fatalf("offset 10 is %q", m.Body)
			}
			must(t, sc.Ack(m))
		case <-time.After(waitTimeout):
			t.Fatalf("no MESSAGE for offset %d", want)
		}
	}
	// A malformed offset is an ERROR naming the header.
	bad, err := stomp.Dial("tcp", s.STOMPAddr().String(), stomp.ConnOpt.Login("guest", "guest"), stomp.ConnOpt.Host("/"))
	must(t, err)
	defer bad.Disconnect()
	bs, err := bad.Subscribe("/amq/queue/st", stomp.AckClient, stomp.SubscribeOpt.Header("x-stream-offset", "offset=x"), stomp.SubscribeOpt.Header("prefetch-count", "3"))
	if err == nil {
		select {
		case m := <-bs.C:
			if m.Err == nil || !strings.Contains(m.Err.Error()+m.Header.Get("message")+string(m.Body), "x-stream-offset") {
				t.Fatalf("bad offset: %v %s", m.Err, m.Body)
			}
		case <-time.After(waitTimeout):
			t.Fatal("no ERROR for a malformed x-stream-offset")
		}
	}
}

// sseEvents reads "id:" and data lines of a text/event-stream.
func sseEvents(t *testing.T, url, lastEventID string, n int) (ids []string, bodies []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.SetBasicAuth("guest", "guest")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("sse %s: %d", url, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	for len(bodies) < n && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			ids = append(ids, strings.TrimPrefix(line, "id: "))
		case strings.HasPrefix(line, "data: "):
			var m struct {
				Body   string  `json:"body"`
				Offset *uint64 `json:"offset"`
			}
			must(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &m))
			if m.Offset == nil || strconv.FormatUint(*m.Offset, 10) != ids[len(ids)-1] {
				t.Fatalf("event id %v and offset %v differ", ids, m.Offset)
			}
			bodies = append(bodies, m.Body)
		}
	}
	if len(bodies) < n {
		t.Fatalf("sse: %d events of %d (%v)", len(bodies), n, sc.Err())
	}
	return ids, bodies
}

// TestStreamOverSSEAndWebSocket: /sse?stream= events have id = offset and
// a Last-Event-ID resumes exactly after it (one that is not a number is
// ignored); /ws subscribe with "stream" and "offset" delivers "offset".
func TestStreamOverSSEAndWebSocket(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols())
	ch := mustChannel(t, s.dial(t))
	if _, err := ch.QueueDeclare("feed", true, false, false, false, streamArgs); err != nil {
		t.Fatal(err)
	}
	publishConfirmed(t, ch, "feed", "f", 0, 20, nil)
	base := "http://" + s.HTTPAddr().String()

	ids, bodies := sseEvents(t, base+"/sse?stream=feed&offset=first", "", 5)
	if ids[0] != "0" || bodies[4] != "f-4" {
		t.Fatalf("first: %v %v", ids, bodies)
	}
	ids, bodies = sseEvents(t, base+"/sse?stream=feed&offset=first", "4", 3)
	if ids[0] != "5" || bodies[0] != "f-5" {
		t.Fatalf("resume after 4: %v %v", ids, bodies)
	}
	ids, _ = sseEvents(t, base+"/sse?stream=feed&offset=12", "not-a-number", 1)
	if ids[0] != "12" {
		t.Fatalf("offset=12 with a bad Last-Event-ID starts at %v", ids)
	}
	if st, _ := httpDo(t, "GET", base+"/sse?stream=feed&offset=-3", "guest", "guest", nil); st != 406 && st != 400 {
		t.Fatalf("negative offset: %d", st)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("guest:guest"))
	ws, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://%s/ws", s.HTTPAddr()), &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {auth}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	must(t, wsjson.Write(ctx, ws, map[string]any{"op": "subscribe", "id": "s1", "stream": "feed", "offset": 18}))
	var got []uint64
	answers := map[string]any{} // subscription id -> its answer's recovered flag
	for len(got) < 2 || answers["s1"] == nil {
		var m map[string]any
		must(t, wsjson.Read(ctx, ws, &m))
		if m["op"] == "error" {
			t.Fatalf("ws error %v", m)
		}
		if m["op"] == "subscribed" {
			answers[m["id"].(string)] = fmt.Sprint(m["recovered"])
		}
		if off, ok := m["offset"].(float64); ok {
			got = append(got, uint64(off))
		}
	}
	if got[0] != 18 || got[1] != 19 {
		t.Fatalf("ws offsets %v", got)
	}
	// A subscribe from an integer offset is a resume: its answer says
	// whether the gap was recovered (not past the end, not dropped by
	// retention); one from "first" is no resume and says nothing.
	must(t, wsjson.Write(ctx, ws, map[string]any{"op": "subscribe", "id": "s3", "stream": "feed", "offset": 25}))
	must(t, wsjson.Write(ctx, ws, map[string]any{"op": "subscribe", "id": "s4", "stream": "feed", "offset": "last"}))
	for answers["s3"] == nil || answers["s4"] == nil {
		var m map[string]any
		must(t, wsjson.Read(ctx, ws, &m))
		if m["op"] == "error" {
			t.Fatalf("ws error %v", m)
		}
		if m["op"] == "subscribed" {
			answers[m["id"].(string)] = fmt.Sprint(m["recovered"])
		}
	}
	if answers["s1"] != "true" || answers["s3"] != "false" || answers["s4"] != "<nil>" {
		t.Fatalf("recovered flags: s1 (18) %v, s3 (past the end) %v, s4 (last) %v", answers["s1"], answers["s3"], answers["s4"])
	}
	must(t, wsjson.Write(ctx, ws, map[string]any{"op": "subscribe", "id": "s2", "stream": "feed", "offset": "yesterday"}))
	for {
		var m map[string]any
		must(t, wsjson.Read(ctx, ws, &m))
		if m["op"] == "error" {
			if !strings.Contains(fmt.Sprint(m), "x-stream-offset") {
				t.Fatalf("error does not name the argument: %v", m)
			}
			break
		}
	}
}

// TestStreamPublishFromMQTTAndHTTP: MQTT (to a stream bound to amq.topic,
// PUBACK after the fsync) and HTTP publishes land in the stream in order,
// next to AMQP ones.
func TestStreamPublishFromMQTTAndHTTP(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols())
	conn := s.dial(t)
	ch := mustChannel(t, conn)
	if _, err := ch.QueueDeclare("sensor-log", true, false, false, false, streamArgs); err != nil {
		t.Fatal(err)
	}
	must(t, ch.QueueBind("sensor-log", "sensors.#", "amq.topic", false, nil))
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + s.MQTTAddr().String()).SetClientID("stream-pub").SetUsername("guest").SetPassword("guest")
	mc := mqtt.NewClient(opts)
	if tok := mc.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	defer mc.Disconnect(100)
	if tok := mc.Publish("sensors/1/temp", 1, false, "21.5"); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("mqtt publish: %v", tok.Error())
	}
	// The PUBACK came after the fsync: the message is readable at once.
	base := "http://" + s.HTTPAddr().String()
	st, body := httpDo(t, "POST", base+"/api/exchanges/%2F/amq.default/publish", "guest", "guest",
		map[string]any{"routing_key": "sensor-log", "payload": "from-http", "payload_encoding": "string", "properties": map[string]any{}})
	if st != 200 || !strings.Contains(string(body), `"routed":true`) {
		t.Fatalf("http publish: %d %s", st, body)
	}
	st, body = httpDo(t, "GET", base+"/api/streams/%2F/sensor-log/messages?offset=0", "guest", "guest", nil)
	var page []struct {
		Offset     uint64 `json:"offset"`
		Payload    string `json:"payload"`
		RoutingKey string `json:"routing_key"`
	}
	must(t, json.Unmarshal(body, &page))
	if st != 200 || len(page) != 2 || page[0].Payload != "21.5" || page[0].RoutingKey != "sensors.1.temp" || page[1].Payload != "from-http" || page[1].Offset != 1 {
		t.Fatalf("stream after MQTT and HTTP publishes: %d %s", st, body)
	}
}

// TestStreamPresenceOverWebSocket: a stream subscription with presence
// joins the channel named after the stream; another socket and the HTTP
// API see the member; a stream whose name holds a "/" has no channel.
func TestStreamPresenceOverWebSocket(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols())
	ch := mustChannel(t, s.dial(t))
	for _, name := range []string{"feed", "a/b"} {
		if _, err := ch.QueueDeclare(name, true, false, false, false, streamArgs); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("guest:guest"))
	dial := func() *websocket.Conn {
		ws, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://%s/ws", s.HTTPAddr()), &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {auth}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.CloseNow() })
		return ws
	}
	// answer reads frames until the one answering id, or an error (a
	// frame refused as invalid is answered without its id).
	answer := func(ws *websocket.Conn, id string) map[string]any {
		t.Helper()
		for {
			var m map[string]any
			must(t, wsjson.Read(ctx, ws, &m))
			if m["id"] == id || m["op"] == "error" {
				return m
			}
		}
	}
	a, b := dial(), dial()
	must(t, wsjson.Write(ctx, a, map[string]any{"op": "subscribe", "id": "s1", "stream": "feed", "presence": true, "info": map[string]any{"name": "Ann"}}))
	if m := answer(a, "s1"); m["op"] != "subscribed" {
		t.Fatalf("subscribe with presence: %v", m)
	}
	must(t, wsjson.Write(ctx, b, map[string]any{"op": "presence", "id": "p1", "channel": "feed"}))
	if m := answer(b, "p1"); m["op"] != "presence" || len(m["clients"].([]any)) != 1 {
		t.Fatalf("presence of feed from another socket: %v", m)
	}
	st, body := httpDo(t, "GET", "http://"+s.HTTPAddr().String()+"/api/presence/%2F/feed/stats", "guest", "guest", nil)
	if st != http.StatusOK || !strings.Contains(string(body), `"clients":1`) {
		t.Fatalf("presence stats over HTTP: %d %s", st, body)
	}
	must(t, wsjson.Write(ctx, b, map[string]any{"op": "presence", "id": "p2", "channel": "nostream"}))
	if m := answer(b, "p2"); m["op"] != "error" || m["code"] != float64(400) {
		t.Fatalf("presence of a channel that is no stream: %v", m)
	}
	must(t, wsjson.Write(ctx, a, map[string]any{"op": "subscribe", "id": "s2", "stream": "a/b", "presence": true}))
	if m := answer(a, "s2"); m["op"] != "error" || !strings.Contains(fmt.Sprint(m["message"]), "no presence channel") {
		t.Fatalf("presence on a stream named with a /: %v", m)
	}
}
