package stomp

import (
	"testing"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/stomp/frame"
	"github.com/heraldmq/herald/internal/store"
)

// diskEnv is a test environment whose broker keeps a message log on an
// in-memory file system (so a test can hold its fsyncs), with a durable
// queue "keep" and a transient queue "probe".
func diskEnv(t *testing.T) (*env, *store.MemFS) {
	t.Helper()
	fs := store.NewMemFS()
	st, _, err := store.Open("/data/log", store.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the env's cleanup
	e := newEnvOn(t, Config{}, st)
	v := e.b.VHost(broker.DefaultVHost)
	if _, err := v.DeclareQueue("keep", broker.QueueOptions{Durable: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.DeclareQueue("probe", broker.QueueOptions{}); err != nil {
		t.Fatal(err)
	}
	return e, fs
}

func (r *rawConn) expect(cmd, header, value string) *frame.Frame {
	r.t.Helper()
	f := r.read(false)
	if f.Command != cmd || (header != "" && f.Value(header) != value) {
		r.t.Fatalf("got %s %v %q, want %s with %s:%s", f.Command, f.Headers, f.Body, cmd, header, value)
	}
	return f
}

// probe sends a message to the transient queue the connection subscribes
// to and expects its MESSAGE next: the frames before it were handled and
// no receipt held back for the disk overtook it.
func (r *rawConn) probe(body string) {
	r.t.Helper()
	r.write("SEND\ndestination:/amq/queue/probe\n\n" + body + "\x00")
	if f := r.read(false); f.Command != frame.MESSAGE || string(f.Body) != body {
		r.t.Fatalf("got %s %v %q before the probe's MESSAGE", f.Command, f.Headers, f.Body)
	}
}

// TestReceiptWaitsForDisk: the RECEIPT of a SEND of a persistent message
// that a durable queue took goes out once the log has fsynced it; the
// receipts after it (a transient SEND, a transaction's COMMIT) keep the
// order of their frames, and a receipt also covers the persistent SENDs
// before it that asked for none.
func TestReceiptWaitsForDisk(t *testing.T) {
	e, fs := diskEnv(t)
	r := e.raw()
	r.connect("")
	r.write("SUBSCRIBE\nid:0\ndestination:/amq/queue/probe\n\n\x00")
	r.probe("p0")

	release := fs.HoldSyncs()
	t.Cleanup(release)
	// Nothing waiting and nothing stored: at once, disk or not.
	r.write("SEND\ndestination:/queue/keep\nreceipt:r0\n\ntransient\x00")
	r.expect(frame.RECEIPT, "receipt-id", "r0")

	r.write("SEND\ndestination:/queue/keep\npersistent:true\nreceipt:r1\n\nkept\x00")
	r.write("SEND\ndestination:/queue/keep\nreceipt:r2\n\ntransient\x00")
	r.write("BEGIN\ntransaction:tx\n\n\x00")
	r.write("SEND\ndestination:/queue/keep\npersistent:true\ntransaction:tx\n\nin tx\x00")
	r.write("COMMIT\ntransaction:tx\nreceipt:r3\n\n\x00")
	r.probe("p1")
	release()
	r.expect(frame.RECEIPT, "receipt-id", "r1")
	r.expect(frame.RECEIPT, "receipt-id", "r2")
	r.expect(frame.RECEIPT, "receipt-id", "r3")
	if n := e.queue("keep").Stats().Ready; n != 4 {
		t.Fatalf("keep holds %d messages, want 4", n)
	}

	// A persistent SEND without a receipt is covered by the next receipt,
	// here a DISCONNECT's: the client may close once it has it.
	release = fs.HoldSyncs()
	t.Cleanup(release)
	r.write("SEND\ndestination:/queue/keep\npersistent:true\n\nno receipt\x00")
	r.write("DISCONNECT\nreceipt:bye\n\n\x00")
	release()
	r.expect(frame.RECEIPT, "receipt-id", "bye")
	crashed := fs.Crash(nil) // what a power loss now would leave
	r.expectClosed()

	st, _, err := store.Open("/data/log", store.Options{FS: crashed})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b := broker.New(broker.Options{Store: st})
	defer b.Close()
	if _, err := b.VHost(broker.DefaultVHost).DeclareQueue("keep", broker.QueueOptions{Durable: true}); err != nil {
		t.Fatal(err)
	}
	if _, n, err := b.RecoverMessages(true); err != nil || n != 3 {
		t.Fatalf("after a power loss at the last receipt: %d persistent messages recovered (%v), want 3", n, err)
	}
}

// TestErrorFollowsWaitingReceipts: an ERROR for a later frame does not
// overtake a receipt still waiting for the disk.
func TestErrorFollowsWaitingReceipts(t *testing.T) {
	e, fs := diskEnv(t)
	r := e.raw()
	r.connect("")
	release := fs.HoldSyncs()
	t.Cleanup(release)
	r.write("SEND\ndestination:/queue/keep\npersistent:true\nreceipt:r1\n\nkept\x00")
	r.write("BOGUS\n\n\x00")
	release()
	r.expect(frame.RECEIPT, "receipt-id", "r1")
	r.expect(frame.ERROR, "", "")
	r.expectClosed()
}
