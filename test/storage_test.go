package test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
)

// These tests damage the message log on disk the way a crash or a bad disk
// does, so they read its documented format (internal/store/doc.go) here
// rather than through the store's own decoder: a test that shared the
// decoder's mistakes would prove nothing.

const (
	segHeaderSize   = 32
	frameHeaderSize = 9 // length u32, crc u32, kind u8
	kindMessage     = 1
	kindEnqueue     = 2
	kindCommit      = 0x7f
)

type segFrame struct {
	off, size int64
	kind      byte
	msgID     uint64 // Message, Enqueue
	body      []byte // Message
}

// readFrames splits an undamaged segment into its frames.
func readFrames(t testing.TB, data []byte) []segFrame {
	t.Helper()
	var out []segFrame
	for pos := int64(segHeaderSize); pos < int64(len(data)); {
		if int64(len(data))-pos < frameHeaderSize {
			t.Fatalf("short frame header at %d", pos)
		}
		n := int64(binary.LittleEndian.Uint32(data[pos:]))
		end := pos + frameHeaderSize + n
		if end > int64(len(data)) {
			t.Fatalf("frame at %d overruns the segment", pos)
		}
		f := segFrame{off: pos, size: end - pos, kind: data[pos+8]}
		p := data[pos+frameHeaderSize : end]
		switch f.kind {
		case kindMessage:
			f.msgID = binary.LittleEndian.Uint64(p)
			metaLen := int(binary.LittleEndian.Uint32(p[8:]))
			f.body = p[12+metaLen:]
		case kindEnqueue:
			f.msgID = binary.LittleEndian.Uint64(p[8:])
		}
		out = append(out, f)
		pos = end
	}
	return out
}

func segments(t testing.TB, dataDir string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dataDir, "log", "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(segs)
	return segs
}

// capturedLog collects a server's JSON log lines.
type capturedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *capturedLog) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *capturedLog) records() []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(c.buf.Bytes(), []byte("\n")) {
		var r map[string]any
		if json.Unmarshal(line, &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

func (c *capturedLog) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// startLogged runs an in-process server on dir that logs into logs.
func startLogged(t testing.TB, dir string, logs *capturedLog, opts ...serverOption) (*app.App, string) {
	t.Helper()
	cfg := app.Config{AMQPAddr: "127.0.0.1:0", DataDir: dir,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := app.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	return srv, fmt.Sprintf("amqp://guest:guest@%s/", srv.AMQPAddr())
}

func storedBody(i, size int) []byte {
	b := bytes.Repeat([]byte{'.'}, size)
	copy(b, fmt.Sprintf("msg-%05d", i))
	return b
}

// publishDurable declares queue durable and publishes n persistent
// messages of size bytes, waiting for the confirms of every group of them
// before the next: a group is at most one commit batch, and a batch is
// never split across segments, so this is what makes small segments.
func publishDurable(t testing.TB, url, queue string, n, size, group int) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch := mustChannel(t, conn)
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n))
	await := func(k int) {
		for range k {
			select {
			case c := <-confirms:
				if !c.Ack {
					t.Fatalf("nack for %d", c.DeliveryTag)
				}
			case <-timeAfterWait():
				t.Fatal("missing confirm")
			}
		}
	}
	for i := range n {
		mustPublish(t, ch, "", queue, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: storedBody(i, size)})
		if (i+1)%group == 0 || i == n-1 {
			await(i%group + 1)
		}
	}
}

// recoverBodies restarts a server on dir, takes every message in queue and
// shuts it down again.
func recoverBodies(t testing.TB, dir, queue string, logs *capturedLog) []string {
	t.Helper()
	srv, url := startLogged(t, dir, logs)
	defer stopServer(t, srv)
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch := mustChannel(t, conn)
	var out []string
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, strings.TrimRight(string(d.Body), "."))
	}
}

func bodyNames(from, to int, skip ...int) []string {
	var out []string
	for i := from; i < to; i++ {
		if !slices.Contains(skip, i) {
			out = append(out, fmt.Sprintf("msg-%05d", i))
		}
	}
	return out
}

// TestTornTailAndCorruptMiddle damages the log of a cleanly stopped
// server: a torn tail is cut and everything before it recovered; a
// corrupt record in the middle is reported with its segment and offset,
// and only its message is missing.
func TestTornTailAndCorruptMiddle(t *testing.T) {
	t.Parallel()
	const n = 20
	const queue = "damaged"
	prepare := func(t *testing.T) (dir, seg string, data []byte) {
		dir = t.TempDir()
		logs := &capturedLog{}
		srv, url := startLogged(t, dir, logs)
		publishDurable(t, url, queue, n, 200, 1)
		stopServer(t, srv)
		segs := segments(t, dir)
		if len(segs) == 0 {
			t.Fatal("no segment files")
		}
		seg = segs[len(segs)-1]
		data, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		return dir, seg, data
	}
	write := func(t *testing.T, seg string, data []byte) {
		if err := os.WriteFile(seg, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	expectLogged := func(t *testing.T, logs *capturedLog, match func(map[string]any) bool, what string) {
		for _, r := range logs.records() {
			if match(r) {
				return
			}
		}
		t.Errorf("the server did not log %s; its log:\n%s", what, logs)
	}

	t.Run("garbage tail", func(t *testing.T) {
		dir, seg, data := prepare(t)
		write(t, seg, append(data, "\xff\x00\x00\x00garbage"...))
		logs := &capturedLog{}
		if got, want := recoverBodies(t, dir, queue, logs), bodyNames(0, n); !slices.Equal(got, want) {
			t.Errorf("recovered %v, want %v", got, want)
		}
		expectLogged(t, logs, func(r map[string]any) bool {
			return strings.Contains(fmt.Sprint(r["msg"]), "torn tail") && r["segment"] == filepath.Base(seg)
		}, "the torn tail it cut")
	})

	t.Run("truncated last record", func(t *testing.T) {
		dir, seg, data := prepare(t)
		frames := readFrames(t, data)
		// The final batch runs from after the previous commit marker to
		// the last one; cutting into it is an interrupted write, so the
		// whole batch (never acknowledged) goes, and nothing before it.
		if len(frames) < 2 || frames[len(frames)-1].kind != kindCommit {
			t.Fatalf("segment does not end with a commit marker: %+v", frames)
		}
		start := len(frames) - 2
		for start > 0 && frames[start-1].kind != kindCommit {
			start--
		}
		bodies := map[uint64]string{}
		for _, s := range segments(t, dir) {
			d, err := os.ReadFile(s)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range readFrames(t, d) {
				if f.kind == kindMessage {
					bodies[f.msgID] = strings.TrimRight(string(f.body), ".")
				}
			}
		}
		var lost []int
		for _, f := range frames[start : len(frames)-1] {
			if f.kind == kindEnqueue {
				var i int
				if _, err := fmt.Sscanf(bodies[f.msgID], "msg-%d", &i); err != nil {
					t.Fatalf("enqueue of unknown message %d", f.msgID)
				}
				lost = append(lost, i)
			}
		}
		if len(lost) == 0 {
			t.Fatal("the final batch enqueues nothing: cutting it proves nothing")
		}
		last := frames[len(frames)-2]
		write(t, seg, data[:last.off+last.size/2])
		logs := &capturedLog{}
		if got, want := recoverBodies(t, dir, queue, logs), bodyNames(0, n, lost...); !slices.Equal(got, want) {
			t.Errorf("recovered %v, want %v (lost with the final batch: %v)", got, want, lost)
		}
		expectLogged(t, logs, func(r map[string]any) bool {
			return strings.Contains(fmt.Sprint(r["msg"]), "torn tail") && r["segment"] == filepath.Base(seg)
		}, "the torn tail it cut")
	})

	t.Run("corrupt middle", func(t *testing.T) {
		dir, seg, data := prepare(t)
		const victim = n / 2
		var frame *segFrame
		for _, f := range readFrames(t, data) {
			if f.kind == kindMessage && strings.HasPrefix(string(f.body), fmt.Sprintf("msg-%05d", victim)) {
				frame = &f
			}
		}
		if frame == nil {
			t.Fatalf("message %d not found in %s", victim, seg)
		}
		data[frame.off+frame.size-3] ^= 0x20 // inside the body: the CRC no longer matches
		write(t, seg, data)
		logs := &capturedLog{}
		if got, want := recoverBodies(t, dir, queue, logs), bodyNames(0, n, victim); !slices.Equal(got, want) {
			t.Errorf("recovered %v, want %v", got, want)
		}
		expectLogged(t, logs, func(r map[string]any) bool {
			off, _ := r["offset"].(float64)
			return strings.Contains(fmt.Sprint(r["msg"]), "corrupt") && r["segment"] == filepath.Base(seg) && int64(off) == frame.off
		}, fmt.Sprintf("the corrupt record at %s offset %d", filepath.Base(seg), frame.off))
	})
}

func dirSize(t testing.TB, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		// The log deletes segments while we walk: a file gone since the
		// directory was listed simply holds no bytes any more.
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// TestDataDirShrinksAfterDrain: once every persistent message is acked the
// log gives its space back (segments with nothing live are deleted), and a
// restart does not resurrect anything.
func TestDataDirShrinksAfterDrain(t *testing.T) {
	t.Parallel()
	const (
		n       = 400
		size    = 4 << 10
		segSize = 64 << 10
		queue   = "shrink"
	)
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	logs := &capturedLog{}
	srv, url := startLogged(t, dir, logs, func(c *app.Config) { c.StoreSegmentSize = segSize })
	publishDurable(t, url, queue, n, size, 8)
	peak := dirSize(t, logDir)
	if segs := len(segments(t, dir)); segs < 10 || peak < n*size {
		t.Fatalf("%d segments, %d bytes after publishing %d bytes", segs, peak, n*size)
	}

	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	ch := mustChannel(t, conn)
	if err := ch.Qos(50, 0, false); err != nil {
		t.Fatal(err)
	}
	ds := mustConsume(t, ch, queue, "", false)
	for range n {
		if err := recv(t, ds).Ack(false); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.Close() // waits for close-ok: every ack has been processed

	var now int64
	deadline := time.Now().Add(10 * time.Second)
	for now = dirSize(t, logDir); now >= peak/10; now = dirSize(t, logDir) {
		if time.Now().After(deadline) {
			t.Fatalf("log still %d bytes (%d segments) after draining, peak %d", now, len(segments(t, dir)), peak)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("log: peak %d bytes, %d after draining (%d segments)", peak, now, len(segments(t, dir)))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := recoverBodies(t, dir, queue, logs); len(got) != 0 {
		t.Errorf("%d acked messages came back after a restart", len(got))
	}
}
