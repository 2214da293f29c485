package test

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// rabbitmqadmin (Debian's rabbitmq-server ships it) against Herald: every
// command for the objects Herald has. TestRabbitmqadmin runs the real
// tool when it is on PATH; TestRabbitmqadminRequests replays the HTTP
// requests it sent (testdata/rabbitmqadmin_requests.json, rewritten by
// `go test -run TestRabbitmqadmin$ -update-rabbitmqadmin ./test/`), so
// that machines without it cover them too.

var updateRabbitmqadmin = flag.Bool("update-rabbitmqadmin", false, "rewrite testdata/rabbitmqadmin_requests.json from a run of rabbitmqadmin")

const rabbitmqadminRequests = "testdata/rabbitmqadmin_requests.json"

// adminStep is one rabbitmqadmin command and a text its output must hold.
// In args, {conn} is the test connection's name and {pk} the properties
// key of the binding x1 -> q2 (which has arguments), both known only at
// run time.
type adminStep struct {
	args string
	want string
}

var rabbitmqadminScript = []adminStep{
	{"declare vhost name=v2", "vhost declared"},
	{"declare user name=u1 password=p1 tags=management", "user declared"},
	{"declare permission vhost=v2 user=u1 configure=.* write=.* read=.*", "permission declared"},
	{"declare queue name=q1 durable=false", "queue declared"},
	{`declare queue name=q2 durable=true auto_delete=false arguments={"x-max-length":10}`, "queue declared"},
	{"declare queue name=q3 queue_type=classic", "queue declared"},
	{"declare exchange name=x1 type=topic durable=false auto_delete=false internal=false", "exchange declared"},
	{"declare exchange name=x2 type=fanout", "exchange declared"},
	{"declare binding source=x1 destination=q1 routing_key=a.b", "binding declared"},
	{`declare binding source=x1 destination=q2 routing_key=k arguments={"x-k":"v"}`, "binding declared"},
	{"declare binding source=x1 destination=x2 destination_type=exchange routing_key=e", "binding declared"},
	{"declare binding source=x2 destination=q3", "binding declared"},
	{`declare policy name=p1 pattern=^q definition={"max-length":5} priority=1 apply-to=queues`, "policy declared"},
	{"list queues", "q2"},
	{"list exchanges", "x1"},
	{"list bindings", "a.b"},
	{"-f raw_json list bindings", `"properties_key":"a.b"`},
	{"list vhosts", "v2"},
	{"list users", "u1"},
	{"list permissions", "u1"},
	{"list policies", "max-length"},
	{"list connections", "guest"},
	{"list channels", ""},
	{"list consumers", ""},
	{"list nodes", "herald@"},
	{"-V v2 list queues", ""},
	{"show overview", "herald"},
	{`publish routing_key=q1 payload=hello properties={"delivery_mode":2}`, "Message published"},
	{"publish exchange=x1 routing_key=a.b payload=hello2", "Message published"},
	{"publish exchange=x1 routing_key=k payload=m", "Message published"},
	{"get queue=q1 count=2 ackmode=ack_requeue_false", "hello2"},
	{"get queue=q2", "| m "},
	{"export {file}", "Exported"},
	{"delete binding source=x1 destination_type=queue destination=q1 properties_key=a.b", "binding deleted"},
	{"delete binding source=x1 destination_type=queue destination=q2 properties_key={pk}", "binding deleted"},
	{"delete binding source=x1 destination_type=exchange destination=x2 properties_key=e", "binding deleted"},
	{"delete binding source=x2 destination_type=queue destination=q3", "binding deleted"},
	{"delete queue name=q3", "queue deleted"},
	{"delete exchange name=x2", "exchange deleted"},
	{"import {file}", "Uploaded"},
	{"purge queue name=q2", "queue purged"},
	{"close connection name={conn}", "connection closed"},
	{"delete policy name=p1", "policy deleted"},
	{"delete permission vhost=v2 user=u1", "permission deleted"},
	{"delete user name=u1", "user deleted"},
	{"delete vhost name=v2", "vhost deleted"},
	{"delete queue name=q1", "queue deleted"},
}

// adminRequest is one HTTP request rabbitmqadmin sent and Herald's status.
type adminRequest struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Body   string `json:"body,omitempty"`
	Status int    `json:"status"`
}

// adminFixture is a server with an AMQP connection for close connection.
type adminFixture struct {
	s      *testServer
	base   string
	conn   string // the connection's name
	closed chan *amqp.Error
}

func newAdminFixture(t *testing.T) *adminFixture {
	s := startServer(t, withHTTP())
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("rabbitmqadmin-test")
	c := s.dialConfig(t, amqp.Config{Properties: props})
	f := &adminFixture{s: s, base: "http://" + s.HTTPAddr().String(), closed: c.NotifyClose(make(chan *amqp.Error, 1))}
	// The client may hear connection.open-ok before the registry has it.
	eventually(t, "the connection listed", func() bool {
		var conns []map[string]any
		_, body := httpDo(t, "GET", f.base+"/api/connections", "guest", "guest", nil)
		must(t, json.Unmarshal(body, &conns))
		if len(conns) == 1 {
			f.conn = conns[0]["name"].(string)
		}
		return f.conn != ""
	})
	return f
}

// bindingKey is the properties_key of the binding from source to queue dest.
func (f *adminFixture) bindingKey(t *testing.T, source, dest string) string {
	var bs []map[string]any
	_, body := httpDo(t, "GET", f.base+"/api/bindings/%2F/e/"+source+"/q/"+dest, "guest", "guest", nil)
	must(t, json.Unmarshal(body, &bs))
	if len(bs) != 1 {
		t.Fatalf("bindings %s -> %s: %s", source, dest, body)
	}
	return bs[0]["properties_key"].(string)
}

// check asserts the state the script leaves behind.
func (f *adminFixture) check(t *testing.T) {
	select {
	case e := <-f.closed:
		if e == nil || e.Code != amqp.ConnectionForced {
			t.Errorf("connection closed with %v, want 320", e)
		}
	case <-timeAfterWait():
		t.Error("close connection did not close it")
	}
	v := f.s.Broker().VHost("/")
	if f.s.Broker().VHost("v2") != nil {
		t.Error("vhost v2 left")
	}
	if _, err := v.Queue("q1"); err == nil {
		t.Error("q1 left")
	}
	if q2, err := v.Queue("q2"); err != nil || q2.Stats().Ready != 0 || !q2.Durable() {
		t.Errorf("q2: %v", err)
	}
	// The import restored what the export held: q3, x2 and their binding.
	x2, err := v.Exchange("x2")
	if err != nil || len(x2.Bindings()) != 1 {
		t.Errorf("x2 after import: %v", err)
	}
	if x1, err := v.Exchange("x1"); err != nil || len(x1.Bindings()) != 0 || x1.Durable() {
		t.Errorf("x1: %v", err)
	}
	if len(v.Policies()) != 0 {
		t.Errorf("policies left: %v", v.Policies())
	}
	if st, _ := httpDo(t, "GET", f.base+"/api/users/u1", "guest", "guest", nil); st != http.StatusNotFound {
		t.Errorf("user u1: %d", st)
	}
}

func TestRabbitmqadmin(t *testing.T) {
	t.Parallel()
	tool, err := exec.LookPath("rabbitmqadmin")
	if err != nil {
		t.Skip("rabbitmqadmin is not on PATH (Debian: apt-get install rabbitmq-server); TestRabbitmqadminRequests replays its requests")
	}
	f := newAdminFixture(t)
	// A recording proxy between the tool and Herald.
	target, _ := url.Parse(f.base)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	var recorded []adminRequest
	ps := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		proxy.ServeHTTP(rec, r)
		path := r.URL.RequestURI()
		if r.URL.Path == "/api/connections/"+f.conn {
			path = "/api/connections/{conn}"
		}
		mu.Lock()
		recorded = append(recorded, adminRequest{Method: r.Method, Path: path, Body: string(body), Status: rec.status})
		mu.Unlock()
	}))
	defer ps.Close()
	port := ps.Listener.Addr().(interface{ String() string }).String()
	port = port[strings.LastIndex(port, ":")+1:]
	file := filepath.Join(t.TempDir(), "defs.json")

	for _, step := range rabbitmqadminScript {
		args := []string{"-H", "127.0.0.1", "-P", port}
		for _, a := range splitArgs(step.args) {
			a = strings.ReplaceAll(a, "{file}", file)
			a = strings.ReplaceAll(a, "{conn}", f.conn)
			if strings.Contains(a, "{pk}") {
				a = strings.ReplaceAll(a, "{pk}", f.bindingKey(t, "x1", "q2"))
			}
			args = append(args, a)
		}
		out, err := exec.Command(tool, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), step.want) {
			t.Fatalf("rabbitmqadmin %s: %v\n%s", step.args, err, out)
		}
	}
	f.check(t)
	if *updateRabbitmqadmin {
		data, err := json.MarshalIndent(recorded, "", "  ")
		must(t, err)
		must(t, os.WriteFile(rabbitmqadminRequests, append(data, '\n'), 0o644))
	}
}

// TestRabbitmqadminRequests sends what rabbitmqadmin sent in
// TestRabbitmqadmin and expects the statuses Herald answered then.
func TestRabbitmqadminRequests(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(rabbitmqadminRequests)
	must(t, err)
	var reqs []adminRequest
	must(t, json.Unmarshal(data, &reqs))
	if len(reqs) < len(rabbitmqadminScript) {
		t.Fatalf("%d requests recorded for %d commands", len(reqs), len(rabbitmqadminScript))
	}
	f := newAdminFixture(t)
	for _, rq := range reqs {
		path := strings.ReplaceAll(rq.Path, "{conn}", url.PathEscape(f.conn))
		req, err := http.NewRequest(rq.Method, f.base+path, strings.NewReader(rq.Body))
		must(t, err)
		req.SetBasicAuth("guest", "guest")
		if rq.Body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != rq.Status {
			t.Fatalf("%s %s: %d %s, want %d", rq.Method, path, resp.StatusCode, body, rq.Status)
		}
	}
	f.check(t)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// splitArgs splits a command line on spaces; the script has no quoting.
func splitArgs(s string) []string { return strings.Fields(s) }
