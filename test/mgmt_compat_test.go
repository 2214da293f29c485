package test

import (
	"encoding/json"
	"net/url"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
)

func withHTTP() serverOption {
	return func(c *app.Config) { c.HTTPAddr = "127.0.0.1:0" }
}

// TestConnectionsByClientName does what amqp091-go's connection-recovery
// tests do against RabbitMQ's management API: list /api/connections/
// (with the trailing slash), find the connection by
// client_properties.connection_name, and close it with DELETE
// /api/connections/{name}; the client sees 320 CONNECTION_FORCED.
func TestConnectionsByClientName(t *testing.T) {
	t.Parallel()
	s := startServer(t, withHTTP())
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("recovery-test-1")
	conn := s.dialConfig(t, amqp.Config{Properties: props})
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	base := "http://" + s.HTTPAddr().String()

	st, body := httpDo(t, "GET", base+"/api/connections/", "guest", "guest", nil)
	if st != 200 {
		t.Fatalf("GET /api/connections/: %d %s", st, body)
	}
	var conns []struct {
		Name             string         `json:"name"`
		UserProvidedName string         `json:"user_provided_name"`
		ClientProperties map[string]any `json:"client_properties"`
	}
	must(t, json.Unmarshal(body, &conns))
	name := ""
	for _, c := range conns {
		if c.ClientProperties["connection_name"] == "recovery-test-1" {
			name = c.Name
			caps, _ := c.ClientProperties["capabilities"].(map[string]any)
			if c.UserProvidedName != "recovery-test-1" || c.ClientProperties["product"] == nil || caps["connection.blocked"] != true {
				t.Fatalf("connection %+v", c)
			}
		}
	}
	if name == "" {
		t.Fatalf("no connection named recovery-test-1 in %s", body)
	}
	path := base + "/api/connections/" + url.PathEscape(name)
	if st, body := httpDo(t, "GET", path, "guest", "guest", nil); st != 200 {
		t.Fatalf("GET %s: %d %s", path, st, body)
	}
	if st, body := httpDo(t, "DELETE", path, "guest", "guest", nil); st != 204 {
		t.Fatalf("DELETE %s: %d %s", path, st, body)
	}
	select {
	case e := <-closed:
		if e == nil || e.Code != amqp.ConnectionForced {
			t.Fatalf("closed with %v, want 320", e)
		}
	case <-timeAfterWait():
		t.Fatal("connection not closed")
	}
	eventually(t, "connection gone", func() bool {
		st, _ := httpDo(t, "GET", path, "guest", "guest", nil)
		return st == 404
	})
}
