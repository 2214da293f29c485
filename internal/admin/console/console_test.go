package console_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/admin"
	"github.com/heraldmq/herald/internal/admin/console"
	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/metrics"
	"github.com/heraldmq/herald/internal/protocol/httpapi"
	"github.com/heraldmq/herald/internal/web"
)

// serve runs the console and the real management API as the lead wires
// them: the web shell with the management API (which serves the console)
// mounted, and /metrics.
func serve(t *testing.T) (*httptest.Server, *broker.Broker) {
	t.Helper()
	b := broker.New(broker.Options{})
	srv := web.New(web.Config{Metrics: metrics.New(b).Handler()}, b, auth.NewDefaultUsers(), slog.New(slog.DiscardHandler))
	admin.Mount(srv)
	httpapi.Mount(srv)
	// A registered connection with one channel, for the Connections and
	// Channels pages; /test/closed tells the script the reason it was
	// closed with.
	closed := make(chan string, 1)
	var unregister func()
	_, unregister = b.RegisterConnection(broker.ConnectionInfo{Name: "console-test-conn", Protocol: "AMQP 0-9-1", User: "guest", VHost: "/",
		Peer: "127.0.0.1:5555", Local: "127.0.0.1:5672", Channels: 1,
		ChannelList: func() []broker.ChannelInfo {
			return []broker.ChannelInfo{{Number: 1, ConsumerCount: 2, PrefetchCount: 10, UnackedCount: 3, Confirm: true}}
		},
		Close: func(reason string) {
			unregister()
			closed <- reason
		}})
	mux := http.NewServeMux()
	mux.Handle("/", srv.Handler())
	mux.HandleFunc("GET /test/closed", func(w http.ResponseWriter, r *http.Request) {
		select {
		case reason := <-closed:
			_, _ = io.WriteString(w, reason)
		case <-r.Context().Done():
		}
	})
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		unregister()
		hs.Close()
		srv.Close()
	})
	return hs, b
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

var (
	assetRef  = regexp.MustCompile(`(?:src|href)="(/console/[^"]+)"`)
	importRef = regexp.MustCompile(`(?m)^import\s[^"]*"(\.{1,2}/[^"]+)";`)
)

func TestIndexAndAssets(t *testing.T) {
	hs, _ := serve(t)
	resp, index := get(t, hs.URL+"/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("index content type %q", ct)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	if !strings.Contains(index, `<script type="module" src="/console/js/app.js">`) {
		t.Errorf("index does not load the app module:\n%s", index)
	}
	// Nothing may come from another origin: the machine running the
	// console may be offline.
	if strings.Contains(index, "http://") || strings.Contains(index, "https://") {
		t.Error("index references another origin")
	}

	want := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
	refs := assetRef.FindAllStringSubmatch(index, -1)
	if len(refs) < 3 {
		t.Fatalf("index references %d assets", len(refs))
	}
	// Follow the module graph from app.js: every relative import must be
	// served, as a JavaScript MIME type (browsers refuse modules otherwise).
	queue := []string{}
	for _, r := range refs {
		queue = append(queue, r[1])
	}
	seen := map[string]bool{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		resp, body := get(t, hs.URL+p)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d", p, resp.StatusCode)
			continue
		}
		ext := filepath.Ext(p)
		if ct := resp.Header.Get("Content-Type"); ct != want[ext] {
			t.Errorf("%s content type %q, want %q", p, ct, want[ext])
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s without nosniff", p)
		}
		if ext != ".js" {
			continue
		}
		for _, m := range importRef.FindAllStringSubmatch(body, -1) {
			queue = append(queue, filepath.ToSlash(filepath.Join(filepath.Dir(p), m[1])))
		}
		for _, bad := range []string{"innerHTML", "http://", "https://", "eval("} {
			if strings.Contains(body, bad) {
				t.Errorf("%s contains %q", p, bad)
			}
		}
	}
	for _, p := range []string{"/console/js/pages/queue.js", "/console/js/chart.js", "/console/js/rates.js"} {
		if !seen[p] {
			t.Errorf("%s is not reachable from index.html", p)
		}
	}
	// Every embedded file is used.
	err := fs.WalkDir(os.DirFS("assets"), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && p != "index.html" && !seen["/console/"+p] {
			t.Errorf("assets/%s is never loaded", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCachingAndErrors(t *testing.T) {
	hs, _ := serve(t)
	resp, _ := get(t, hs.URL+"/console/console.css")
	etag := resp.Header.Get("ETag")
	if etag == "" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("ETag %q, Cache-Control %q", etag, resp.Header.Get("Cache-Control"))
	}
	if resp, _ := get(t, hs.URL+"/console/console.css", "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation = %d, want 304", resp.StatusCode)
	}
	for _, p := range []string{"/console/", "/console/nope.js", "/console/js/", "/console/%2e%2e/console.go", "/index.html", "/favicon.ico"} {
		if resp, _ := get(t, hs.URL+p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, hs.URL+"/", strings.NewReader("x"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d", resp.StatusCode)
	}
	// Standalone (without the web router) the handler refuses other
	// methods itself.
	rec := httptest.NewRecorder()
	console.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE / = %d", rec.Code)
	}
}

// The console is public; the API behind it is not; /metrics is mounted
// beside them.
func TestMountedBesideAPIAndMetrics(t *testing.T) {
	hs, b := serve(t)
	if resp, _ := get(t, hs.URL+"/api/overview"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API without credentials = %d", resp.StatusCode)
	}
	if resp, body := get(t, hs.URL+"/api/overview", "Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q="); resp.StatusCode != http.StatusOK || !strings.Contains(body, "queue_totals") {
		t.Errorf("API with guest = %d %s", resp.StatusCode, body)
	}
	if _, err := b.VHost(broker.DefaultVHost).DeclareQueue("seen", broker.QueueOptions{}); err != nil {
		t.Fatal(err)
	}
	resp, body := get(t, hs.URL+"/metrics")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `herald_queue_messages_ready{queue="seen",vhost="/"} 0`) {
		t.Errorf("/metrics = %d:\n%.2000s", resp.StatusCode, body)
	}
}

// nodeDir copies the JavaScript beside a package.json that makes node
// read .js files as ES modules, as browsers do for type="module".
func nodeDir(t *testing.T) (node, dir string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH")
	}
	dir = t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("assets")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"type":"module"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return node, dir
}

func TestJavaScriptParses(t *testing.T) {
	node, dir := nodeDir(t)
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, "js"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".js" {
			return err
		}
		n++
		if out, err := exec.Command(node, "--check", p).CombinedOutput(); err != nil {
			t.Errorf("node --check %s: %v\n%s", p, err, out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 8 {
		t.Errorf("checked only %d files", n)
	}
	// The check must catch a syntax error, or it proves nothing.
	bad := filepath.Join(dir, "js", "broken.js")
	if err := os.WriteFile(bad, []byte("export const a = ;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command(node, "--check", bad).Run(); err == nil {
		t.Error("node --check accepted a syntax error")
	}
}

// TestJavaScriptAgainstServer runs testdata/console_test.mjs: unit tests
// of the pure modules, and the console's API client (api.js, rates.js)
// making the console's own requests to the real server.
func TestJavaScriptAgainstServer(t *testing.T) {
	node, dir := nodeDir(t)
	hs, b := serve(t)
	serveCalcInstance(t, b)
	script, err := filepath.Abs("testdata/console_test.mjs")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, script, dir, hs.URL).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), " passed, 0 failed") {
		t.Fatalf("unexpected node output:\n%s", out)
	}
}

// TestMain fails the run if goroutines outlive the tests (servers,
// connections).
func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	// The fuzzing engine keeps a signal goroutine of its own.
	if f := flag.Lookup("test.fuzz"); code == 0 && (f == nil || f.Value.String() == "") {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // goroutines have no exit event to await
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			fmt.Fprintf(os.Stderr, "%d goroutines left behind (had %d):\n%s\n", n, before, buf[:runtime.Stack(buf, true)])
			code = 1
		}
	}
	os.Exit(code)
}
