package cluster

import (
	"bytes"
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
)

var fast = Timing{Heartbeat: 200 * time.Millisecond, Election: 200 * time.Millisecond, LeaderLease: 100 * time.Millisecond, Commit: 5 * time.Millisecond}

type member struct {
	node   *Node
	broker *broker.Broker
	users  *auth.Users
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startThree starts three nodes in this process and waits for a leader.
func startThree(t *testing.T) []*member {
	t.Helper()
	dir := t.TempDir()
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	var ms []*member
	for i, name := range []string{"a", "b", "c"} {
		var join []string
		for j, a := range addrs {
			if j != i {
				join = append(join, a)
			}
		}
		users := auth.NewUsers()
		users.SetBcryptCost(4)
		b := broker.New(broker.Options{})
		n, err := Start(Config{NodeName: name, Addr: addrs[i], Join: join, Dir: filepath.Join(dir, name), Broker: b, Users: users, Timing: fast})
		if err != nil {
			t.Fatal(err)
		}
		b.SetReplicator(n)
		users.OnChange(n.UsersChanged)
		m := &member{node: n, broker: b, users: users}
		ms = append(ms, m)
		t.Cleanup(func() {
			if err := n.Close(); err != nil {
				t.Error(err)
			}
			b.Close()
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, m := range ms {
		if err := m.node.WaitLeader(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return ms
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReplicatedDefinitions(t *testing.T) {
	ms := startThree(t)
	var follower *member
	for _, m := range ms {
		if _, id := m.node.raft.LeaderWithID(); string(id) != m.node.Name() {
			follower = m
			break
		}
	}
	// A declaration on a follower goes through the leader and is visible
	// on the follower when the call returns.
	q, err := follower.broker.VHost(broker.DefaultVHost).DeclareQueue("orders", broker.QueueOptions{Durable: true})
	if err != nil || q == nil {
		t.Fatalf("declare on a follower: %v %v", q, err)
	}
	if err := follower.broker.VHost(broker.DefaultVHost).PutPolicy(broker.Policy{Name: "p", Pattern: "^orders$", Definition: broker.Table{"max-length": int64(4)}}); err != nil {
		t.Fatal(err)
	}
	// A refused redeclaration is refused on the proposer with the broker's error.
	_, err = follower.broker.VHost(broker.DefaultVHost).DeclareQueue("orders", broker.QueueOptions{Durable: false})
	if be, ok := err.(*broker.Error); !ok || be.Code != broker.CodePreconditionFailed {
		t.Fatalf("inequivalent redeclare: %v", err)
	}
	follower.users.PutUser("carol", "pw", []string{"management"})
	for _, m := range ms {
		waitFor(t, m.node.Name()+" has the queue, the policy and the user", func() bool {
			v := m.broker.VHost(broker.DefaultVHost)
			_, qerr := v.Queue("orders")
			_, ok := m.users.User("carol")
			return qerr == nil && len(v.Policies()) == 1 && ok
		})
	}
	st := ms[0].node.Status(time.Second)
	if len(st) != 3 {
		t.Fatalf("status: %+v", st)
	}
	leaders := 0
	for _, s := range st {
		if !s.Running || s.Term == 0 {
			t.Fatalf("status: %+v", s)
		}
		if s.State == "Leader" {
			leaders++
		}
	}
	if leaders != 1 {
		t.Fatalf("%d leaders: %+v", leaders, st)
	}
	// A snapshot restores on a fresh broker: the same topology.
	snap, err := ms[0].node.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	fresh := broker.New(broker.Options{})
	defer fresh.Close()
	fresh.AddVHost("gone-after-restore")
	f := &fsm{n: &Node{cfg: Config{Broker: fresh, Users: auth.NewUsers(), NodeName: "x"}, log: ms[0].node.log}, path: filepath.Join(t.TempDir(), "applied")}
	if err := f.Restore(io.NopCloser(bytes.NewReader(snap.(snapshot)))); err != nil {
		t.Fatal(err)
	}
	if fresh.VHost("gone-after-restore") != nil {
		t.Fatal("a vhost not in the snapshot survived the restore")
	}
	if _, err := fresh.VHost(broker.DefaultVHost).Queue("orders"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.n.cfg.Users.User("carol"); !ok {
		t.Fatal("the snapshot's users were not restored")
	}
}

func TestEntryChecksum(t *testing.T) {
	b, err := encodeEntry(entry{Origin: "a", Req: 7, Command: []byte(`{"type":"vhost.create","command":{"vhost":"x"}}`)})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := decodeEntry(b); err != nil || e.Req != 7 {
		t.Fatalf("%+v %v", e, err)
	}
	for i := range b {
		c := append([]byte(nil), b...)
		c[i] ^= 0x10
		if _, err := decodeEntry(c); err == nil {
			t.Fatalf("a flipped bit at %d went unnoticed", i)
		}
	}
}

func FuzzDecodeEntry(f *testing.F) {
	good, _ := encodeEntry(entry{Origin: "a", Req: 1, Users: &auth.Definitions{}})
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := decodeEntry(data)
		if err != nil {
			return
		}
		again, err := encodeEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeEntry(again); err != nil {
			t.Fatal(err)
		}
	})
}
