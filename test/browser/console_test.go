package browser

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// consoleDiag describes the console page for failure messages.
const consoleDiag = `JSON.stringify({hash: location.hash, text: document.body.innerText.slice(0, 3000)})`

// queueCells is a JS expression: the text of the cells of the queues-table
// row of the queue named by the JS string literal q, or null.
func queueCells(q string) string {
	return `(() => { const a = [...document.querySelectorAll("main table a")].find(a => a.textContent === ` + q + `);
	  return a ? [...a.closest("tr").cells].map(c => c.textContent) : null; })()`
}

// queueStat is a JS expression: the figure labelled label ("Ready") on a
// queue's page.
func queueStat(label string) string {
	return `(() => { const l = [...document.querySelectorAll("main .stat .l")].find(l => l.textContent === ` + strconv.Quote(label) + `);
	  return l ? l.previousElementSibling.textContent : null; })()`
}

// flashed is a JS condition: a flash message containing text is shown.
func flashed(text string) string {
	return `[...document.querySelectorAll(".flash div")].some(d => d.textContent.includes(` + strconv.Quote(text) + `))`
}

// TestBrowserConsole logs in to the web console through its form, finds a
// queue made over AMQP with its depth, publishes to it, gets the messages
// back, purges it, and checks that the overview's rate chart is drawn.
func TestBrowserConsole(t *testing.T) {
	chromiumPath(t)
	begin := time.Now()
	h := startHerald(t)
	_, ch := h.dial(t)
	b := startBrowser(t)

	const queue = "browser-console"
	qlit := strconv.Quote(queue)
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 1; i <= 3; i++ {
		if err := ch.PublishWithContext(ctx, "", queue, false, false,
			amqp.Publishing{ContentType: "text/plain", Body: fmt.Appendf(nil, "amqp message %d", i)}); err != nil {
			t.Fatal(err)
		}
	}

	// Log in: a wrong password is refused on the form, guest/guest works.
	b.do("open the console", chromedp.Navigate(h.httpURL+"/"), chromedp.WaitVisible(chromedp.ID("user")))
	b.do("log in with a wrong password",
		chromedp.SendKeys(chromedp.ID("user"), "guest"),
		chromedp.SendKeys(chromedp.ID("pass"), "wrong"),
		chromedp.Click(chromedp.CSS(`.login button[type=submit]`)))
	b.waitFor("the login error", `document.querySelector(".login .error-text")?.textContent.includes("Login failed")`, consoleDiag, 10*time.Second)
	b.do("log in",
		chromedp.Evaluate[chromedp.Void](`document.getElementById("pass").value = ""`),
		chromedp.SendKeys(chromedp.ID("pass"), "guest"),
		chromedp.Click(chromedp.CSS(`.login button[type=submit]`)))
	b.waitFor("the console shell", `document.querySelector("header.topbar") !== null && document.querySelector(".session")?.textContent.includes("guest")`, consoleDiag, 10*time.Second)
	loggedIn := time.Since(begin)

	// The queue and its depth in the queues table (columns: virtual host,
	// name, features, state, ready, unacked, total, ...).
	b.do("open Queues", chromedp.Click(chromedp.CSS(`nav a[href="#/queues"]`)))
	b.waitFor("the queue with 3 ready messages in the table",
		`(c => c !== null && c[0] === "/" && c[4] === "3" && c[6] === "3")(`+queueCells(qlit)+`)`, consoleDiag, 10*time.Second)

	// Its page.
	b.do("open the queue", chromedp.Click(chromedp.CSS(`main table a[href="#/queues/%2F/`+queue+`"]`)))
	b.waitFor("the queue page with its depth", `document.querySelector("main h1")?.textContent.includes(`+qlit+`) && `+queueStat("Ready")+` === "3"`,
		consoleDiag, 10*time.Second)

	// Publish from the console (default exchange, the queue's name as key).
	const payload = "published from the console"
	b.do("publish from the console",
		chromedp.Click(chromedp.CSS(`details:has(textarea[name=payload]) > summary`)),
		chromedp.WaitVisible(chromedp.CSS(`textarea[name=payload]`)),
		chromedp.SendKeys(chromedp.CSS(`textarea[name=payload]`), payload),
		chromedp.Click(chromedp.CSS(`form:has(textarea[name=payload]) button[type=submit]`)))
	b.waitFor("the publish confirmation", flashed("Message published."), consoleDiag, 10*time.Second)
	b.waitFor("the depth to reach 4", queueStat("Ready")+` === "4"`, consoleDiag, 10*time.Second)

	// Get the 4 messages back (nack, requeue: they stay in the queue).
	b.do("get messages",
		chromedp.SetValue(chromedp.CSS(`select[name=ackmode]`), "ack_requeue_true"),
		chromedp.SetValue(chromedp.CSS(`input[name=count]`), "4"),
		chromedp.Click(chromedp.CSS(`form:has(select[name=ackmode]) button[type=submit]`)))
	want := `["amqp message 1","amqp message 2","amqp message 3",` + strconv.Quote(payload) + `]`
	b.waitFor("the 4 messages in the console",
		`JSON.stringify([...document.querySelectorAll("main .message pre")].map(p => p.textContent)) === `+strconv.Quote(want),
		consoleDiag, 10*time.Second)
	b.screenshot("console-queue.png")

	// Purge (the console asks confirm(); the browser helper accepts it).
	b.do("purge", chromedp.Click(chromedp.JSPath(`[...document.querySelectorAll("main button")].find(b => b.textContent === "Purge messages")`)))
	b.waitFor("the purge confirmation", flashed("purged"), consoleDiag, 10*time.Second)
	b.waitFor("the depth to reach 0", queueStat("Ready")+` === "0"`, consoleDiag, 10*time.Second)
	if q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil); err != nil || q.Messages != 0 {
		t.Fatalf("after the console's purge AMQP sees %d messages (err %v)", q.Messages, err)
	}

	// The overview's message-rate chart is drawn: painted pixels, among
	// them the colours of its data lines (--publish, --deliver, --ack; the
	// grid and labels are grey). While the history spans a few seconds of
	// the 5-minute window the lines overlap at "now", so any of the three
	// counts. A line needs two samples; the console polls every 2s.
	b.do("open Overview", chromedp.Click(chromedp.CSS(`nav a[href="#/"]`)))
	const chartDrawn = `(() => {
	  const c = document.querySelector("main .chart canvas");
	  if (!c || !c.width || !c.height) return false;
	  const css = getComputedStyle(document.documentElement);
	  const colors = ["--publish", "--deliver", "--ack"].map(v => {
	    const m = css.getPropertyValue(v).trim().match(/^#(..)(..)(..)$/);
	    return m ? m.slice(1).map(x => parseInt(x, 16)) : null;
	  }).filter(Boolean);
	  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
	  let painted = 0, line = 0;
	  for (let i = 0; i < d.length; i += 4) {
	    if (d[i + 3] === 0) continue;
	    painted++;
	    if (d[i + 3] > 200 && colors.some(k => Math.abs(d[i] - k[0]) < 24 && Math.abs(d[i + 1] - k[1]) < 24 && Math.abs(d[i + 2] - k[2]) < 24)) line++;
	  }
	  window.chartPixels = {painted, line, colors: colors.length, width: c.width, height: c.height, dataURL: c.toDataURL().length};
	  return colors.length === 3 && painted > 500 && line > 20;
	})()`
	b.waitFor("the rate chart to be drawn", chartDrawn, `JSON.stringify(window.chartPixels)`, 15*time.Second)
	t.Logf("rate chart: %s", eval[string](b, "chart pixels", `JSON.stringify(window.chartPixels)`))
	b.screenshot("console.png")
	t.Logf("timings: logged in %v after start; total %v", loggedIn.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
}
