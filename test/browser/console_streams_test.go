package browser

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// TestBrowserConsoleStreams: the console's Streams page lists a stream
// with its offsets and size; the stream's page shows the consumer reading
// it (offset, lag, unacked) and a named consumer's stored position, which
// the console moves.
func TestBrowserConsoleStreams(t *testing.T) {
	chromiumPath(t)
	h := startHerald(t)
	_, ch := h.dial(t)
	const stream = "browser-events"
	if _, err := ch.QueueDeclare(stream, true, false, false, false, amqp.Table{"x-queue-type": "stream"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 8 {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", stream, false, false, amqp.Publishing{Body: fmt.Appendf(nil, "event %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := dc.WaitContext(ctx); !ok || err != nil {
			t.Fatalf("confirm %d: %v %v", i, ok, err)
		}
	}
	// A named consumer reads 5 (prefetch) and acks the first 3: stored
	// position 3; the credit back brings the other 3, so it has read to
	// the end (offset 8, lag 0) with 5 unacked.
	_, cch := h.dial(t)
	if err := cch.Qos(5, 0, false); err != nil {
		t.Fatal(err)
	}
	ds, err := cch.Consume(stream, "billing-1", false, false, false, false, amqp.Table{"x-stream-offset": "first", "x-stream-consumer": "billing"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		select {
		case d := <-ds:
			if i == 2 {
				if err := d.Ack(true); err != nil {
					t.Fatal(err)
				}
			}
		case <-ctx.Done():
			t.Fatal("no delivery")
		}
	}

	b := startBrowser(t)
	b.do("open the console", chromedp.Navigate(h.httpURL+"/"), chromedp.WaitVisible(chromedp.ID("user")))
	b.do("log in", chromedp.SendKeys(chromedp.ID("user"), "guest"), chromedp.SendKeys(chromedp.ID("pass"), "guest"),
		chromedp.Click(chromedp.CSS(`.login button[type=submit]`)))
	b.do("open Streams", chromedp.Click(chromedp.CSS(`nav a[href="#/streams"]`)))
	// Columns: vhost, name, first, last, messages, size, segments, consumers.
	b.waitFor("the stream with offsets 0 to 7", `(c => c !== null && c[2] === "0" && c[3] === "7" && c[4] === "8" && c[5].endsWith("B") && c[6] === "1" && c[7] === "1")(`+queueCells(`"`+stream+`"`)+`)`,
		consoleDiag, 10*time.Second)
	b.do("open the stream", chromedp.Click(chromedp.CSS(`main table a[href="#/streams/%2F/`+stream+`"]`)))
	rowOf := func(table int, first string) string {
		return fmt.Sprintf(`(() => { const t = document.querySelectorAll("main table")[%d]; const r = t && [...t.rows].find(r => r.cells[0]?.textContent.startsWith(%q));
		  return r ? [...r.cells].map(c => c.textContent) : null; })()`, table, first)
	}
	b.waitFor("the reader at offset 8, 0 behind, 5 unacked", `(c => c !== null && c[1] === "billing-1" && c[2] === "8" && c[3] === "0" && c[4] === "5")(`+rowOf(0, "billing")+`)`,
		consoleDiag, 10*time.Second)
	b.waitFor("billing's stored position 3", `(c => c !== null && c[1] === "3" && c[2] === "billing-1")(`+rowOf(1, "billing")+`)`, consoleDiag, 10*time.Second)
	b.screenshot("console-stream.png")

	b.do("set billing's position to 1",
		chromedp.SetValue(chromedp.CSS(`main input[name=offset]`), "1"),
		chromedp.Click(chromedp.JSPath(`[...document.querySelectorAll("main button")].find(b => b.textContent === "Set offset")`)))
	b.waitFor("the confirmation", flashed("set to 1"), consoleDiag, 10*time.Second)
	b.waitFor("billing's stored position 1", `(c => c !== null && c[1] === "1")(`+rowOf(1, "billing")+`)`, consoleDiag, 10*time.Second)
}
