package test

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildRPCExamples builds examples/rpc/service and examples/rpc/client
// into a temporary directory and returns their paths.
func buildRPCExamples(t *testing.T) (service, client string) {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH: cannot build the examples")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, name := range []string{"service", "client"} {
		b := exec.CommandContext(ctx, gobin, "build", "-o", filepath.Join(dir, name), "./examples/rpc/"+name)
		b.Dir = ".."
		if out, err := b.CombinedOutput(); err != nil {
			t.Fatalf("go build ./examples/rpc/%s: %v\n%s", name, err, out)
		}
	}
	return filepath.Join(dir, "service"), filepath.Join(dir, "client")
}

// runRPCExampleClient runs the example client against url and returns
// what it printed.
func runRPCExampleClient(t *testing.T, client, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, client, "-url", url, "-name", "Ada").CombinedOutput()
	if err != nil {
		t.Fatalf("example client: %v\n%s", err, out)
	}
	return string(out)
}

// TestRPCExamples runs the example binaries: the Go client against the Go
// service, then against the Node service; each prints the same answers
// but for who gave them.
func TestRPCExamples(t *testing.T) {
	t.Parallel()
	service, client := buildRPCExamples(t)
	s := startServer(t)

	svc := exec.Command(service, "-url", s.URL)
	stderr, err := svc.StderrPipe()
	must(t, err)
	must(t, svc.Start())
	serving := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "msg=serving") {
				close(serving)
			}
		}
	}()
	t.Cleanup(func() { _ = svc.Process.Kill(); _ = svc.Wait() })
	select {
	case <-serving:
	case <-time.After(30 * time.Second):
		t.Fatal("the example service did not start serving")
	}
	out := runRPCExampleClient(t, client, s.URL)
	for _, want := range []string{"Hello, Ada! (answered by go)", "40 + 2 = 42", "empty name: INVALID_ARGUMENT (name is required)"} {
		if !strings.Contains(out, want) {
			t.Fatalf("client output lacks %q:\n%s", want, out)
		}
	}
	// SIGTERM: the service drains and exits 0.
	must(t, svc.Process.Signal(syscall.SIGTERM))
	must(t, svc.Wait())

	if _, err := exec.LookPath("node"); err != nil {
		t.Log("node is not on PATH: the example client was not run against the Node service")
		return
	}
	startNodeGreeter(t, s.URL)
	if out := runRPCExampleClient(t, client, s.URL); !strings.Contains(out, "Hello, Ada! (answered by node)") ||
		!strings.Contains(out, "40 + 2 = 42") || !strings.Contains(out, "empty name: INVALID_ARGUMENT") {
		t.Fatalf("client against the Node service:\n%s", out)
	}
}
