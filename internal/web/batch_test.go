package web_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/heraldmq/herald/internal/web"
)

// TestWSBatchedFrames: with /ws?batch=1 a WebSocket message may hold
// several frames, one JSON object per line; every message arrives once,
// in order.
func TestWSBatchedFrames(t *testing.T) {
	f := newFixture(t, web.Config{})
	f.declareQueue("burst")
	for i := range 200 {
		f.publish("", "burst", fmt.Sprint(i))
	}
	c := f.dialWS("?batch=1")
	if err := c.c.Write(c.ctx, websocket.MessageText, []byte(`{"op":"subscribe","id":"s","queue":"burst"}`)); err != nil {
		t.Fatal(err)
	}
	var bodies []string
	multi := 0
	for len(bodies) < 200 {
		_, b, err := c.c.Read(c.ctx)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		if len(lines) > 1 {
			multi++
		}
		for _, l := range lines {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			if m["op"] == "message" {
				bodies = append(bodies, m["body"].(string))
			}
		}
	}
	for i, b := range bodies {
		if b != fmt.Sprint(i) {
			t.Fatalf("message %d is %q", i, b)
		}
	}
	t.Logf("200 messages in batched WebSocket messages (%d held more than one frame)", multi)
}
