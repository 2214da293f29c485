package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The stream mode of the crash test: publishers with confirms and a named
// consumer acking as it goes, herald killed with SIGKILL at random
// moments. After each restart the named consumer resumes no earlier than
// a position the management API reported as stored before the kill and
// no later than the offset after its last ack; at the end every confirmed
// message is in the stream, once, at consecutive offsets.

const (
	crashStream       = "crash-stream"
	crashStreamKills  = 4
	crashStreamWindow = 128
)

type streamCrashState struct {
	mu        sync.Mutex
	confirmed map[string]bool
	lastAcked int64 // highest offset the consumer acked (-1: none)
	firsts    []int64
}

// streamPublisher publishes "p:seq" bodies in confirm mode until stop or
// the connection drops.
func streamPublisher(url string, id int, next *int, st *streamCrashState, stop <-chan struct{}) {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil || ch.Confirm(false) != nil {
		return
	}
	type pending struct {
		body string
		dc   *amqp.DeferredConfirmation
	}
	window := make(chan pending, crashStreamWindow)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range window {
			<-p.dc.Done()
			if p.dc.Acked() {
				st.mu.Lock()
				st.confirmed[p.body] = true
				st.mu.Unlock()
			}
		}
	}()
	defer func() { close(window); _ = conn.Close(); <-done }()
	for {
		select {
		case <-stop:
			return
		default:
		}
		body := fmt.Sprintf("%d:%d", id, *next)
		*next++
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", crashStream, false, false, amqp.Publishing{Body: []byte(body)})
		if err != nil || dc == nil {
			return
		}
		window <- pending{body, dc}
	}
}

// streamNamedConsumer consumes as "crash-c" (resuming its stored position)
// and acks each delivery; it records the first offset of the session.
func streamNamedConsumer(url string, st *streamCrashState, stop <-chan struct{}) {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil || ch.Qos(50, 0, false) != nil {
		return
	}
	ds, err := ch.Consume(crashStream, "", false, false, false, false, amqp.Table{"x-stream-consumer": "crash-c"})
	if err != nil {
		return
	}
	first := true
	for {
		select {
		case <-stop:
			return
		case d, ok := <-ds:
			if !ok {
				return
			}
			off, _ := d.Headers["x-stream-offset"].(int64)
			if first {
				st.mu.Lock()
				st.firsts = append(st.firsts, off)
				st.mu.Unlock()
				first = false
			}
			if d.Ack(false) != nil {
				return
			}
			st.mu.Lock()
			st.lastAcked = max(st.lastAcked, off)
			st.mu.Unlock()
		}
	}
}

// storedPosition asks the management API for crash-c's stored position.
func storedPosition(t *testing.T, httpAddr string) (uint64, bool) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/api/streams/%2F/"+crashStream+"/consumers", nil)
	req.SetBasicAuth("guest", "guest")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cs []struct {
		Name   string `json:"name"`
		Offset uint64 `json:"offset"`
		Stored bool   `json:"stored"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&cs); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Name == "crash-c" && c.Stored {
			return c.Offset, true
		}
	}
	return 0, false
}

func TestCrashStream(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and crashes it repeatedly")
	}
	rng := crashRNG(t)
	bin, dataDir, logs := buildHerald(t), t.TempDir(), &procLog{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("herald logs (warnings, errors, last lines):\n%s", logs.report())
		}
	})
	proc := startHerald(t, bin, dataDir, 1, logs, "http")
	url := func() string { return "amqp://guest:guest@" + proc.addr + "/" }
	conn, err := amqp.Dial(url())
	must(t, err)
	ch := mustChannel(t, conn)
	if _, err := ch.QueueDeclare(crashStream, true, false, false, false, amqp.Table{"x-queue-type": "stream", "x-stream-max-segment-size-bytes": 64 << 10}); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()

	st := &streamCrashState{confirmed: map[string]bool{}, lastAcked: -1}
	nexts := make([]int, 2)
	for kill := 1; kill <= crashStreamKills; kill++ {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := range nexts {
			wg.Add(1)
			go func() { defer wg.Done(); streamPublisher(url(), i, &nexts[i], st, stop) }()
		}
		wg.Add(1)
		go func() { defer wg.Done(); streamNamedConsumer(url(), st, stop) }()
		// A position the server reports is durable: the resumed consumer
		// must not start before it.
		var floor uint64
		eventually(t, "a stored position", func() bool {
			var ok bool
			floor, ok = storedPosition(t, proc.http)
			return ok && floor > 0
		})
		d := time.Duration(100+rng.IntN(500)) * time.Millisecond
		time.Sleep(d) // the random moment of the crash is the point of the test
		proc.kill()
		close(stop)
		wg.Wait()
		st.mu.Lock()
		ceiling := st.lastAcked + 1
		st.mu.Unlock()
		t.Logf("kill %d after %v: stored position >= %d, last ack %d", kill, d, floor, ceiling-1)

		proc = startHerald(t, bin, dataDir, kill+1, logs, "http")
		pos, ok := storedPosition(t, proc.http)
		if !ok || pos < floor || int64(pos) > ceiling {
			t.Fatalf("after kill %d the stored position is %d (%v), want %d..%d", kill, pos, ok, floor, ceiling)
		}
	}
	// Read the whole stream: every confirmed message, once, offsets 0..n-1.
	conn, err = amqp.Dial(url())
	must(t, err)
	defer conn.Close()
	c := mustChannel(t, conn)
	q, err := c.QueueDeclarePassive(crashStream, true, false, false, false, amqp.Table{"x-queue-type": "stream"})
	must(t, err)
	must(t, c.Qos(1000, 0, false))
	ds, err := c.Consume(crashStream, "", false, false, false, false, amqp.Table{"x-stream-offset": "first"})
	must(t, err)
	seen := map[string]bool{}
	for i := 0; i < q.Messages; i++ {
		d := recv(t, ds)
		if off := d.Headers["x-stream-offset"].(int64); off != int64(i) {
			t.Fatalf("offset %d at position %d", off, i)
		}
		if seen[string(d.Body)] {
			t.Fatalf("%s is in the stream twice", d.Body)
		}
		seen[string(d.Body)] = true
		must(t, d.Ack(false))
	}
	lost := 0
	for b := range st.confirmed {
		if !seen[b] {
			lost++
			if lost < 5 {
				t.Errorf("confirmed %s is missing", b)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d confirmed messages lost", lost, len(st.confirmed))
	}
	t.Logf("%d messages in the stream, %d confirmed, named consumer resumed at %v", q.Messages, len(st.confirmed), st.firsts)
	proc.kill()
}
