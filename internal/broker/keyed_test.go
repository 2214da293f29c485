package broker

import (
	"fmt"
	"testing"

	"github.com/heraldmq/herald/internal/store"
)

func openKeyedBroker(t *testing.T, fs *store.MemFS, vhosts ...string) (*Broker, *store.Log) {
	t.Helper()
	log, _, err := store.Open("/data/log", store.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	b := New(Options{Store: log})
	for _, v := range vhosts {
		b.AddVHost(v)
	}
	if _, _, err := b.RecoverMessages(false); err != nil {
		t.Fatal(err)
	}
	return b, log
}

func keyedBodies(s *KeyedStore) map[string]string {
	out := map[string]string{}
	for _, km := range s.Select(func(string) bool { return true }) {
		out[km.Key] = string(km.Message.Body)
	}
	return out
}

// TestKeyedStoreSurvivesRestartAndCrash: set, replace and delete survive a
// clean restart and, once Sync returned, a power loss; each vhost has its
// own stores; transient messages are kept too; the value comes back with
// its properties and routing key.
func TestKeyedStoreSurvivesRestartAndCrash(t *testing.T) {
	fs := store.NewMemFS()
	b, log := openKeyedBroker(t, fs, "other")
	v := b.VHost(DefaultVHost)
	r := v.Retained()
	for i := range 5 {
		r.Set(fmt.Sprintf("t/%d", i), &Message{Exchange: "amq.topic", RoutingKey: fmt.Sprintf("t.%d", i), Body: []byte(fmt.Sprint("v", i)),
			Properties: Properties{Headers: Table{"x-mqtt-publish-qos": uint8(0)}}})
	}
	r.Set("t/1", &Message{Body: []byte("v1b")}) // replace
	r.Delete("t/2")
	if !r.CompareAndDelete("t/3", r.Get("t/3")) || r.CompareAndDelete("t/4", &Message{}) {
		t.Fatal("CompareAndDelete")
	}
	v.SessionState().Set("mqtt/c1", &Message{Body: []byte(`{"x":1}`)})
	b.VHost("other").Retained().Set("t/0", &Message{Body: []byte("other")})
	if err := r.Sync(nil); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"t/0": "v0", "t/1": "v1b", "t/4": "v4"}
	check := func(b *Broker, when string) {
		t.Helper()
		v := b.VHost(DefaultVHost)
		if got := keyedBodies(v.Retained()); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: retained %v, want %v", when, got, want)
		}
		if m := v.Retained().Get("t/0"); m.RoutingKey != "t.0" || m.Properties.Headers["x-mqtt-publish-qos"] != uint8(0) {
			t.Fatalf("%s: t/0 came back as %+v", when, m)
		}
		if got := keyedBodies(v.SessionState()); got["mqtt/c1"] != `{"x":1}` || len(got) != 1 {
			t.Fatalf("%s: session state %v", when, got)
		}
		if got := keyedBodies(b.VHost("other").Retained()); got["t/0"] != "other" || len(got) != 1 {
			t.Fatalf("%s: other vhost %v", when, got)
		}
	}

	crashed := fs.Crash(nil) // power loss now: only what was fsynced
	b.Close()
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	b, log = openKeyedBroker(t, fs, "other")
	check(b, "after a restart")
	// Replacing after a restart acks the recovered entry.
	b.VHost(DefaultVHost).Retained().Set("t/4", &Message{Body: []byte("v4b")})
	want["t/4"] = "v4b"
	b.Close()
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	b, log = openKeyedBroker(t, fs, "other")
	check(b, "after a second restart")
	if n := log.Stats().Messages; n != 5 {
		t.Errorf("%d live messages in the log, want 5 (replaced and deleted ones are gone)", n)
	}
	b.Close()
	_ = log.Close()

	want["t/4"] = "v4"
	b, log = openKeyedBroker(t, crashed, "other")
	defer func() { b.Close(); _ = log.Close() }()
	check(b, "after a crash")
}

// TestKeyedStoreOfDeletedVHost: a vhost created again under the name of a
// deleted one starts with empty stores, after a restart too; a store
// without a log works in memory.
func TestKeyedStoreOfDeletedVHost(t *testing.T) {
	fs := store.NewMemFS()
	b, log := openKeyedBroker(t, fs, "gone")
	b.VHost("gone").Retained().Set("a", &Message{Body: []byte("old")})
	b.mu.Lock()
	old := b.vhosts["gone"]
	delete(b.vhosts, "gone")
	b.mu.Unlock()
	b.AddVHost("gone")
	if got := old.Retained(); got.Get("a") == nil || got == b.VHost("gone").Retained() {
		t.Fatal("a deleted vhost's connections must not reach the new vhost's store")
	}
	if n := b.VHost("gone").Retained().Len(); n != 0 {
		t.Fatalf("recreated vhost has %d retained messages", n)
	}
	b.Close()
	_ = log.Close()
	b, log = openKeyedBroker(t, fs, "gone")
	defer func() { b.Close(); _ = log.Close() }()
	if n := b.VHost("gone").Retained().Len(); n != 0 {
		t.Fatalf("after a restart the recreated vhost has %d retained messages", n)
	}

	mem := New(Options{})
	mem.VHost(DefaultVHost).Retained().Set("k", &Message{Body: []byte("x")})
	if err := mem.VHost(DefaultVHost).Retained().Sync(nil); err != nil || mem.VHost(DefaultVHost).Retained().Get("k") == nil {
		t.Fatal("memory-only store")
	}
}
