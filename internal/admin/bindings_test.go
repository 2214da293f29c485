package admin

import (
	"net/url"
	"strings"
	"testing"

	"github.com/heraldmq/herald/internal/broker"
)

// TestPropertiesKey: RabbitMQ's encoding (pack_binding_props), checked
// against keys RabbitMQ 3.10.8 listed: "~" alone for an empty key, the
// key form-escaped ("z z" is "z+z", "~" is "%7E"), "~" and a six-letter
// hash after it when there are arguments.
func TestPropertiesKey(t *testing.T) {
	for _, c := range []struct {
		key  string
		args broker.Table
		want string
	}{
		{"", nil, "~"},
		{"a.b", nil, "a.b"},
		{"z z", nil, "z+z"},
		{"a~b/c", nil, "a%7Eb%2Fc"},
		{"#", broker.Table{}, "%23"},
	} {
		if got := propertiesKey(c.key, c.args); got != c.want {
			t.Errorf("propertiesKey(%q, %v) = %q, want %q", c.key, c.args, got, c.want)
		}
	}
	a := propertiesKey("k", broker.Table{"x": int64(1), "y": "v"})
	b := propertiesKey("k", broker.Table{"y": "v", "x": int64(1)})
	c := propertiesKey("k", broker.Table{"x": int64(2), "y": "v"})
	if a != b || a == c || !strings.HasPrefix(a, "k~") || len(a) != len("k~")+6 {
		t.Fatalf("keys with arguments: %q %q %q", a, b, c)
	}
	if e := propertiesKey("", broker.Table{"x": true}); !strings.HasPrefix(e, "~") || len(e) != 7 {
		t.Fatalf("empty key with arguments: %q", e)
	}
}

// FuzzPropertiesKey: the routing key is what unescaping its part of the
// properties key gives back.
func FuzzPropertiesKey(f *testing.F) {
	for _, k := range []string{"", "a.b", "z z", "a~b", "%7E", "日本", "#"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		pk := propertiesKey(key, nil)
		if key == "" {
			if pk != "~" {
				t.Fatalf("empty key: %q", pk)
			}
			return
		}
		if strings.Contains(pk, "~") {
			t.Fatalf("%q: ~ left in %q", key, pk)
		}
		back, err := url.QueryUnescape(pk)
		if err != nil || back != key {
			t.Fatalf("%q -> %q -> %q (%v)", key, pk, back, err)
		}
	})
}
