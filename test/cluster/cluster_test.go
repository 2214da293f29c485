package cluster_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestClusterMetadata forms a cluster of three, declares on each node and
// sees the declarations on every node; then kills the leader with
// SIGKILL, waits for a new one, declares again, restarts the old leader
// and sees it catch up.
func TestClusterMetadata(t *testing.T) {
	h := newHarness(t, 3)
	a, b, c := h.nodes[0], h.nodes[1], h.nodes[2]

	// Through the management API on a (leader or not) and through AMQP on b.
	if err := a.declareQueue("orders", map[string]any{"x-max-length": 10}); err != nil {
		t.Fatal(err)
	}
	// A stream's declaration replicates like any queue's (its log stays on
	// each node).
	if err := a.declareQueue("audit", map[string]any{"x-queue-type": "stream", "x-max-age": "7D"}); err != nil {
		t.Fatal(err)
	}
	conn, err := amqp.Dial("amqp://guest:guest@" + b.amqpAddress() + "/")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare("events", "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("orders", "order.#", "events", false, nil); err != nil {
		t.Fatal(err)
	}
	// An exclusive queue stays on its node.
	if _, err := ch.QueueDeclare("mine", false, true, true, false, nil); err != nil {
		t.Fatal(err)
	}
	// Users replicate too.
	if code, body, err := c.api("PUT", "/api/users/alice", map[string]any{"password": "s3cret", "tags": "management"}); err != nil || code/100 != 2 {
		t.Fatalf("put user: %d %s %v", code, body, err)
	}
	for _, nd := range h.nodes {
		eventually(t, 5*time.Second, nd.name+" sees the definitions", func() error {
			if err := nd.hasQueue("orders"); err != nil {
				return err
			}
			if code, body, err := nd.api("GET", "/api/queues/%2F/audit", nil); err != nil || code != 200 || !bytes.Contains(body, []byte(`"type":"stream"`)) {
				return fmt.Errorf("stream audit on %s: %d %s %v", nd.name, code, body, err)
			}
			code, body, err := nd.api("GET", "/api/bindings/%2F", nil)
			if err != nil || code != 200 || !bytes.Contains(body, []byte("order.#")) {
				return fmt.Errorf("binding on %s: %d %s %v", nd.name, code, body, err)
			}
			if code, _, err := nd.api("GET", "/api/users/alice", nil); err != nil || code != 200 {
				return fmt.Errorf("user alice on %s: %d %v", nd.name, code, err)
			}
			return nil
		})
	}
	if err := a.hasQueue("mine"); err == nil {
		t.Fatal("an exclusive queue declared on b is on a")
	}
	conn.Close()

	// Kill the leader; a new one within seconds; declaring still works.
	leader := h.waitLeader(nil, 5*time.Second)
	killed := time.Now()
	h.kill(leader, syscall.SIGKILL)
	next := h.waitLeader(leader, 10*time.Second)
	t.Logf("leader %s killed; %s leads after %s", leader.name, next.name, time.Since(killed).Round(time.Millisecond))
	eventually(t, 5*time.Second, "/api/nodes reports the killed node not running", func() error {
		ns, err := next.nodes()
		if err != nil {
			return err
		}
		for _, n := range ns {
			if n.Name == leader.name && !n.Running {
				return nil
			}
		}
		return fmt.Errorf("%+v", ns)
	})
	var other *node
	for _, nd := range h.nodes {
		if nd != leader && nd != next {
			other = nd
		}
	}
	if err := other.declareQueue("after-failover", nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the new leader sees it", func() error { return next.hasQueue("after-failover") })

	// The old leader restarts with its data dir and catches up.
	h.start(leader)
	eventually(t, 20*time.Second, "the restarted node catches up", func() error {
		if err := leader.hasQueue("after-failover"); err != nil {
			return err
		}
		return leader.hasQueue("orders")
	})
}

// TestClusterPausedFollower pauses a follower with SIGSTOP while the
// others go on, then resumes it: it catches up.
func TestClusterPausedFollower(t *testing.T) {
	h := newHarness(t, 3)
	leader := h.waitLeader(nil, 5*time.Second)
	var f *node
	for _, nd := range h.nodes {
		if nd != leader {
			f = nd
			break
		}
	}
	h.pause(f)
	for i := range 5 {
		if err := leader.declareQueue(fmt.Sprintf("while-paused-%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	h.resume(f)
	eventually(t, 10*time.Second, "the paused node catches up", func() error { return f.hasQueue("while-paused-4") })
}

// TestClusterCorruptLog flips a bit inside an entry of a stopped node's
// Raft log: the node refuses to start and says how to recover; with the
// log moved away it rejoins and gets the definitions from the others.
func TestClusterCorruptLog(t *testing.T) {
	h := newHarness(t, 3)
	victim := h.nodes[2]
	if err := h.nodes[0].declareQueue("corrupt-me-please", nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "replicated", func() error { return victim.hasQueue("corrupt-me-please") })
	h.kill(victim, syscall.SIGTERM)

	path := filepath.Join(victim.dataDir, "raft", "raft.db")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	needle := []byte("corrupt-me-please")
	n := 0
	for i := bytes.Index(data, needle); i >= 0; {
		data[i+3] ^= 0x01 // 'r' -> 's'
		n++
		j := bytes.Index(data[i+1:], needle)
		if j < 0 {
			break
		}
		i += 1 + j
	}
	if n == 0 {
		t.Fatal("the queue name is not in the Raft log file")
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	h.start(victim)
	select {
	case <-victim.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("a node with a corrupted Raft log started")
	}
	victim.mu.Lock()
	victim.cmd = nil
	victim.mu.Unlock()
	logText, _ := os.ReadFile(filepath.Join(filepath.Dir(victim.dataDir), victim.name+".log"))
	if !bytes.Contains(logText, []byte("is damaged at index")) {
		t.Fatalf("no clear error in the log:\n%s", logText)
	}

	// Recovery as the message says: move the raft directory away.
	if err := os.Rename(filepath.Join(victim.dataDir, "raft"), filepath.Join(victim.dataDir, "raft.damaged")); err != nil {
		t.Fatal(err)
	}
	if err := h.nodes[0].declareQueue("after-repair", nil); err != nil {
		t.Fatal(err)
	}
	h.start(victim)
	eventually(t, 20*time.Second, "the repaired node rejoins and catches up", func() error { return victim.hasQueue("after-repair") })
}

// TestClusterCtl drives herald ctl cluster status and remove-node.
func TestClusterCtl(t *testing.T) {
	h := newHarness(t, 3)
	a, c := h.nodes[0], h.nodes[2]
	ctl := func(args ...string) (string, error) {
		cmd := exec.Command(herald, append([]string{"ctl", "--url", "http://" + a.httpAddress()}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	eventually(t, 5*time.Second, "status lists three running nodes and a leader", func() error {
		out, err := ctl("cluster", "status")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if strings.Count(out, "true") != 3 || !strings.Contains(out, "Leader") {
			return fmt.Errorf("status:\n%s", out)
		}
		return nil
	})
	if out, err := ctl("cluster", "remove-node", "nobody"); err == nil {
		t.Fatalf("removing an unknown node succeeded: %s", out)
	}
	h.kill(c, syscall.SIGKILL)
	eventually(t, 5*time.Second, "status exits 1 naming the dead node", func() error {
		out, err := ctl("cluster", "status")
		if err == nil || !strings.Contains(out, "not running: "+c.name) {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if out, err := ctl("cluster", "remove-node", c.name); err != nil {
		t.Fatalf("remove-node: %v: %s", err, out)
	}
	eventually(t, 5*time.Second, "status lists two nodes", func() error {
		ns, err := a.nodes()
		if err != nil {
			return err
		}
		if len(ns) != 2 {
			return fmt.Errorf("%d nodes: %+v", len(ns), ns)
		}
		return nil
	})
	// Two of two must agree now: declaring still works.
	if err := a.declareQueue("after-remove", nil); err != nil {
		t.Fatal(err)
	}
}

// TestClusterPartitionedFollower cuts a follower off (nobody reaches it),
// declares on the majority, heals, and sees the follower catch up; then
// slows the follower's link and declares again.
func TestClusterPartitionedFollower(t *testing.T) {
	h := newHarness(t, 3)
	leader := h.waitLeader(nil, 5*time.Second)
	var f *node
	for _, nd := range h.nodes {
		if nd != leader {
			f = nd
			break
		}
	}
	f.proxy.cut()
	if err := leader.declareQueue("during-partition", nil); err != nil {
		t.Fatal(err)
	}
	if err := f.hasQueue("during-partition"); err == nil {
		t.Fatal("a cut-off node got the declaration")
	}
	f.proxy.heal()
	eventually(t, 10*time.Second, "the healed node catches up", func() error { return f.hasQueue("during-partition") })
	f.proxy.slow(20 * time.Millisecond)
	if err := leader.declareQueue("slow-link", nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the slow node gets it", func() error { return f.hasQueue("slow-link") })
	f.proxy.slow(0)
}

// TestClusterRollingRestart restarts the nodes one at a time (SIGTERM,
// start again with the same data dir) while declaring through the
// others: every acknowledged declaration is on every node at the end.
func TestClusterRollingRestart(t *testing.T) {
	h := newHarness(t, 3)
	var acked []string
	for round, nd := range h.nodes {
		h.kill(nd, syscall.SIGTERM)
		for i := range 5 {
			via := h.nodes[(round+1+i%2)%3]
			name := fmt.Sprintf("rolling-%d-%d", round, i)
			if err := via.declareQueue(name, nil); err != nil {
				t.Fatalf("with %s down: %v", nd.name, err)
			}
			acked = append(acked, name)
		}
		h.start(nd)
		h.waitLeader(nil, 20*time.Second)
	}
	for _, nd := range h.nodes {
		eventually(t, 20*time.Second, nd.name+" has every declaration", func() error {
			have, err := nd.queueNames()
			if err != nil {
				return err
			}
			for _, n := range acked {
				if !have[n] {
					return fmt.Errorf("%s lacks %s", nd.name, n)
				}
			}
			return nil
		})
	}
}

// TestClusterLoadDefinitions starts every node with the same
// --load-definitions file: the import waits for the cluster and is
// replicated (three imports of the same document agree).
func TestClusterLoadDefinitions(t *testing.T) {
	file := filepath.Join(t.TempDir(), "defs.json")
	doc := `{"queues":[{"name":"from-file","vhost":"/","durable":true,"auto_delete":false,"arguments":{"x-max-length":7}}],
	  "exchanges":[{"name":"file-x","vhost":"/","type":"fanout","durable":true,"auto_delete":false,"internal":false,"arguments":{}}],
	  "bindings":[{"source":"file-x","vhost":"/","destination":"from-file","destination_type":"queue","routing_key":"","arguments":{}}]}`
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, 3, "--load-definitions", file)
	for _, nd := range h.nodes {
		eventually(t, 10*time.Second, nd.name+" has the file's queue", func() error { return nd.hasQueue("from-file") })
	}
}
