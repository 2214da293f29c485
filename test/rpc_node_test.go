package test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/examples/rpc/greeter"
	"github.com/heraldmq/herald/pkg/rpc"
)

// startNodeGreeter installs examples/rpc/node into a temporary directory
// (npm ci, from its package-lock.json) and runs it against url until the
// test ends; it returns once the service announces it is serving, and a
// function that stops it with SIGTERM and returns its exit error.
func startNodeGreeter(t *testing.T, url string) (stop func() error) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH: the cross-language RPC test needs Node.js 18+ and npm")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not on PATH: the cross-language RPC test needs Node.js 18+ and npm")
	}
	dir := t.TempDir()
	for _, f := range []string{"greeter.js", "package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join("..", "examples", "rpc", "node", f))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}

	cmd := exec.Command(node, "greeter.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "AMQP_URL="+url)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"msg":"serving"`) {
				ready <- sc.Text()
			}
		}
	}()
	var exited error
	stopped := false
	stop = func() error {
		if stopped {
			return exited
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case exited = <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			exited = fmt.Errorf("node did not exit on SIGTERM: %w", <-done)
		}
		return exited
	}
	t.Cleanup(func() { _ = stop() })
	select {
	case line := <-ready:
		t.Logf("node: %s", line)
	case <-time.After(30 * time.Second):
		_ = stop()
		t.Fatalf("the node service did not start serving; stderr:\n%s", stderr.String())
	}
	return stop
}

// TestRPCNodeService is the cross-language proof of the convention: the
// Go SDK's client calls the greeter service answered by Node (amqplib,
// no Herald code) through a running Herald, then by Node and Go instances
// side by side.
func TestRPCNodeService(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	stop := startNodeGreeter(t, s.URL)
	c := newRPCClient(t, rpc.ClientConfig{ConnConfig: rpc.ConnConfig{URL: s.URL}})
	ctx := ctxTimeout(t, 10*time.Second)

	greet := rpc.NewMethod[greeter.GreetRequest, greeter.GreetReply](c, "greeter.Greet")
	g, err := greet.Call(ctx, &greeter.GreetRequest{Name: "Ada"})
	must(t, err)
	if g.Greeting != "Hello, Ada!" || g.By != "node" {
		t.Fatalf("reply %+v", g)
	}
	var sum greeter.AddReply
	must(t, c.Call(ctx, "greeter.Add", &greeter.AddRequest{A: 40, B: 2}, &sum))
	if sum.Sum != 42 {
		t.Fatalf("sum %d", sum.Sum)
	}
	_, err = greet.Call(ctx, &greeter.GreetRequest{})
	if e := wantCode(t, err, rpc.InvalidArgument); e.Message != "name is required" {
		t.Fatalf("message %q", e.Message)
	}
	wantCode(t, c.Call(ctx, "greeter.Nope", &greeter.AddRequest{}, nil), rpc.Unimplemented)
	// Past 2^53 JavaScript numbers are not exact: the Node service says so.
	wantCode(t, c.Call(ctx, "greeter.Add", &greeter.AddRequest{A: 1 << 52, B: 1 << 52}, nil), rpc.OutOfRange)

	// The Node instance announced itself as the convention says.
	bq, err := s.Broker().VHost("/").Queue("rpc.greeter")
	must(t, err)
	cs := bq.Consumers()
	if len(cs) != 1 || cs[0].Args["x-service-name"] != "greeter" || fmt.Sprint(cs[0].Args["x-service-endpoints"]) != "[Greet Add]" ||
		fmt.Sprint(cs[0].Args["x-service-metadata"]) != "map[language:node]" || cs[0].Prefetch != 16 {
		t.Fatalf("consumers %+v", cs)
	}

	// x-deadline as amqp091-go writes it (int64) reaches amqplib intact:
	// a request already past it is not answered; one within it is.
	ch := mustChannel(t, s.dial(t))
	replyQ := tempQueue(t, ch)
	replies := mustConsume(t, ch, replyQ, "", true)
	for id, dl := range map[string]time.Time{"late": time.Now().Add(-time.Second), "on-time": time.Now().Add(time.Minute)} {
		mustPublish(t, ch, "", "rpc.greeter", amqp.Publishing{Type: "greeter.Greet", ReplyTo: replyQ, CorrelationId: id,
			ContentType: "application/json", Headers: amqp.Table{"x-deadline": dl.UnixMilli()}, Body: []byte(`{"name":"x"}`)})
	}
	if d := recv(t, replies); d.CorrelationId != "on-time" || d.Headers["x-rpc-status"] != "OK" {
		t.Fatalf("reply %q %v", d.CorrelationId, d.Headers)
	}
	select {
	case d := <-replies:
		t.Fatalf("a late request was answered: %q", d.CorrelationId)
	case <-time.After(quietPeriod):
	}

	// A Go instance joins: the broker balances over both languages.
	srv := rpc.NewServer(rpc.ServerConfig{ConnConfig: rpc.ConnConfig{URL: s.URL, Logger: quietLogger()}})
	must(t, srv.Register(greeter.Service{}, rpc.Service{Name: greeter.Name, Version: "1.0.0"}))
	must(t, srv.Start())
	t.Cleanup(func() { _ = srv.Close() })
	by := map[string]int{}
	for range 20 {
		g, err := greet.Call(ctx, &greeter.GreetRequest{Name: "x"})
		must(t, err)
		by[g.By]++
	}
	if by["go"] == 0 || by["node"] == 0 {
		t.Fatalf("answers by %v", by)
	}

	// Both leave (Node drains on SIGTERM and exits 0): no responders.
	must(t, stop())
	must(t, srv.Close())
	if err := c.Call(ctx, "greeter.Greet", &greeter.GreetRequest{Name: "x"}, nil); !errors.Is(err, rpc.ErrNoResponders) {
		t.Fatalf("after both left: %v", err)
	}
}
