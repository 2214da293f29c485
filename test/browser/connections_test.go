package browser

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// TestBrowserConnectionName: the connections page shows the name an
// AMQP client gave itself (connection_name) and filters on it.
func TestBrowserConnectionName(t *testing.T) {
	chromiumPath(t)
	h := startHerald(t)
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("billing-worker-7")
	conn, err := amqp.DialConfig(h.amqpURL, amqp.Config{Properties: props})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b := startBrowser(t)
	b.do("open the console", chromedp.Navigate(h.httpURL+"/"), chromedp.WaitVisible(chromedp.ID("user")))
	b.do("log in",
		chromedp.SendKeys(chromedp.ID("user"), "guest"),
		chromedp.SendKeys(chromedp.ID("pass"), "guest"),
		chromedp.Click(chromedp.CSS(`.login button[type=submit]`)))
	b.waitFor("the console shell", `document.querySelector("header.topbar") !== null`, consoleDiag, 10*time.Second)
	b.do("open Connections", chromedp.Navigate(h.httpURL+"/#/connections"))
	b.waitFor("the client's name in the table",
		`[...document.querySelectorAll("main td")].some(td => td.textContent === "billing-worker-7")`, consoleDiag, 10*time.Second)
	// The filter matches the client's name (the connection's own name is
	// "127.0.0.1:port -> 127.0.0.1:port").
	b.do("filter on it", chromedp.SendKeys(chromedp.CSS(`main input`), "billing"))
	b.waitFor("the connection still listed",
		`document.querySelector("main input").value === "billing" && document.body.innerText.includes("1 of 1 connections")`, consoleDiag, 10*time.Second)
	b.do("filter on another", chromedp.SendKeys(chromedp.CSS(`main input`), "x"))
	b.waitFor("no connection listed", `document.body.innerText.includes("0 of 1 connections")`, consoleDiag, 10*time.Second)
}
