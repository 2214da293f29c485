package auth

import (
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
)

// TestCheckTable drives Check through RabbitMQ's access-control table:
// each operation names the (kind, resource) checks it needs; each
// permission set says which of them pass.
func TestCheckTable(t *testing.T) {
	type need struct {
		kind Kind
		res  Resource
		name string
	}
	ops := map[string][]need{
		"queue.declare q":             {{Configure, Queue, "q"}},
		"queue.declare server-named":  {{Configure, Queue, "amq.gen-abc"}},
		"queue.declare q with dlx":    {{Configure, Queue, "q"}, {Write, Exchange, "dlx"}, {Read, Queue, "q"}},
		"queue.delete q":              {{Configure, Queue, "q"}},
		"queue.purge q":               {{Read, Queue, "q"}},
		"queue.bind q to ex":          {{Write, Queue, "q"}, {Read, Exchange, "ex"}},
		"exchange.declare ex":         {{Configure, Exchange, "ex"}},
		"exchange.bind ex2 <- ex":     {{Write, Exchange, "ex2"}, {Read, Exchange, "ex"}},
		"basic.publish ex":            {{Write, Exchange, "ex"}},
		"basic.publish default":       {{Write, Exchange, ExchangeResource("")}},
		"basic.consume q":             {{Read, Queue, "q"}},
		"basic.get q":                 {{Read, Queue, "q"}},
		"exchange.declare app.events": {{Configure, Exchange, "app.events"}},
	}
	perms := []struct {
		name    string
		p       Permissions
		allowed map[string]bool
	}{
		{"all", AllPermissions, map[string]bool{
			"queue.declare q": true, "queue.declare server-named": true, "queue.declare q with dlx": true, "queue.delete q": true,
			"queue.purge q": true, "queue.bind q to ex": true, "exchange.declare ex": true, "exchange.bind ex2 <- ex": true,
			"basic.publish ex": true, "basic.publish default": true, "basic.consume q": true, "basic.get q": true, "exchange.declare app.events": true}},
		{"none", Permissions{Configure: "", Write: "^$", Read: ""}, map[string]bool{}},
		{"read-only", Permissions{Configure: "", Write: "", Read: ".*"}, map[string]bool{
			"queue.purge q": true, "basic.consume q": true, "basic.get q": true}},
		{"write-only", Permissions{Write: ".*"}, map[string]bool{"basic.publish ex": true, "basic.publish default": true}},
		{"publish to ex, no default", Permissions{Write: "^ex$"}, map[string]bool{"basic.publish ex": true}},
		{"server-named only", Permissions{Configure: "^amq\\.gen-", Read: "^amq\\.gen-"}, map[string]bool{"queue.declare server-named": true}},
		{"app prefix, unanchored match", Permissions{Configure: "app\\.", Write: ".*", Read: ".*"}, map[string]bool{
			"exchange.declare app.events": true, "queue.purge q": true, "queue.bind q to ex": true, "exchange.bind ex2 <- ex": true,
			"basic.publish ex": true, "basic.publish default": true, "basic.consume q": true, "basic.get q": true}},
	}
	for _, pc := range perms {
		u := NewUsers()
		u.PutUser("u", "p", nil)
		if err := u.SetPermissions("u", "/", pc.p); err != nil {
			t.Fatal(err)
		}
		for op, needs := range ops {
			ok := true
			for _, n := range needs {
				err := u.Check("u", "/", n.kind, n.res, n.name)
				if err != nil {
					ok = false
					if !errors.Is(err, ErrAccessRefused) {
						t.Fatalf("%s/%s: error %v is not ErrAccessRefused", pc.name, op, err)
					}
				}
			}
			if ok != pc.allowed[op] {
				t.Errorf("permissions %q, %s: allowed=%v, want %v", pc.name, op, ok, pc.allowed[op])
			}
		}
		// Nothing leaks into another vhost.
		if err := u.Check("u", "other", Read, Queue, "q"); err == nil {
			t.Errorf("%s: read in a vhost without permissions", pc.name)
		}
	}
}

func TestRefusalTexts(t *testing.T) {
	u := NewUsers()
	u.PutUser("bob", "p", nil)
	if err := u.CheckVHost("bob", "/"); err == nil || err.Error() != "access to vhost '/' refused for user 'bob'" {
		t.Fatalf("vhost refusal: %v", err)
	}
	must(t, u.SetPermissions("bob", "/", Permissions{Read: ".*"}))
	must(t, u.CheckVHost("bob", "/"))
	err := u.Check("bob", "/", Write, Exchange, "amq.default")
	if err == nil || err.Error() != "write access to exchange 'amq.default' in vhost '/' refused for user 'bob'" {
		t.Fatalf("resource refusal: %v", err)
	}
	if err := u.SetPermissions("bob", "/", Permissions{Read: "("}); err == nil {
		t.Fatal("invalid regexp accepted")
	}
	if err := u.SetPermissions("nobody", "/", AllPermissions); !errors.Is(err, ErrNoSuchUser) {
		t.Fatalf("permissions for a missing user: %v", err)
	}
	if !u.ClearPermissions("bob", "/") || u.CheckVHost("bob", "/") == nil {
		t.Fatal("clear did not revoke")
	}
}

func TestGenerationAndHook(t *testing.T) {
	u := NewDefaultUsers()
	calls := 0
	u.OnChange(func() { calls++ })
	g := u.Generation()
	u.PutUser("a", "p", []string{TagManagement})
	must(t, u.SetPermissions("a", "/", AllPermissions))
	u.ClearVHostPermissions("/")
	if u.Generation() == g || calls != 3 {
		t.Fatalf("generation %d->%d, hook calls %d", g, u.Generation(), calls)
	}
	if u.CheckVHost("guest", "/") == nil {
		t.Fatal("vhost permissions survived ClearVHostPermissions")
	}
	if !u.Delete("a") || u.Delete("a") {
		t.Fatal("delete")
	}
}

func TestDefinitionsRoundTrip(t *testing.T) {
	u := NewDefaultUsers()
	u.PutUser("ops", "pw", []string{TagMonitoring, TagManagement})
	must(t, u.SetPermissions("ops", "/", Permissions{Configure: "^$", Write: "^logs$", Read: ".*"}))
	must(t, u.SetPermissions("ops", "dev", AllPermissions))
	data, err := json.Marshal(u.ExportDefinitions())
	must(t, err)
	if !strings.Contains(string(data), `"tags":["monitoring","management"]`) || !strings.Contains(string(data), HashingAlgorithm) {
		t.Fatalf("export %s", data)
	}
	var d Definitions
	must(t, json.Unmarshal(data, &d))

	v := NewDefaultUsers()
	v.PutUser("stale", "x", nil)
	must(t, v.ImportDefinitions(d, true))
	if _, ok := v.User("stale"); ok {
		t.Fatal("replace kept a user not in the definitions")
	}
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	usr, err := v.Authenticate("ops", "pw", &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1)})
	if err != nil || !usr.HasTag(TagMonitoring) {
		t.Fatalf("imported user: %v %v", usr, err)
	}
	if _, err := v.Authenticate("guest", "guest", &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1)}); !errors.Is(err, ErrLoopbackOnly) {
		t.Fatalf("guest lost its loopback restriction: %v", err)
	}
	if _, err := v.Authenticate("guest", "guest", local); err != nil {
		t.Fatal(err)
	}
	if p, ok := v.Permissions("ops", "/"); !ok || p.Write != "^logs$" {
		t.Fatalf("permissions %v %v", p, ok)
	}

	// RabbitMQ's older comma-separated tags, and a hash made by RabbitMQ
	// (salt 908D C60A, password "test12").
	var old Definitions
	must(t, json.Unmarshal([]byte(`{"users":[{"name":"r","password_hash":"kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR","hashing_algorithm":"rabbit_password_hashing_sha256","tags":"administrator, management"}],"permissions":[]}`), &old))
	w := NewUsers()
	must(t, w.ImportDefinitions(old, false))
	usr, err = w.Authenticate("r", "test12", local)
	if err != nil || !usr.HasTag(TagAdministrator) || !usr.HasTag(TagManagement) {
		t.Fatalf("RabbitMQ hash: %v %v", usr, err)
	}
	if err := w.PutUserHash("x", "bad", "", nil); err == nil {
		t.Fatal("bad hash accepted")
	}
	if err := w.PutUserHash("x", "", "rabbit_password_hashing_sha1", nil); err == nil {
		t.Fatal("unsupported algorithm accepted")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func BenchmarkCheck(b *testing.B) {
	u := NewDefaultUsers()
	for b.Loop() {
		if u.Check("guest", "/", Write, Exchange, "amq.topic") != nil {
			b.Fatal("refused")
		}
	}
}
