package browser

import (
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// topBarDiag measures the console's top bar: page width against the
// window, and the right edge of the nav and of the Log out button.
const topBarDiag = `JSON.stringify({inner: innerWidth, scroll: document.documentElement.scrollWidth,
  nav: [...document.querySelectorAll("header.topbar nav a")].map(a => [a.textContent, Math.round(a.getBoundingClientRect().right)]),
  logout: Math.round(document.querySelector(".session button")?.getBoundingClientRect().right || -1),
  user: Math.round(document.querySelector(".session > span:nth-child(2)")?.getBoundingClientRect().right || -1),
  bar: Math.round(document.querySelector("header.topbar").getBoundingClientRect().height)})`

// TestBrowserConsoleTopBarFits1280 logs in as an administrator (who sees
// every nav entry) in a 1280-px window: the page must not scroll sideways
// and the user name and "Log out" must be inside the window, the nav
// (the Admin menu too) left of the session's status. It also opens
// the presence page with a browser in a presence set.
func TestBrowserConsoleTopBarFits1280(t *testing.T) {
	h, pages := startRealtime(t)
	b := startBrowser(t)
	ann := b.newTab()
	ann.openAs(h, pages, "ann")
	eval[bool](ann, "ann joins room1", `h.subscribe({exchange: "amq.topic", key: "room1", presence: true}, () => {}).then(() => true)`)

	b.do("open the console", chromedp.Navigate(h.httpURL+"/"), chromedp.WaitVisible(chromedp.ID("user")))
	b.do("log in", chromedp.SendKeys(chromedp.ID("user"), "guest"), chromedp.SendKeys(chromedp.ID("pass"), "guest"),
		chromedp.Click(chromedp.CSS(`.login button[type=submit]`)))
	b.waitFor("the administrator's nav", `document.querySelector('nav a[href="#/definitions"]') !== null`, topBarDiag, 10*time.Second)
	b.screenshot("console-topbar-1280.png")
	b.waitFor("the top bar to fit 1280 px",
		`innerWidth === 1280 && document.documentElement.scrollWidth <= innerWidth &&
		 [...document.querySelectorAll("header.topbar nav a, .session button, .session > span")].every(e => e.getBoundingClientRect().right <= innerWidth) &&
		 [...document.querySelectorAll("header.topbar nav > a, header.topbar nav summary")].every(e => e.getBoundingClientRect().right <= document.querySelector(".session").getBoundingClientRect().left)`,
		topBarDiag, 5*time.Second)

	// The administration pages are in the Admin menu, inside the window.
	b.do("open the Admin menu", chromedp.Click(chromedp.CSS(`.navmenu summary`)))
	b.waitFor("the Admin menu inside the window", `(r => r.width > 0 && r.right <= innerWidth && r.bottom <= innerHeight)(document.querySelector('nav a[href="#/definitions"]').getBoundingClientRect())`, topBarDiag, 5*time.Second)
	b.screenshot("console-admin-menu-1280.png")
	b.do("open Users from the menu", chromedp.Click(chromedp.CSS(`nav a[href="#/users"]`)))
	b.waitFor("the Users page, the menu closed and marked", `location.hash === "#/users" && !document.querySelector(".navmenu").open && document.querySelector(".navmenu summary").classList.contains("active")`, topBarDiag, 5*time.Second)

	b.do("open Presence", chromedp.Click(chromedp.CSS(`nav a[href="#/presence"]`)))
	b.waitFor("room1 with one client", `[...document.querySelectorAll("main table tr")].some(r => r.textContent.includes("amq.topic/room1") && r.cells[2]?.textContent === "1")`, consoleDiag, 10*time.Second)
	b.do("open the channel", chromedp.Click(chromedp.CSS(`main table a[href="#/presence/`+url.PathEscape("/")+`/`+url.PathEscape("amq.topic/room1")+`"]`)))
	b.waitFor("ann in room1", `[...document.querySelectorAll("main table tr")].some(r => r.cells[0]?.textContent === "ann" && r.textContent.includes('{"name":"Ann"}'))`, consoleDiag, 10*time.Second)
	b.screenshot("console-presence.png")
}
