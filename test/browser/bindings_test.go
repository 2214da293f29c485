package browser

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserUnbind: the queue page and the exchange page delete a
// binding (the "Unbind" button of its row).
func TestBrowserUnbind(t *testing.T) {
	chromiumPath(t)
	h := startHerald(t)
	_, ch := h.dial(t)
	b := startBrowser(t)
	const queue = "unbind-me"
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"a.b", "c d"} {
		if err := ch.QueueBind(queue, key, "amq.topic", false, nil); err != nil {
			t.Fatal(err)
		}
	}
	topic, err := h.srv.Broker().VHost("/").Exchange("amq.topic")
	if err != nil {
		t.Fatal(err)
	}

	b.do("open the console", chromedp.Navigate(h.httpURL+"/"), chromedp.WaitVisible(chromedp.ID("user")))
	b.do("log in",
		chromedp.SendKeys(chromedp.ID("user"), "guest"),
		chromedp.SendKeys(chromedp.ID("pass"), "guest"),
		chromedp.Click(chromedp.CSS(`.login button[type=submit]`)))
	b.waitFor("the console shell", `document.querySelector("header.topbar") !== null`, consoleDiag, 10*time.Second)

	// The queue page: unbind "a.b".
	const unbindRow = `[...document.querySelectorAll("main tr")].find(r => r.querySelector("code")?.textContent === %q)?.querySelector("button")`
	b.do("open the queue", chromedp.Navigate(h.httpURL+"/#/queues/%2F/"+queue))
	b.waitFor("the binding a.b", `(`+fmt.Sprintf(unbindRow, "a.b")+`) != null`, consoleDiag, 10*time.Second)
	b.do("unbind a.b", chromedp.Click(chromedp.JSPath(fmt.Sprintf(unbindRow, "a.b"))))
	b.waitFor("the unbind confirmation", flashed("Unbound"), consoleDiag, 10*time.Second)
	waitBindings(t, func() int { return len(topic.Bindings()) }, 1)

	// The exchange page: unbind "c d" (its properties key is "c+d").
	b.do("open the exchange", chromedp.Navigate(h.httpURL+"/#/exchanges/%2F/amq.topic"))
	b.waitFor("the binding c d", `(`+fmt.Sprintf(unbindRow, "c d")+`) != null`, consoleDiag, 10*time.Second)
	b.do("unbind c d", chromedp.Click(chromedp.JSPath(fmt.Sprintf(unbindRow, "c d"))))
	b.waitFor("the unbind confirmation", flashed("Unbound"), consoleDiag, 10*time.Second)
	waitBindings(t, func() int { return len(topic.Bindings()) }, 0)
}

func waitBindings(t *testing.T, n func() int, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d bindings, want %d", n(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
