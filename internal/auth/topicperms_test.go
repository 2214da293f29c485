package auth

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTopicPermissions(t *testing.T) {
	u := NewDefaultUsers()
	u.PutUser("iot", "pw", nil)
	if _, err := u.SetTopicPermissions("nobody", "/", TopicPermissions{Exchange: "amq.topic"}); !errors.Is(err, ErrNoSuchUser) {
		t.Fatalf("unknown user: %v", err)
	}
	for _, bad := range []TopicPermissions{{Exchange: "amq.topic", Write: "("}, {Exchange: "amq.topic", Read: "^{username}["}} {
		_, err := u.SetTopicPermissions("iot", "/", bad)
		if !errors.Is(err, ErrInvalidTopicPattern) {
			t.Fatalf("bad pattern %+v: %v", bad, err)
		}
		field := "write"
		if bad.Write == "" {
			field = "read"
		}
		if !strings.Contains(err.Error(), field) {
			t.Fatalf("the refusal does not name %s: %v", field, err)
		}
	}
	// No entry: not restricted (RabbitMQ).
	if err := u.CheckTopic("iot", "/", Write, "amq.topic", "any.key", TopicVars{}); err != nil {
		t.Fatal(err)
	}
	replaced, err := u.SetTopicPermissions("iot", "/", TopicPermissions{Exchange: "amq.topic",
		Write: `^devices\.{username}\.{client_id}\.`, Read: `^(cmd\.{vhost}|all)\.`})
	if err != nil || replaced {
		t.Fatalf("set: %v %v", replaced, err)
	}
	gen := u.Generation()
	if replaced, err = u.SetTopicPermissions("iot", "/", TopicPermissions{Exchange: "amq.topic",
		Write: `^devices\.{username}\.{client_id}\.`, Read: `^(cmd\.{vhost}|all)\.`}); err != nil || !replaced || u.Generation() == gen {
		t.Fatalf("replace: %v %v", replaced, err)
	}
	if _, err := u.SetTopicPermissions("iot", "/", TopicPermissions{Exchange: "logs", Write: "", Read: ".*"}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		kind     Kind
		exchange string
		key      string
		clientID string
		ok       bool
	}{
		{Write, "amq.topic", "devices.iot.c1.temp", "c1", true},
		{Write, "amq.topic", "devices.iot.c2.temp", "c1", false},  // another client's
		{Write, "amq.topic", "devices.bob.c1.temp", "c1", false},  // another user's
		{Write, "amq.topic", "devices.iot.c.1.temp", "c.1", true}, // the id is quoted
		{Write, "amq.topic", "devices.iot.cx1.temp", "c.1", false},
		{Write, "amq.topic", "devices.iot.{client_id}.x", "", true}, // no id: the variable stays (a literal here)
		{Read, "amq.topic", "cmd./.x", "", true},
		{Read, "amq.topic", "all.x", "", true},
		{Read, "amq.topic", "cmd.other.x", "", false},
		{Write, "logs", "", "", true}, // "" is ^$
		{Write, "logs", "a", "", false},
		{Read, "logs", "a.b", "", true},
		{Write, "other", "a", "", true}, // no entry for this exchange
		{Configure, "amq.topic", "devices.iot.c1.temp", "c1", false},
	}
	for _, c := range cases {
		err := u.CheckTopic("iot", "/", c.kind, c.exchange, c.key, TopicVars{ClientID: c.clientID})
		if (err == nil) != c.ok {
			t.Errorf("%s %s %q (client %q): %v, want ok=%v", c.kind, c.exchange, c.key, c.clientID, err, c.ok)
		}
		if err != nil && (!errors.Is(err, ErrAccessRefused) || !strings.Contains(err.Error(), "access to topic '"+c.key+"' in exchange '"+c.exchange+"'")) {
			t.Errorf("refusal text %q", err)
		}
	}
	// Other vhosts and users are not restricted.
	if u.CheckTopic("iot", "v2", Write, "amq.topic", "x", TopicVars{}) != nil || u.CheckTopic("guest", "/", Write, "amq.topic", "x", TopicVars{}) != nil {
		t.Fatal("restricted beyond the entry")
	}
	if got := u.ListTopicPermissions(); len(got) != 2 || got[0].Exchange != "amq.topic" || got[1].Exchange != "logs" || got[0].User != "iot" {
		t.Fatalf("list %+v", got)
	}

	// Export and import keep them (the definitions file).
	d := u.ExportDefinitions()
	v := NewUsers()
	if err := v.ImportDefinitions(d, true); err != nil {
		t.Fatal(err)
	}
	if v.CheckTopic("iot", "/", Write, "logs", "a", TopicVars{}) == nil || len(v.ListTopicPermissions()) != 2 {
		t.Fatal("import lost the topic permissions")
	}

	logs := "logs"
	if !u.ClearTopicPermissions("iot", "/", &logs) || u.ClearTopicPermissions("iot", "/", &logs) {
		t.Fatal("clear one exchange")
	}
	if u.CheckTopic("iot", "/", Write, "logs", "a", TopicVars{}) != nil {
		t.Fatal("cleared entry still applies")
	}
	if !u.ClearTopicPermissions("iot", "/", nil) || u.ClearTopicPermissions("iot", "/", nil) {
		t.Fatal("clear all")
	}
	if _, err := u.SetTopicPermissions("iot", "v2", TopicPermissions{Exchange: "amq.topic", Write: "^$"}); err != nil {
		t.Fatal(err)
	}
	u.ClearVHostPermissions("v2")
	if len(u.ListTopicPermissions()) != 0 {
		t.Fatal("vhost deletion left topic permissions")
	}
	if _, err := u.SetTopicPermissions("iot", "/", TopicPermissions{Exchange: "amq.topic", Write: "^$"}); err != nil {
		t.Fatal(err)
	}
	u.Delete("iot")
	if len(u.ListTopicPermissions()) != 0 {
		t.Fatal("user deletion left topic permissions")
	}
}

// Many expansions of one pattern (one per MQTT client id) stay bounded.
func TestTopicPatternCacheBounded(t *testing.T) {
	p, err := compileTopicPattern("write", "^{client_id}$")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 * maxTopicCache {
		id := strings.Repeat("x", i%50) + string(rune('a'+i%26))
		if !p.matches(id, "u", "/", TopicVars{ClientID: id}) {
			t.Fatalf("%q does not match itself", id)
		}
	}
	if len(p.cache) > maxTopicCache {
		t.Fatalf("cache holds %d", len(p.cache))
	}
}

func BenchmarkCheckTopic(b *testing.B) {
	u := NewDefaultUsers()
	_, _ = u.SetTopicPermissions("guest", "/", TopicPermissions{Exchange: "amq.topic", Write: `^devices\.{client_id}\.`, Read: ".*"})
	b.ReportAllocs()
	for b.Loop() {
		if u.CheckTopic("guest", "/", Write, "amq.topic", "devices.c1.temp", TopicVars{ClientID: "c1"}) != nil {
			b.Fatal("refused")
		}
	}
}

// FuzzTopicPermissions: any write/read pattern either is refused at Set
// or checks any key and variables without panicking; an expansion never
// lets a variable's value act as regexp syntax.
func FuzzTopicPermissions(f *testing.F) {
	f.Add(`^devices\.{username}\.`, `{client_id}`, "devices.u.x", "c.*")
	f.Add(`(`, ``, "", "")
	f.Add(`^{vhost}$`, `[{client_id}]`, "/", "]")
	f.Add(`{username}{{client_id}}`, `^$`, "u{}", "a{2}")
	// One user for every input: PutUser hashes the password, and with a
	// user made per input the 10-minute campaign ran only 438 inputs.
	// Each input replaces the user's topic permissions for "x".
	u := NewUsers()
	u.PutUser("u", "p", nil)
	f.Fuzz(func(t *testing.T, write, read, key, clientID string) {
		if _, err := u.SetTopicPermissions("u", "/", TopicPermissions{Exchange: "x", Write: write, Read: read}); err != nil {
			if !errors.Is(err, ErrInvalidTopicPattern) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		_ = u.CheckTopic("u", "/", Write, "x", key, TopicVars{ClientID: clientID})
		_ = u.CheckTopic("u", "/", Read, "x", key, TopicVars{ClientID: clientID})
		// A pattern that is just the variable matches exactly its value.
		exp := ExpandTopicPattern("^{client_id}$", "u", "/", TopicVars{ClientID: clientID})
		if clientID != "" && utf8.ValidString(clientID) && !strings.Contains(exp, "{client_id}") {
			p, err := compileTopicPattern("read", "^{client_id}$")
			if err != nil {
				t.Fatal(err)
			}
			if !p.matches(clientID, "u", "/", TopicVars{ClientID: clientID}) {
				t.Fatalf("%q does not match its own quoted expansion %q", clientID, exp)
			}
		}
	})
}

// The cost every AMQP publish pays for a user without topic permissions.
func BenchmarkCheckTopicUnrestricted(b *testing.B) {
	u := NewDefaultUsers()
	var c Checker = u
	b.ReportAllocs()
	for b.Loop() {
		if CheckTopicAccess(c, "guest", "/", Write, "amq.topic", "devices.c1.temp", TopicVars{}, nil) != nil {
			b.Fatal("refused")
		}
	}
}
