package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
)

var fast = Tuning{Heartbeat: 200 * time.Millisecond, Election: 200 * time.Millisecond, LeaderLease: 100 * time.Millisecond, Commit: 5 * time.Millisecond}

type member struct {
	node    *Node
	broker  *broker.Broker
	users   *auth.Users
	stopped bool
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

// startMember starts one node in this process with a fresh broker.
func startMember(t *testing.T, name, addr string, join []string, dir string, tu Tuning) *member {
	t.Helper()
	return startMemberWith(t, Config{NodeName: name, Addr: addr, Join: join, Dir: dir, Tuning: tu})
}

// startMemberWith starts a node of cfg (its broker and users made here).
func startMemberWith(t *testing.T, cfg Config) *member {
	t.Helper()
	users := auth.NewUsers()
	users.SetBcryptCost(4)
	b := broker.New(broker.Options{})
	// A port picked free (or freed by a stopped node) may be taken for a
	// moment by another package's test connecting out; wait for it.
	var n *Node
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		cfg.Broker, cfg.Users = b, users
		n, err = Start(cfg)
		if err == nil || !strings.Contains(err.Error(), "address already in use") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	b.SetReplicator(n)
	users.OnChange(n.UsersChanged)
	m := &member{node: n, broker: b, users: users}
	t.Cleanup(m.stop)
	return m
}

func (m *member) stop() {
	if m.stopped {
		return
	}
	m.stopped = true
	_ = m.node.Close()
	m.broker.Close()
}

// startThree starts three nodes in this process and waits for a leader;
// configure, if given, completes each node's Config.
func startThree(t *testing.T, tu Tuning, configure ...func(dir string, c *Config)) []*member {
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
		cfg := Config{NodeName: name, Addr: addrs[i], Join: join, Dir: filepath.Join(dir, name), Tuning: tu}
		for _, f := range configure {
			f(dir, &cfg)
		}
		ms = append(ms, startMemberWith(t, cfg))
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
	ms := startThree(t, fast)
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
	q, _ := encodeEntry(entry{Origin: "n1", Boot: 7, QSeqs: []uint64{1, 2}, Quorum: []broker.QuorumOp{
		{Op: "enq", VHost: "/", Queue: "q", Meta: []byte{1, 0, 0}, Body: []byte("hello")},
		{Op: "settle", VHost: "/", Queue: "q", IDs: []uint64{3, 300}, How: 1}}})
	f.Add(q)
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

// TestSnapshotCatchUp: a node that comes back empty after the leader
// compacted its log gets the state by snapshot (Restore), then the log.
func TestSnapshotCatchUp(t *testing.T) {
	tu := fast
	tu.SnapshotThreshold, tu.TrailingLogs = 8, 2
	ms := startThree(t, tu)
	gone := ms[2]
	addr, join := gone.node.cfg.Addr, gone.node.cfg.Join
	gone.stop()
	v := ms[0].broker.VHost(broker.DefaultVHost)
	for i := range 30 {
		if _, err := v.DeclareQueue(fmt.Sprintf("q%02d", i), broker.QueueOptions{Durable: true}); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range ms[:2] {
		if err := m.node.raft.Snapshot().Error(); err != nil {
			t.Fatal(err)
		}
	}
	if first, _ := ms[0].node.store.FirstIndex(); first <= 1 {
		t.Fatalf("the log was not compacted (first index %d)", first)
	}
	// The node returns with nothing (its disk was replaced).
	back := startMember(t, "c", addr, join, filepath.Join(t.TempDir(), "c-new"), tu)
	waitFor(t, "the returning node has every queue", func() bool {
		return len(back.broker.VHost(broker.DefaultVHost).Queues()) == 30
	})
	// And it follows the log from there.
	if _, err := v.DeclareQueue("after", broker.QueueOptions{Durable: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the returning node follows the log", func() bool {
		_, err := back.broker.VHost(broker.DefaultVHost).Queue("after")
		return err == nil
	})
}

// The same --join list on every node (each one's own address included)
// forms the cluster too.
func TestJoinListsSelf(t *testing.T) {
	dir := t.TempDir()
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	var ms []*member
	for i, name := range []string{"a", "b", "c"} {
		ms = append(ms, startMember(t, name, addrs[i], addrs, filepath.Join(dir, name), fast))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, m := range ms {
		if err := m.node.WaitLeader(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if st := ms[0].node.Status(time.Second); len(st) != 3 {
		t.Fatalf("%d nodes: %+v", len(st), st)
	}
}

// The cluster port survives what is not a node: an unknown first byte,
// garbage after the RPC byte, a request beyond maxRequest, an unknown op.
func TestClusterPortRefusesGarbage(t *testing.T) {
	m := startMember(t, "solo", freeAddr(t), nil, t.TempDir(), fast)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.node.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	addr := m.node.cfg.Addr
	for _, payload := range [][]byte{[]byte("GET / HTTP/1.1\r\n\r\n"), append([]byte{kindRPC}, "{not json"...)} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(payload)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 16)
		if n, err := c.Read(buf); err == nil {
			t.Fatalf("answered %q to %q", buf[:n], payload)
		}
		c.Close()
	}
	c, err := m.node.mux.dial(addr, time.Second, kindRPC)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("a"), 1<<20)
	go func() {
		_, _ = c.Write([]byte(`{"op":"apply","entry":"`))
		for range maxRequest/len(big) + 2 {
			if _, err := c.Write(big); err != nil {
				return
			}
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("an oversized request was not cut off: %v", err)
		} // a reset: the node closed while we were still sending
	}
	c.Close()
	resp, err := m.node.mux.call(addr, request{Op: "nonsense"}, time.Second)
	if err != nil || resp.Err == "" {
		t.Fatalf("unknown op: %+v %v", resp, err)
	}
	// Still serving.
	if _, err := m.broker.VHost(broker.DefaultVHost).DeclareQueue("ok", broker.QueueOptions{Durable: true}); err != nil {
		t.Fatal(err)
	}
}

// TestQuorumSeqGaps: an op numbered above the last applies; a copy of an
// applied one does not; one skipped by a later op (its batch failed, a
// later one committed) does not either, and is reported as gapped.
func TestQuorumSeqGaps(t *testing.T) {
	var st qseqState
	for _, c := range []struct {
		seq           uint64
		apply, gapped bool
	}{
		{1, true, false}, {2, true, false}, {2, false, false}, // a copy
		{5, true, false},  // 3 and 4 failed: gaps
		{3, false, true},  // sent again after 5: refused, reported
		{5, false, false}, // a copy
		{6, true, false},
	} {
		apply, gapped := st.admit(c.seq)
		if apply != c.apply || gapped != c.gapped {
			t.Fatalf("seq %d: apply %v gapped %v, want %v %v (state %+v)", c.seq, apply, gapped, c.apply, c.gapped, st)
		}
	}
}
