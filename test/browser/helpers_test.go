// Package browser holds Herald's real-browser tests: a real server started
// in-process, driven by Debian's chromium through chromedp (the Chrome
// DevTools Protocol), next to real AMQP clients (amqp091-go). They check
// what no Go client can: that herald.js, EventSource and the web console
// work in an actual browser.
//
// chromium must be installed (.ci/run installs it); set
// HERALD_SKIP_BROWSER=1 to skip these tests on a machine without it.
package browser

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
	"github.com/heraldmq/herald/internal/protocol/amqp091"
	"github.com/heraldmq/herald/internal/web"
)

// TestMain fails the package if goroutines outlive the tests (chromedp's
// readers, Herald's handlers), as test/ does: every test closes its
// browser, its connections and its server.
func TestMain(m *testing.M) {
	adoptOrphans()
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			fmt.Fprintf(os.Stderr, "goroutine leak: %d goroutines after the tests, %d before\n%s\n", n, before, buf)
			code = 1
		}
	}
	os.Exit(code)
}

// chromiumPath finds Debian's chromium. A missing browser fails the test
// (CI must not pass silently without it) unless HERALD_SKIP_BROWSER=1.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	// Debian's package puts it here; PATH may not include /usr/bin.
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	if os.Getenv("HERALD_SKIP_BROWSER") == "1" {
		t.Skip("chromium is not installed and HERALD_SKIP_BROWSER=1: skipping the browser tests")
	}
	t.Fatal("chromium is not installed: run .ci/run (it installs it) or `apt-get install chromium`; " +
		"set HERALD_SKIP_BROWSER=1 to skip the browser tests")
	return ""
}

// herald is a running server on random loopback ports.
type herald struct {
	srv     *app.App
	httpURL string // http://127.0.0.1:port
	host    string // 127.0.0.1:port of the HTTP listener
	amqpURL string
}

// startHerald starts a real server; corsOrigins are the page origins
// allowed to call it from a browser.
func startHerald(t *testing.T, corsOrigins ...string) *herald {
	t.Helper()
	return startHeraldWeb(t, web.Config{CORSOrigins: corsOrigins})
}

// startHeraldWeb is startHerald with the web listener's whole config.
func startHeraldWeb(t *testing.T, wc web.Config) *herald {
	t.Helper()
	level := slog.LevelWarn
	if os.Getenv("HERALD_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	srv, err := app.New(app.Config{
		AMQPAddr: "127.0.0.1:0",
		HTTPAddr: "127.0.0.1:0",
		DataDir:  t.TempDir(),
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
		AMQP:     amqp091.Config{Version: "test"},
		Web:      wc,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	host := srv.HTTPAddr().String()
	return &herald{srv: srv, httpURL: "http://" + host, host: host,
		amqpURL: fmt.Sprintf("amqp://guest:guest@%s/", srv.AMQPAddr())}
}

func (h *herald) dial(t *testing.T) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	c, err := amqp.Dial(h.amqpURL)
	if err != nil {
		t.Fatalf("dial %s: %v", h.amqpURL, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ch, err := c.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	return c, ch
}

// browser is one headless chromium with one tab.
type browser struct {
	t   *testing.T
	ctx context.Context // the tab; cancelled (browser closed) at cleanup

	mu   sync.Mutex
	logs []string // the page's console, exceptions and dialogs, for failures
}

// startBrowser launches chromium with a fresh profile. The cleanup closes
// the tab and the browser and waits for the process and for the
// goroutines reading its events, so no process or goroutine is left.
func startBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	path := chromiumPath(t)
	profile := t.TempDir() // removed after the cleanup below: chromium has exited by then
	opts := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(profile),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root, where chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		// /dev/shm is small in containers; chromium crashes when it fills.
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	}, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	b := &browser{t: t, ctx: ctx}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancelTab()   // closes the tab and the browser
		cancelAlloc() // kills what is left of the process and waits for it
		wg.Wait()
		// chromium's helpers (adopted, see adoptOrphans) exit on their own
		// once the browser has gone; reap them so none is left behind.
		if killed := reapChildren(5 * time.Second); len(killed) > 0 {
			t.Errorf("chromium helpers still running 5s after the browser closed, killed: %v", killed)
		}
	})
	start := time.Now()
	// The first Run starts the browser; its context must have no deadline
	// (the browser lives as long as it), so bound the start by hand.
	started := make(chan error, 1)
	wg.Add(1)
	go func() { defer wg.Done(); started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("cannot start chromium (%s): %v", path, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("chromium (%s) did not start within 30s", path)
	}
	t.Logf("chromium started in %v", time.Since(start).Round(time.Millisecond))

	// Subscribe before any navigation so nothing the pages print is lost.
	console := chromedp.Console(ctx)
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for m, err := range console {
			if err != nil {
				return // the tab closed
			}
			b.log("console: " + m.String())
		}
	}()
	// A dialog (the console's confirm() before purge and delete) blocks
	// the page and the click that opened it: accept it from here.
	go func() {
		defer wg.Done()
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			b.log(fmt.Sprintf("dialog %s accepted: %s", ev.Type, ev.Message))
			if _, err := chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true}); err != nil {
				b.log("dialog: " + err.Error())
			}
		}
	}()
	return b
}

func (b *browser) log(s string) {
	b.mu.Lock()
	b.logs = append(b.logs, s)
	b.mu.Unlock()
}

// pageLog is what the page printed so far, for a failure message.
func (b *browser) pageLog() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.logs) == 0 {
		return "(the page logged nothing)"
	}
	return strings.Join(b.logs, "\n")
}

// do runs steps with a deadline, failing the test with the page's log.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v\npage log:\n%s", what, err, b.pageLog())
	}
}

// eval evaluates a JavaScript expression (awaiting a promise) into T.
func eval[T any](b *browser, what, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	var v T
	var err error
	for {
		v, err = chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
		// A context replaced by a navigation (CDP -32000) ran nothing.
		if err == nil || !strings.Contains(err.Error(), "Cannot find context with specified id") || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatalf("%s: %v\npage log:\n%s", what, err, b.pageLog())
	}
	return v
}

// waitFor polls a JavaScript condition in the page every 50ms until it
// is truthy, for at most d. On failure it shows diag (an expression
// describing the page's state) and the page's log.
func (b *browser) waitFor(what, cond, diag string, d time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, d+5*time.Second)
	defer cancel()
	var err error
	for end := time.Now().Add(d); ; {
		_, err = chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond,
			chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(time.Until(end))))
		// Just after a navigation the page's execution context may be
		// replaced under the poll (CDP -32000): poll again in the new one.
		if err == nil || !strings.Contains(err.Error(), "Cannot find context with specified id") || time.Now().After(end) {
			break
		}
	}
	if err == nil {
		return
	}
	state := "(no diagnostic)"
	if diag != "" {
		dctx, dcancel := context.WithTimeout(b.ctx, 5*time.Second)
		s, derr := chromedp.Run(dctx, chromedp.Evaluate[string](diag))
		dcancel()
		if derr != nil {
			state = "diagnostic failed: " + derr.Error()
		} else {
			state = s
		}
	}
	if errors.Is(err, chromedp.ErrPollingTimeout) {
		err = fmt.Errorf("not true after %v", d)
	}
	b.t.Fatalf("waiting for %s (%s): %v\npage state: %s\npage log:\n%s", what, cond, err, state, b.pageLog())
}

// screenshot saves a full-page PNG into the directory $HERALD_ARTIFACTS
// (created if needed; a relative one is relative to this package's
// directory, where go test runs, so HERALD_ARTIFACTS=artifacts gives
// test/browser/artifacts/) or else the test's temporary directory, and
// logs where.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG, lossless
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("HERALD_ARTIFACTS")
	if dir == "" {
		dir = b.t.TempDir()
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		b.t.Fatalf("artifacts directory: %v", err)
	}
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o600); err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	b.t.Logf("screenshot (%d bytes): %s", len(png), path)
	return path
}
