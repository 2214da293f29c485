package test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The crash test drives the real herald binary: SIGKILL is the only honest
// way to prove that a confirmed message survives "kill -9 at any moment"
// (an in-process server can only be shut down politely).

const (
	crashQueue      = "crash-durable"
	crashPublishers = 4
	crashKills      = 5
	crashBodySize   = 1024
	// crashWindow bounds each publisher's unconfirmed messages, so that the
	// backlog stays small enough to consume within the time budget while
	// the log still sees a steady stream of group commits.
	crashWindow = 256
)

// buildHerald compiles cmd/herald once into a temporary directory.
func buildHerald(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "herald")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/heraldmq/herald/cmd/herald").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// procLog keeps every line the herald processes logged, for the failure
// report and for the recovery counts.
type procLog struct {
	mu        sync.Mutex
	lines     []string
	recovered []int // "messages recovered" per start
}

func (l *procLog) add(gen int, line string) {
	var rec map[string]any
	_ = json.Unmarshal([]byte(line), &rec)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf("[run %d] %s", gen, line))
	if rec["msg"] == "messages recovered" {
		n, _ := rec["messages"].(float64)
		l.recovered = append(l.recovered, int(n))
	}
}

// report returns the warnings and errors plus the last lines.
func (l *procLog) report() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for i, line := range l.lines {
		if i >= len(l.lines)-30 || strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// heraldProc is one run of the binary.
type heraldProc struct {
	cmd     *exec.Cmd
	addr    string // AMQP
	mqtt    string // MQTT, if its listener was asked for
	stomp   string // STOMP, if its listener was asked for
	http    string // HTTP, if its listener was asked for
	logDone chan struct{}
	once    sync.Once
}

// startHerald runs the binary on dataDir and waits for its ready line. It
// listens for AMQP, plus MQTT, STOMP and HTTP if listeners names them
// ("mqtt", "stomp", "http"), each on a free port of 127.0.0.1.
func startHerald(t testing.TB, bin, dataDir string, gen int, logs *procLog, listeners ...string) *heraldProc {
	t.Helper()
	args := []string{"serve", "--amqp", "127.0.0.1:0", "--http", "off", "--mqtt", "off", "--stomp", "off",
		"--data-dir", dataDir, "--log-format", "json", "--log-level", "info"}
	for _, l := range listeners {
		if l != "mqtt" && l != "stomp" && l != "http" {
			t.Fatalf("startHerald: unknown listener %q", l)
		}
		args = append(args, "--"+l, "127.0.0.1:0") // the later flag wins
	}
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &heraldProc{cmd: cmd, logDone: make(chan struct{})}
	// Registered at once so that the process dies even if this test fails
	// before the caller gets hold of it.
	t.Cleanup(p.kill)
	type readyLine struct{ Msg, AMQP, MQTT, STOMP, HTTP string }
	ready := make(chan readyLine, 1)
	go func() {
		defer close(p.logDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			logs.add(gen, line)
			var rec readyLine
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "herald ready" {
				select {
				case ready <- rec:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case r := <-ready:
		p.addr, p.mqtt, p.stomp, p.http = r.AMQP, r.MQTT, r.STOMP, r.HTTP
		return p
	case <-p.logDone:
		p.kill()
		t.Fatalf("herald run %d exited before it was ready:\n%s", gen, logs.report())
	case <-time.After(20 * time.Second):
		p.kill()
		t.Fatalf("herald run %d: no ready line:\n%s", gen, logs.report())
	}
	panic("unreachable")
}

// kill sends SIGKILL and reaps the process; safe to call twice.
func (p *heraldProc) kill() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.logDone // the pipe must be drained before Wait
		_ = p.cmd.Wait()
	})
}

// target tells the clients where the current server generation listens.
type target struct {
	mu      sync.Mutex
	url     string
	gen     int
	changed chan struct{} // closed and replaced when gen moves on
}

func newTarget() *target { return &target{changed: make(chan struct{})} }

func (tg *target) set(url string) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.url = url
	tg.gen++
	close(tg.changed)
	tg.changed = make(chan struct{})
}

// await returns a server generation newer than after, or false once stop
// is closed: clients wait for the restart rather than poll a dead port.
func (tg *target) await(after int, stop <-chan struct{}) (string, int, bool) {
	for {
		tg.mu.Lock()
		url, gen, ch := tg.url, tg.gen, tg.changed
		tg.mu.Unlock()
		if gen > after {
			return url, gen, true
		}
		select {
		case <-ch:
		case <-stop:
			return "", 0, false
		}
	}
}

func crashBody(pub, seq int) []byte {
	b := make([]byte, crashBodySize)
	n := copy(b, fmt.Sprintf("%d:%d:", pub, seq))
	for i := n; i < len(b); i++ {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

func parseCrashBody(b []byte) (pub, seq int, ok bool) {
	f := strings.SplitN(string(b), ":", 3)
	if len(f) != 3 || len(b) != crashBodySize {
		return 0, 0, false
	}
	p, err1 := strconv.Atoi(f[0])
	s, err2 := strconv.Atoi(f[1])
	return p, s, err1 == nil && err2 == nil
}

// crashPublisher publishes persistent messages in confirm mode and records
// which sequences the server confirmed.
type crashPublisher struct {
	id        int
	next      int
	confirmed map[int]bool // written by the session's waiter, read after wg.Wait
	// tx: publish in AMQP transactions instead of confirm mode; a message
	// counts as confirmed once its tx.commit-ok arrived.
	tx bool
}

type pendingConfirm struct {
	seq int
	dc  *amqp.DeferredConfirmation
}

func (p *crashPublisher) run(tg *target, stop <-chan struct{}) {
	gen := 0
	for {
		url, g, ok := tg.await(gen, stop)
		if !ok {
			return
		}
		gen = g
		p.session(url, stop)
	}
}

// session publishes on one connection until it drops or stop is closed.
// A message whose confirm did not arrive is simply not counted: it may or
// may not have reached the disk.
func (p *crashPublisher) session(url string, stop <-chan struct{}) {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	if p.tx {
		p.txSession(ch, stop)
		return
	}
	if err := ch.Confirm(false); err != nil {
		return
	}
	pending := make(chan pendingConfirm, crashWindow)
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		for pc := range pending {
			// A dropped connection resolves every pending confirmation
			// as not acked, so this never outlives the connection.
			<-pc.dc.Done()
			if pc.dc.Acked() {
				p.confirmed[pc.seq] = true
			}
		}
	}()
	defer func() {
		close(pending)
		// On a clean stop the live server confirms what is outstanding;
		// if it does not within the bound, closing the connection
		// resolves the rest as unconfirmed.
		select {
		case <-waited:
		case <-time.After(waitTimeout):
			_ = conn.Close()
			<-waited
		}
	}()
	for {
		select {
		case <-stop:
			return
		default:
		}
		seq := p.next
		// The sequence is spent whatever happens: after a failure the
		// publisher continues with the next one.
		p.next++
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", crashQueue, false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: crashBody(p.id, seq)})
		if err != nil || dc == nil {
			return
		}
		select {
		case pending <- pendingConfirm{seq, dc}:
		case <-stop:
			return // not waited for: it simply does not count as confirmed
		}
	}
}

// txSession publishes transactions of 1 to crashTxBatch persistent
// messages; tx.commit-ok confirms them all.
func (p *crashPublisher) txSession(ch *amqp.Channel, stop <-chan struct{}) {
	if err := ch.Tx(); err != nil {
		return
	}
	for batch := 1; ; batch = batch%crashTxBatch + 1 {
		select {
		case <-stop:
			return
		default:
		}
		first := p.next
		p.next += batch // spent whatever happens
		for seq := first; seq < p.next; seq++ {
			if err := ch.PublishWithContext(context.Background(), "", crashQueue, false, false,
				amqp.Publishing{DeliveryMode: amqp.Persistent, Body: crashBody(p.id, seq)}); err != nil {
				return
			}
		}
		if err := ch.TxCommit(); err != nil {
			return
		}
		for seq := first; seq < p.next; seq++ {
			p.confirmed[seq] = true
		}
	}
}

// crashTxBatch bounds the messages of one transaction of a tx publisher.
const crashTxBatch = 16

// delivery is what a consumer saw.
type crashDelivery struct {
	pub, seq    int
	redelivered bool
}

// crashConsumer consumes and acks during the crashes, so that acks in
// flight at a kill are lost and their messages come back (flagged
// redelivered).
type crashConsumer struct {
	queue string
	seen  []crashDelivery // written by run's goroutine, read after wg.Wait
	bad   []string
}

func (c *crashConsumer) run(tg *target, stop <-chan struct{}) {
	gen := 0
	for {
		url, g, ok := tg.await(gen, stop)
		if !ok {
			return
		}
		gen = g
		c.session(url, stop)
	}
}

func (c *crashConsumer) record(d amqp.Delivery) {
	pub, seq, ok := parseCrashBody(d.Body)
	if !ok {
		c.bad = append(c.bad, fmt.Sprintf("%.40q", d.Body))
		return
	}
	c.seen = append(c.seen, crashDelivery{pub, seq, d.Redelivered})
}

func (c *crashConsumer) session(url string, stop <-chan struct{}) {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	if err := ch.Qos(100, 0, false); err != nil {
		return
	}
	ds, err := ch.Consume(c.queue, "crash-consumer", false, false, false, false, nil)
	if err != nil {
		return
	}
	for {
		select {
		case d, ok := <-ds:
			if !ok {
				return
			}
			c.record(d)
			if d.Ack(false) != nil {
				return
			}
		case <-stop:
			// Leave nothing unacked behind: after cancel-ok no delivery
			// follows, so draining ds settles everything this consumer
			// was given and the final count is exact.
			if ch.Cancel("crash-consumer", false) != nil {
				return
			}
			for d := range ds {
				c.record(d)
				_ = d.Ack(false)
			}
			return
		}
	}
}

// startCrashRun begins a crash test (skipped with -short): it builds the
// binary, starts its first run on a fresh data directory with the given
// extra listeners, declares the durable queue and lets bind (may be nil)
// route to it; the logs are reported if the test fails.
func startCrashRun(t *testing.T, queue string, bind func(ch *amqp.Channel) error, listeners ...string) (bin, dataDir string, logs *procLog, proc *heraldProc) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary and crashes it repeatedly")
	}
	bin, dataDir, logs = buildHerald(t), t.TempDir(), &procLog{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("herald logs (warnings, errors, last lines):\n%s", logs.report())
		}
	})
	proc = startHerald(t, bin, dataDir, 1, logs, listeners...)
	conn, err := amqp.Dial("amqp://guest:guest@" + proc.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if bind != nil {
		if err := bind(ch); err != nil {
			t.Fatal(err)
		}
	}
	return bin, dataDir, logs, proc
}

// TestCrashRecovery publishes persistent messages from four publishers
// (three in confirm mode, one in transactions) while a consumer acks,
// kills the broker with SIGKILL at random moments five times, and checks
// that no confirmed (or committed) message is lost, that each publisher's
// messages are first delivered in order, and that a message delivered
// twice is flagged redelivered the second time.
func TestCrashRecovery(t *testing.T) {
	rng, testDeadline := crashRNG(t), time.Now().Add(60*time.Second)
	bin, dataDir, logs, proc := startCrashRun(t, crashQueue, nil)
	gen := 1
	url := "amqp://guest:guest@" + proc.addr + "/"

	tg := newTarget()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	pubs := make([]*crashPublisher, crashPublishers)
	for i := range pubs {
		// The last one publishes in transactions: tx.commit-ok is a
		// promise too.
		pubs[i] = &crashPublisher{id: i, confirmed: map[int]bool{}, tx: i == crashPublishers-1}
		wg.Add(1)
		go func() { defer wg.Done(); pubs[i].run(tg, stop) }()
	}
	cons := &crashConsumer{queue: crashQueue}
	wg.Add(1)
	go func() { defer wg.Done(); cons.run(tg, stop) }()
	stopped := false
	stopClients := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	t.Cleanup(stopClients) // on an early failure too, before TestMain counts goroutines
	tg.set(url)

	for kill := 1; kill <= crashKills; kill++ {
		d := time.Duration(200+rng.IntN(1301)) * time.Millisecond
		time.Sleep(d) // the random moment of the crash is the point of the test
		if time.Now().Add(10 * time.Second).After(testDeadline) {
			t.Fatalf("out of time after %d kills", kill-1)
		}
		proc.kill()
		t.Logf("kill %d after %v", kill, d)
		if !queueSurvives(t, bin, dataDir, &gen, logs, &proc, crashQueue) {
			return
		}
		tg.set("amqp://guest:guest@" + proc.addr + "/")
	}
	// Let the publishers and the consumer reconnect to the last run and make
	// progress on it, then stop them cleanly.
	time.Sleep(time.Duration(200+rng.IntN(300)) * time.Millisecond)
	stopClients()
	if len(cons.bad) > 0 {
		t.Errorf("consumer got %d malformed bodies, e.g. %s", len(cons.bad), cons.bad[0])
	}

	final := drainCrashQueue(t, "amqp://guest:guest@"+proc.addr+"/", crashQueue, testDeadline)
	checkCrashDeliveries(t, pubs, append(cons.seen, final...), len(final))
	logs.mu.Lock()
	t.Logf("messages recovered at each restart: %v", logs.recovered)
	logs.mu.Unlock()
}

// crashRNG is the random source of a crash test: seeded from the clock,
// or from HERALD_CRASH_SEED to replay a run.
func crashRNG(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HERALD_CRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("HERALD_CRASH_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (rerun with HERALD_CRASH_SEED=%d)", seed, seed)
	// ChaCha8 rather than PCG: PCG's first outputs for nearby seeds (two
	// runs a few seconds apart) are nearly equal, so every run crashed at
	// about the same moments.
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	return rand.New(rand.NewChaCha8(key))
}

// queueSurvives restarts herald on the same data directory (with the
// given extra listeners) and checks the durable queue is still declared;
// the caller then points the clients at *proc.
func queueSurvives(t *testing.T, bin, dataDir string, gen *int, logs *procLog, proc **heraldProc, queue string, listeners ...string) bool {
	t.Helper()
	*gen++
	p := startHerald(t, bin, dataDir, *gen, logs, listeners...)
	*proc = p
	conn, err := amqp.Dial("amqp://guest:guest@" + p.addr + "/")
	if err != nil {
		t.Fatalf("dial run %d: %v", *gen, err)
	}
	defer conn.Close()
	if !queueExists(t, conn, queue) {
		t.Errorf("run %d: the durable queue %q is gone", *gen, queue)
		return false
	}
	return true
}

// drainCrashQueue consumes everything left, with manual acks.
func drainCrashQueue(t *testing.T, url, queue string, deadline time.Time) []crashDelivery {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch := mustChannel(t, conn)
	// Every client is gone and nothing is unacked, so the ready count is
	// exactly what is left.
	left := queueDepth(t, ch, queue)
	if err := ch.Qos(500, 0, false); err != nil {
		t.Fatal(err)
	}
	ds := mustConsume(t, ch, queue, "drain", false)
	out := make([]crashDelivery, 0, left)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	for len(out) < left {
		select {
		case d, ok := <-ds:
			if !ok {
				t.Fatalf("delivery channel closed after %d of %d", len(out), left)
			}
			pub, seq, ok := parseCrashBody(d.Body)
			if !ok {
				t.Fatalf("malformed body %.40q", d.Body)
			}
			out = append(out, crashDelivery{pub, seq, d.Redelivered})
			if len(out)%250 == 0 || len(out) == left {
				if err := d.Ack(true); err != nil {
					t.Fatal(err)
				}
			}
		case <-ctx.Done():
			t.Fatalf("out of time draining: %d of %d", len(out), left)
		}
	}
	if err := ch.Cancel("drain", false); err != nil {
		t.Fatal(err)
	}
	if n := queueDepth(t, ch, queue); n != 0 {
		t.Errorf("%d messages left after draining %d", n, left)
	}
	return out
}

// checkCrashDeliveries: no confirmed message lost, per-publisher first
// deliveries in order, repeats only with redelivered set.
func checkCrashDeliveries(t *testing.T, pubs []*crashPublisher, seen []crashDelivery, drained int) {
	t.Helper()
	type key struct{ pub, seq int }
	first := map[key]bool{}
	last := make([]int, len(pubs))
	for i := range last {
		last[i] = -1
	}
	dups, unflagged, unconfirmed, reported := 0, 0, 0, 0
	for _, d := range seen {
		if d.pub < 0 || d.pub >= len(pubs) || d.seq >= pubs[d.pub].next {
			t.Errorf("delivery of a message never published: publisher %d seq %d", d.pub, d.seq)
			continue
		}
		k := key{d.pub, d.seq}
		if first[k] {
			dups++
			if !d.redelivered {
				unflagged++
				if reported < 10 {
					reported++
					t.Errorf("publisher %d seq %d delivered again without redelivered", d.pub, d.seq)
				}
			}
			continue
		}
		first[k] = true
		if !pubs[d.pub].confirmed[d.seq] {
			unconfirmed++
		}
		if d.seq <= last[d.pub] && reported < 10 {
			reported++
			t.Errorf("publisher %d: seq %d first delivered after seq %d", d.pub, d.seq, last[d.pub])
		}
		last[d.pub] = max(last[d.pub], d.seq)
	}
	confirmed, lost := 0, 0
	for _, p := range pubs {
		for seq := range p.confirmed {
			confirmed++
			if !first[key{p.id, seq}] {
				lost++
				if lost <= 10 {
					t.Errorf("confirmed message lost: publisher %d seq %d", p.id, seq)
				}
			}
		}
	}
	if confirmed == 0 {
		t.Error("no message was confirmed: the test proved nothing")
	}
	published := 0
	for _, p := range pubs {
		published += p.next
	}
	t.Logf("published %d, confirmed %d, received %d distinct (%d unconfirmed but kept), %d duplicates (%d not flagged redelivered), %d left for the final drain, %d lost",
		published, confirmed, len(first), unconfirmed, dups, unflagged, drained, lost)
}
