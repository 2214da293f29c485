package test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/bench"
)

// The RPC services of issue 17, broker side: instances played by
// amqp091-go by the wire convention (consume rpc.S with x-service-*
// arguments, reply with x-rpc-status), found by the lookup service and
// called through the HTTP gateway and by AMQP callers.

// rpcInstance is one service instance on its own connection.
type rpcInstance struct {
	conn *amqp.Connection
	done chan struct{}
}

// leave closes the instance's connection and waits for its loop.
func (in *rpcInstance) leave() {
	_ = in.conn.Close()
	<-in.done
}

// serveCalc starts an instance of service "calc" whose methods answer
// with the status their name asks for; Slow never answers.
func serveCalc(t *testing.T, s *testServer, id string, prefetch int) *rpcInstance {
	t.Helper()
	return serveCalcAt(t, s.URL, id, prefetch)
}

// serveCalcAt is serveCalc on the broker (and vhost) of an AMQP URL.
func serveCalcAt(t *testing.T, amqpURL, id string, prefetch int) *rpcInstance {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	must(t, err)
	ch := mustChannel(t, conn)
	must(t, ch.Qos(prefetch, 0, false))
	_, err = ch.QueueDeclare("rpc.calc", false, true, false, false, nil)
	must(t, err)
	ds, err := ch.Consume("rpc.calc", "", false, false, false, false, amqp.Table{
		"x-service-name": "calc", "x-service-version": "1.4.2", "x-service-id": id,
		"x-service-description": "a calculator", "x-service-endpoints": []any{"Echo", "Bad", "Missing", "Busy", "Down", "Boom", "Slow"},
		"x-service-metadata": amqp.Table{"zone": "eu-1"},
	})
	must(t, err)
	in := &rpcInstance{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(in.done)
		for d := range ds {
			if d.Type == "calc.Slow" {
				continue // holds its prefetch slot until the connection closes
			}
			status, errText := "OK", ""
			switch d.Type {
			case "calc.Echo":
			case "calc.Bad":
				status, errText = "INVALID_ARGUMENT", "bad numbers"
			case "calc.Missing":
				status, errText = "NOT_FOUND", "no such thing"
			case "calc.Busy":
				status, errText = "RESOURCE_EXHAUSTED", "slow down"
			case "calc.Down":
				status, errText = "UNAVAILABLE", "maintenance"
			case "calc.Boom":
				status, errText = "INTERNAL", "it broke"
			default:
				status, errText = "UNIMPLEMENTED", "unknown method "+d.Type
			}
			h := amqp.Table{"x-rpc-status": status}
			if errText != "" {
				h["x-rpc-error"] = errText
			}
			_ = ch.Publish("", d.ReplyTo, false, false, amqp.Publishing{CorrelationId: d.CorrelationId,
				ContentType: d.ContentType, Headers: h, Body: d.Body})
			_ = d.Ack(false)
		}
	}()
	t.Cleanup(in.leave)
	return in
}

// rpcCall is POST /api/rpc/{vhost}/calc/{method} as guest.
func rpcCall(t *testing.T, base, vhost, method, timeout, contentType string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/api/rpc/"+vhost+"/calc/"+method, bytes.NewReader(body))
	must(t, err)
	req.SetBasicAuth("guest", "guest")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if timeout != "" {
		req.Header.Set("X-Herald-Timeout", timeout)
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, out
}

type serviceDoc struct {
	Name      string `json:"name"`
	VHost     string `json:"vhost"`
	Instances []struct {
		ID         string            `json:"id"`
		Version    string            `json:"version"`
		Endpoints  []string          `json:"endpoints"`
		Metadata   map[string]string `json:"metadata"`
		Connection string            `json:"connection"`
		Since      time.Time         `json:"since"`
		Stats      statsDoc          `json:"stats"`
	} `json:"instances"`
	Stats statsDoc `json:"stats"`
}

type statsDoc struct {
	Requests  uint64            `json:"requests"`
	Replies   map[string]uint64 `json:"replies"`
	Expired   uint64            `json:"expired"`
	AvgMs     float64           `json:"avg_ms"`
	P99Ms     float64           `json:"p99_ms"`
	ErrorRate float64           `json:"error_rate"`
}

func getService(t *testing.T, base string) (int, serviceDoc) {
	t.Helper()
	st, b := httpDo(t, "GET", base+"/api/services/%2F/calc", "guest", "guest", nil)
	var doc serviceDoc
	if st == http.StatusOK {
		must(t, json.Unmarshal(b, &doc))
	}
	return st, doc
}

func TestServicesGatewayAndDiscovery(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols(), withMaxMessageSize(4096))
	base := "http://" + s.HTTPAddr().String()

	// No instance yet: unknown service, and no responders.
	if st, _ := getService(t, base); st != http.StatusNotFound {
		t.Fatalf("unknown service: %d", st)
	}
	if st, _, b := rpcCall(t, base, "%2F", "Echo", "", "", nil); st != http.StatusServiceUnavailable || !strings.Contains(string(b), `"error":"UNAVAILABLE"`) {
		t.Fatalf("no responders: %d %s", st, b)
	}

	a := serveCalc(t, s, "calc-a", 10)
	last := serveCalc(t, s, "calc-b", 10)

	// The gateway: the reply's body and content type, and every status.
	st, h, b := rpcCall(t, base, "%2F", "Echo", "2s", "application/json", []byte(`{"x":1}`))
	if st != 200 || string(b) != `{"x":1}` || h.Get("Content-Type") != "application/json" {
		t.Fatalf("Echo: %d %q %s", st, h.Get("Content-Type"), b)
	}
	for _, c := range []struct {
		method string
		status int
		code   string
	}{
		{"Bad", 400, "INVALID_ARGUMENT"}, {"Missing", 404, "NOT_FOUND"}, {"Nope", 501, "UNIMPLEMENTED"},
		{"Busy", 429, "RESOURCE_EXHAUSTED"}, {"Down", 503, "UNAVAILABLE"}, {"Boom", 500, "INTERNAL"},
	} {
		st, _, b := rpcCall(t, base, "%2F", c.method, "", "", []byte("{}"))
		var e struct{ Error, Reason string }
		_ = json.Unmarshal(b, &e)
		if st != c.status || e.Error != c.code || e.Reason == "" {
			t.Fatalf("%s: %d %s, want %d %s", c.method, st, b, c.status, c.code)
		}
	}
	start := time.Now()
	if st, _, b := rpcCall(t, base, "%2F", "Slow", "300ms", "", nil); st != http.StatusGatewayTimeout || !strings.Contains(string(b), "DEADLINE_EXCEEDED") {
		t.Fatalf("Slow: %d %s", st, b)
	} else if el := time.Since(start); el < 300*time.Millisecond || el > 3*time.Second {
		t.Fatalf("the deadline took %v", el)
	}
	for _, bad := range []string{"soon", "-1s", "0s", "6m"} {
		if st, _, b := rpcCall(t, base, "%2F", "Echo", bad, "", nil); st != http.StatusBadRequest {
			t.Fatalf("timeout %q: %d %s", bad, st, b)
		}
	}
	if st, _, b := rpcCall(t, base, "%2F", "Echo", "", "", bytes.Repeat([]byte("x"), 4097)); st != http.StatusRequestEntityTooLarge {
		t.Fatalf("over --max-message-size: %d %s", st, b)
	}
	if st, _, b := rpcCall(t, base, "nope", "Echo", "", "", nil); st != http.StatusNotFound {
		t.Fatalf("unknown vhost: %d %s", st, b)
	}

	// An AMQP caller by the convention: direct reply-to, mandatory.
	caller := mustChannel(t, s.dial(t))
	replies, err := caller.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
	must(t, err)
	returns := caller.NotifyReturn(make(chan amqp.Return, 1))
	must(t, caller.Publish("", "rpc.calc", true, false, amqp.Publishing{Type: "calc.Echo", CorrelationId: "c-1",
		ReplyTo: "amq.rabbitmq.reply-to", ContentType: "text/plain", Expiration: "5000", Body: []byte("hi"),
		Headers: amqp.Table{"x-deadline": time.Now().Add(5 * time.Second).UnixMilli()}}))
	select {
	case d := <-replies:
		if d.CorrelationId != "c-1" || string(d.Body) != "hi" || d.Headers["x-rpc-status"] != "OK" {
			t.Fatalf("AMQP reply: %+v", d)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no AMQP reply")
	}
	must(t, caller.Publish("", "rpc.nobody", true, false, amqp.Publishing{Type: "nobody.X", CorrelationId: "c-2", ReplyTo: "amq.rabbitmq.reply-to"}))
	select {
	case r := <-returns:
		if r.ReplyCode != amqp.NoRoute {
			t.Fatalf("return: %+v", r)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no basic.return for a service without instances")
	}

	// Discovery with live statistics: 9 requests delivered (Echo twice,
	// six statuses, Slow) and 8 replies.
	var doc serviceDoc
	// The eighth reply is Slow's, which its instance sends after the
	// gateway has given up on it: on a loaded machine that can take longer
	// than waitTimeout, so this wait is longer.
	eventuallyWithin(t, 3*waitTimeout, "the statistics of 8 replies", func() bool {
		_, doc = getService(t, base)
		n := uint64(0)
		for _, c := range doc.Stats.Replies {
			n += c
		}
		return n == 8
	})
	if doc.Name != "calc" || doc.VHost != "/" || len(doc.Instances) != 2 || doc.Stats.Requests != 9 ||
		doc.Stats.Replies["OK"] != 2 || doc.Stats.Replies["UNIMPLEMENTED"] != 1 || doc.Stats.P99Ms <= 0 || doc.Stats.ErrorRate != 0.75 {
		t.Fatalf("service: %+v", doc)
	}
	in := doc.Instances[0]
	if in.ID != "calc-a" || in.Version != "1.4.2" || len(in.Endpoints) != 7 || in.Metadata["zone"] != "eu-1" ||
		in.Connection == "" || in.Since.IsZero() || in.Stats.Requests == 0 {
		t.Fatalf("instance: %+v", in)
	}
	if doc.Instances[0].Stats.Requests+doc.Instances[1].Stats.Requests != 9 {
		t.Fatalf("the instances' requests do not add up: %+v", doc.Instances)
	}
	for _, path := range []string{"/api/services", "/api/services/%2F", "/api/services?page=1&page_size=10&sort=name"} {
		st, b := httpDo(t, "GET", base+path, "guest", "guest", nil)
		if st != 200 || !strings.Contains(string(b), `"name":"calc"`) || !strings.Contains(string(b), `"id":"calc-b"`) {
			t.Fatalf("GET %s: %d %s", path, st, b)
		}
	}
	if st, b := httpDo(t, "GET", base+"/api/services/nope", "guest", "guest", nil); st != http.StatusNotFound {
		t.Fatalf("services of an unknown vhost: %d %s", st, b)
	}

	// An instance leaves; then the last one, and the service is gone.
	a.leave()
	eventually(t, "calc-a to leave the list", func() bool {
		_, doc = getService(t, base)
		return len(doc.Instances) == 1 && doc.Instances[0].ID == "calc-b"
	})
	if doc.Stats.Requests != 9 {
		t.Fatalf("the service's statistics survive an instance: %+v", doc.Stats)
	}
	last.leave()
	eventually(t, "the service to go with its last instance", func() bool {
		st, _ := getService(t, base)
		return st == http.StatusNotFound
	})
	if st, _, b := rpcCall(t, base, "%2F", "Echo", "", "", nil); st != http.StatusServiceUnavailable {
		t.Fatalf("after the last instance left: %d %s", st, b)
	}
}

// TestServicesExpiredWhileQueued: a request queued behind a busy
// instance past its deadline is never delivered and is counted expired.
func TestServicesExpiredWhileQueued(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols())
	base := "http://" + s.HTTPAddr().String()
	serveCalc(t, s, "only", 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // takes the one prefetch slot for good
		defer wg.Done()
		req, _ := http.NewRequest("POST", base+"/api/rpc/%2F/calc/Slow", nil)
		req.SetBasicAuth("guest", "guest")
		req.Header.Set("X-Herald-Timeout", "1s")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	var doc serviceDoc
	eventually(t, "the slow request to be delivered", func() bool {
		_, doc = getService(t, base)
		return doc.Stats.Requests == 1
	})
	if st, _, b := rpcCall(t, base, "%2F", "Echo", "100ms", "", nil); st != http.StatusGatewayTimeout {
		t.Fatalf("queued call: %d %s", st, b)
	}
	eventually(t, "the queued request to expire", func() bool {
		_, doc = getService(t, base)
		return doc.Stats.Expired == 1
	})
	if doc.Stats.Requests != 1 {
		t.Fatalf("an expired request was delivered: %+v", doc.Stats)
	}
	wg.Wait()
}

// TestServicesGatewayPermissions: calling S needs write on the queue rpc.S.
func TestServicesGatewayPermissions(t *testing.T) {
	t.Parallel()
	u := auth.NewDefaultUsers()
	u.PutUser("caller", "pw", nil)
	u.PutUser("stranger", "pw", nil)
	must(t, u.SetPermissions("caller", "/", auth.Permissions{Write: `^rpc\.calc$`}))
	must(t, u.SetPermissions("stranger", "/", auth.Permissions{Write: `^rpc\.other$`}))
	s := startServer(t, withUsers(u), withAllProtocols())
	base := "http://" + s.HTTPAddr().String()
	serveCalc(t, s, "p", 10)
	for user, want := range map[string]int{"caller": 200, "stranger": 403} {
		req, err := http.NewRequest("POST", base+"/api/rpc/%2F/calc/Echo", strings.NewReader("{}"))
		must(t, err)
		req.SetBasicAuth(user, "pw")
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: %d %s, want %d", user, resp.StatusCode, b, want)
		}
	}
}

// TestBenchRPCGateway: `herald bench rpc-gateway` against a real server:
// every call answered, the lookup service counted them.
func TestBenchRPCGateway(t *testing.T) {
	s := startServer(t, withAllProtocols())
	cfg := bench.DefaultConfig()
	cfg.Scenario = bench.ScenarioRPCGateway
	cfg.URL = s.URL
	cfg.HTTPURL = "http://guest:guest@" + s.HTTPAddr().String()
	cfg.Callers = 4
	cfg.Duration = 500 * time.Millisecond
	cfg.Warmup = 100 * time.Millisecond
	res, err := bench.Run(t.Context(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent == 0 || res.Received != res.Sent || res.Malformed != 0 || res.MsgsPerSec <= 0 || res.P50 <= 0 {
		t.Fatalf("gateway bench: %+v", res)
	}
	if strings.Contains(res.Config.HTTPURL, "guest:guest") {
		t.Errorf("the password is in the result: %s", res.Config.HTTPURL)
	}
	if svcs := s.Broker().Services("/"); len(svcs) != 0 {
		t.Errorf("the bench left its service behind: %+v", svcs)
	}
}

// TestServicesGatewayAfterVHostDeleted: the gateway's reply queue goes
// with its vhost; a vhost created again under the same name is served.
func TestServicesGatewayAfterVHostDeleted(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols())
	base := "http://" + s.HTTPAddr().String()
	for round := range 2 {
		if st, b := httpDo(t, "PUT", base+"/api/vhosts/v2", "guest", "guest", nil); st/100 != 2 {
			t.Fatalf("PUT vhost: %d %s", st, b)
		}
		if st, b := httpDo(t, "PUT", base+"/api/permissions/v2/guest", "guest", "guest", map[string]string{"configure": ".*", "write": ".*", "read": ".*"}); st/100 != 2 {
			t.Fatalf("PUT permissions: %d %s", st, b)
		}
		in := serveCalcAt(t, s.URL+"v2", "v2-calc", 10)
		if st, _, b := rpcCall(t, base, "v2", "Echo", "2s", "text/plain", []byte("hello")); st != 200 || string(b) != "hello" {
			t.Fatalf("round %d: %d %s", round, st, b)
		}
		if st, b := httpDo(t, "DELETE", base+"/api/vhosts/v2", "guest", "guest", nil); st/100 != 2 {
			t.Fatalf("DELETE vhost: %d %s", st, b)
		}
		in.leave()
	}
}
