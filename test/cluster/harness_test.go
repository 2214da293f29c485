// Package cluster_test starts real herald processes in a cluster of three
// on loopback and breaks them: kill -9, SIGSTOP, restart, a flipped bit in
// a Raft log.
package cluster_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// herald is the binary under test, built once by TestMain.
var herald string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "herald-cluster-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	herald = filepath.Join(dir, "herald")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	build := exec.Command("go", "build", "-o", herald, "./cmd/herald")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building herald:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// node is one herald process of a harness.
type node struct {
	name    string
	dataDir string
	addrs   nodeAddrs // guarded by mu: a restart may change them while clients read them
	join    []string
	proxy   *proxy // in front of clusterAddr: the address the others dial
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	logf    *os.File
}

// harness is a cluster of real processes.
type harness struct {
	extra []string
	t     *testing.T
	nodes []*node
}

// newHarness starts n nodes named n1..nN and waits for a leader; extra
// are more herald serve flags for every node.
func newHarness(t *testing.T, n int, extra ...string) *harness {
	h := &harness{t: t, extra: extra}
	root := t.TempDir()
	for i := range n {
		// Port 0 everywhere: each node binds what the kernel gives it and
		// says so in its "herald ready" line (settle). Ports picked free
		// beforehand were taken, now and then, by the other packages'
		// tests before the node bound them.
		h.nodes = append(h.nodes, &node{name: fmt.Sprintf("n%d", i+1), dataDir: filepath.Join(root, fmt.Sprintf("n%d", i+1))})
		h.nodes[i].anyPorts()
	}
	for _, nd := range h.nodes {
		nd.proxy = newProxy(t, nd.clusterAddress())
	}
	for _, nd := range h.nodes {
		for _, o := range h.nodes {
			if o != nd {
				nd.join = append(nd.join, o.proxy.addr())
			}
		}
	}
	t.Cleanup(h.stopAll)
	logged := make([]int64, n)
	exited := make([]<-chan struct{}, n)
	for i, nd := range h.nodes {
		logged[i], exited[i] = h.launch(nd)
	}
	h.settle(h.nodes, logged, exited)
	h.waitLeader(nil, 20*time.Second)
	// Every node holds the configuration (a node that joined learns it
	// from the leader's log): only then may any node die.
	for _, nd := range h.nodes {
		eventually(t, 10*time.Second, nd.name+" knows every node", func() error {
			ns, err := nd.nodes()
			if err != nil {
				return err
			}
			if len(ns) != n {
				return fmt.Errorf("%s lists %d nodes", nd.name, len(ns))
			}
			return nil
		})
	}
	return h
}

// start runs nd and waits until it has bound its ports (see settle).
func (h *harness) start(nd *node) {
	h.t.Helper()
	logged, exited := h.launch(nd)
	h.settle([]*node{nd}, []int64{logged}, []<-chan struct{}{exited})
}

// settle waits until the nodes are ready or have exited, then takes the
// addresses each bound from its "herald ready" line. Every node's cluster
// port comes first, for all of them: a node may wait for the cluster to
// form before it is ready (--load-definitions), and the others reach it
// through its proxy, which must point at that port. A node restarts on
// the ports it had, which the other packages' tests (running at the same
// time) may have taken meanwhile: a node that exits on "address already in
// use" starts again on port 0. Any other exit is for the test to see (a
// node with a damaged Raft log must refuse to start).
func (h *harness) settle(nodes []*node, logged []int64, exited []<-chan struct{}) {
	h.t.Helper()
	pending := make([]int, len(nodes))
	for i := range nodes {
		pending[i] = i
	}
	for attempt := 1; len(pending) > 0; attempt++ {
		errs := make(map[int]error)
		for _, i := range pending {
			nd := nodes[i]
			started, err := waitLine(nd.logPath(), `msg="cluster node started"`, logged[i], exited[i], 30*time.Second)
			if err != nil {
				errs[i] = err
				continue
			}
			m := listenAddr.FindStringSubmatch(started)
			if m == nil {
				h.t.Fatalf("%s: no listen address in %s", nd.name, started)
			}
			nd.proxy.retarget(m[1])
		}
		for _, i := range pending {
			if errs[i] != nil {
				continue
			}
			ready, err := waitLine(nodes[i].logPath(), `msg="herald ready"`, logged[i], exited[i], 30*time.Second)
			if err != nil {
				errs[i] = err
				continue
			}
			nodes[i].bound(h.t, ready)
		}
		var again []int
		for _, i := range pending {
			if err := errs[i]; err != nil && strings.Contains(err.Error(), "address already in use") {
				if attempt == 5 {
					h.t.Fatalf("starting %s: %v", nodes[i].name, err)
				}
				h.t.Logf("restarting %s on other ports: %v", nodes[i].name, err)
				h.kill(nodes[i], syscall.SIGKILL)
				nodes[i].anyPorts()
				logged[i], exited[i] = h.launch(nodes[i])
				again = append(again, i)
			}
		}
		pending = again
	}
}

// nodeAddrs are the addresses a node listens on.
type nodeAddrs struct{ cluster, amqp, http, mqtt string }

func (nd *node) address() nodeAddrs {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.addrs
}

func (nd *node) clusterAddress() string { return nd.address().cluster }
func (nd *node) amqpAddress() string    { return nd.address().amqp }
func (nd *node) httpAddress() string    { return nd.address().http }
func (nd *node) mqttAddress() string    { return nd.address().mqtt }

// anyPorts makes nd's next start bind port 0 everywhere.
func (nd *node) anyPorts() {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	nd.addrs = nodeAddrs{cluster: "127.0.0.1:0", amqp: "127.0.0.1:0", http: "127.0.0.1:0", mqtt: "127.0.0.1:0"}
}

// listenAddr is the cluster port in a "cluster node started" log line.
var listenAddr = regexp.MustCompile(`\blisten=(\S+)`)

// readyAddr is one listener's address in a "herald ready" log line.
var readyAddr = regexp.MustCompile(`\b(cluster|amqp|mqtt|http)=(\S+)`)

// bound takes nd's addresses from its "herald ready" line.
func (nd *node) bound(t *testing.T, ready string) {
	t.Helper()
	got := map[string]string{}
	for _, m := range readyAddr.FindAllStringSubmatch(ready, -1) {
		got[m[1]] = m[2]
	}
	for _, k := range []string{"cluster", "amqp", "mqtt", "http"} {
		if got[k] == "" || strings.HasSuffix(got[k], ":0") {
			t.Fatalf("%s: no %s address in its ready line: %s", nd.name, k, ready)
		}
	}
	nd.mu.Lock()
	nd.addrs = nodeAddrs{cluster: got["cluster"], amqp: got["amqp"], mqtt: got["mqtt"], http: got["http"]}
	nd.mu.Unlock()
	nd.proxy.retarget(got["cluster"])
}

func (nd *node) logPath() string { return filepath.Join(filepath.Dir(nd.dataDir), nd.name+".log") }

// waitLine waits for a line with marker after offset in the log at path
// and returns it; a process that exits first fails with its last log line.
func waitLine(path, marker string, offset int64, exited <-chan struct{}, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		if int64(len(b)) > offset {
			b = b[offset:]
		} else {
			b = nil
		}
		if i := bytes.Index(b, []byte(marker)); i >= 0 {
			line := b[bytes.LastIndexByte(b[:i], '\n')+1:]
			if j := bytes.IndexByte(line, '\n'); j >= 0 {
				line = line[:j]
			}
			return string(line), nil
		}
		select {
		case <-exited:
			b, _ = os.ReadFile(path)
			lines := strings.Split(strings.TrimSpace(string(b[min(int64(len(b)), offset):])), "\n")
			return "", fmt.Errorf("exited before it was ready: %s", lines[len(lines)-1])
		default:
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no %s within %s", marker, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// launch starts nd's process; it returns the size of the log before the
// start and a channel closed when the process exits.
func (h *harness) launch(nd *node) (int64, <-chan struct{}) {
	h.t.Helper()
	if err := os.MkdirAll(nd.dataDir, 0o750); err != nil {
		h.t.Fatal(err)
	}
	f, err := os.OpenFile(nd.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		h.t.Fatal(err)
	}
	var logged int64
	if st, err := f.Stat(); err == nil {
		logged = st.Size()
	}
	nd.mu.Lock()
	a := nd.addrs
	nd.mu.Unlock()
	cmd := exec.Command(herald, "serve", "--node-name", nd.name, "--cluster-addr", a.cluster, "--cluster-advertise", nd.proxy.addr(), "--join", strings.Join(nd.join, ","),
		"--data-dir", nd.dataDir, "--amqp", a.amqp, "--http", a.http, "--mqtt", a.mqtt, "--stomp", "off",
		"--disk-free-limit", "0", "--vm-memory-high-watermark", "0")
	cmd.Args = append(cmd.Args, h.extra...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "HERALD_CONFIG=")
	// A test binary that dies (a -timeout panic) takes its nodes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		h.t.Fatal(err)
	}
	nd.mu.Lock()
	nd.cmd, nd.logf, nd.exited = cmd, f, make(chan struct{})
	exited := nd.exited
	nd.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(exited)
	}()
	return logged, exited
}

// kill sends sig (SIGKILL, SIGTERM) and waits for the exit.
func (h *harness) kill(nd *node, sig syscall.Signal) {
	nd.mu.Lock()
	cmd, exited := nd.cmd, nd.exited
	nd.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // a paused process must run to handle SIGTERM
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	nd.mu.Lock()
	nd.cmd = nil
	nd.mu.Unlock()
}

func (h *harness) pause(nd *node)  { h.signal(nd, syscall.SIGSTOP) }
func (h *harness) resume(nd *node) { h.signal(nd, syscall.SIGCONT) }

func (h *harness) signal(nd *node, sig syscall.Signal) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd != nil {
		_ = nd.cmd.Process.Signal(sig)
	}
}

func (h *harness) stopAll() {
	for _, nd := range h.nodes {
		h.kill(nd, syscall.SIGTERM)
	}
	if h.t.Failed() {
		for _, nd := range h.nodes {
			b, _ := os.ReadFile(nd.logPath())
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			h.t.Logf("--- %s log (tail) ---\n%s", nd.name, b)
		}
	}
}

// api calls the management API of nd; it returns the status and body.
func (nd *node) api(method, path string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+nd.httpAddress()+path, r)
	if err != nil {
		return 0, nil, err
	}
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("Content-Type", "application/json")
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

type nodeJSON struct {
	Name      string `json:"name"`
	Running   bool   `json:"running"`
	RaftState string `json:"raft_state"`
	Leader    string `json:"raft_leader"`
	Term      uint64 `json:"raft_term"`
	Applied   uint64 `json:"raft_applied_index"`
	Lag       uint64 `json:"raft_lag"`
}

func (nd *node) nodes() ([]nodeJSON, error) {
	code, b, err := nd.api("GET", "/api/nodes", nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /api/nodes: %d %s", code, b)
	}
	var out []nodeJSON
	return out, json.Unmarshal(b, &out)
}

// waitLeader waits until every running node but skip names the same
// leader (not skip), and returns it.
func (h *harness) waitLeader(skip *node, within time.Duration) *node {
	h.t.Helper()
	var last string
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		leader := ""
		agree := true
		for _, nd := range h.nodes {
			if nd == skip || !nd.running() {
				continue
			}
			ns, err := nd.nodes()
			if err != nil {
				agree, last = false, err.Error()
				break
			}
			l := ""
			for _, n := range ns {
				if n.Name == nd.name {
					l = n.Leader
				}
			}
			if l == "" || (skip != nil && l == skip.name) || (leader != "" && l != leader) {
				agree, last = false, fmt.Sprintf("%s sees leader %q", nd.name, l)
				break
			}
			leader = l
		}
		if agree && leader != "" {
			return h.byName(leader)
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("no agreed leader within %s: %s", within, last)
	return nil
}

// running reports whether nd's process was started and has not exited
// (a paused one counts as running).
func (nd *node) running() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd == nil {
		return false
	}
	select {
	case <-nd.exited:
		return false
	default:
		return true
	}
}

func (h *harness) byName(name string) *node {
	for _, nd := range h.nodes {
		if nd.name == name {
			return nd
		}
	}
	h.t.Fatalf("no node %q", name)
	return nil
}

// eventually retries cond until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, within, err)
}

func (nd *node) declareQueue(name string, args map[string]any) error {
	body := map[string]any{"durable": true, "auto_delete": false, "arguments": args}
	code, b, err := nd.api("PUT", "/api/queues/%2F/"+url.PathEscape(name), body)
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return fmt.Errorf("declare %s on %s: %d %s", name, nd.name, code, b)
	}
	return nil
}

func (nd *node) hasQueue(name string) error {
	code, b, err := nd.api("GET", "/api/queues/%2F/"+url.PathEscape(name), nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("%s: queue %s: %d %s", nd.name, name, code, b)
	}
	return nil
}

// queueNames lists the queues of vhost "/" on nd.
func (nd *node) queueNames() (map[string]bool, error) {
	code, b, err := nd.api("GET", "/api/queues/%2F?columns=name", nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("%s: GET /api/queues: %d %s", nd.name, code, b)
	}
	var qs []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(b, &qs); err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(qs))
	for _, q := range qs {
		out[q.Name] = true
	}
	return out, nil
}
