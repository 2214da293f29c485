package definitions

import (
	"encoding/json"
	"testing"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
)

const golden = `{"rabbit_version":"3.13.7",
 "users":[{"name":"bob","password_hash":"c2FsdNQ3qk+2WBnFdHFZVFbIBtOBmY6PfUHnEd4zF6m9lEl5","hashing_algorithm":"rabbit_password_hashing_sha256","tags":["administrator"],"limits":{}}],
 "vhosts":[{"name":"/"},{"name":"v"}],
 "permissions":[{"user":"bob","vhost":"v","configure":".*","write":".*","read":".*"}],
 "policies":[{"vhost":"v","name":"p","pattern":"^q","apply-to":"queues","definition":{"max-length":10},"priority":1}],
 "queues":[{"name":"q1","vhost":"v","durable":true,"auto_delete":false,"arguments":{"x-message-ttl":60000}}],
 "exchanges":[{"name":"e","vhost":"v","type":"topic","durable":true,"auto_delete":false,"internal":false,"arguments":{}}],
 "bindings":[{"source":"e","vhost":"v","destination":"q1","destination_type":"queue","routing_key":"a.#","arguments":{}}]}`

func TestRoundTrip(t *testing.T) {
	doc, err := Parse([]byte(golden))
	if err != nil {
		t.Fatal(err)
	}
	b, users := broker.New(broker.Options{}), auth.NewUsers()
	if err := Import(b, users, doc, false); err != nil {
		t.Fatal(err)
	}
	out := Export(b, users, true)
	if len(*out.Users) != 1 || len(*out.Permissions) != 1 || len(out.Queues) != 1 || len(out.Exchanges) != 1 || len(out.Bindings) != 1 || len(out.Policies) != 1 {
		t.Fatalf("export %+v", out)
	}
	f := Filter(out, "v")
	if f.Users != nil || len(f.VHosts) != 0 || len(f.Queues) != 1 || len(Filter(out, "/").Queues) != 0 {
		t.Fatalf("filter %+v", f)
	}
	// The export imports into an empty broker and exports the same.
	data, _ := json.Marshal(out)
	doc2, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	b2, users2 := broker.New(broker.Options{}), auth.NewUsers()
	if err := Import(b2, users2, doc2, true); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(Export(b2, users2, true))
	if string(again) != string(data) {
		t.Fatalf("round trip differs:\n%s\n%s", data, again)
	}
}

// FuzzImport feeds arbitrary documents through Parse and Import: bad
// input must give errors, never a panic.
func FuzzImport(f *testing.F) {
	f.Add([]byte(golden))
	f.Add([]byte(`{"queues":[{"name":"x","vhost":"/","arguments":{"x-max-length":"ten"}}]}`))
	f.Add([]byte(`{"users":[{"name":"","password_hash":"!"}],"permissions":[{"user":"nobody","vhost":"/","read":"("}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := Parse(data)
		if err != nil {
			return
		}
		b := broker.New(broker.Options{})
		defer b.Close()
		_ = Import(b, auth.NewUsers(), doc, false)
	})
}
