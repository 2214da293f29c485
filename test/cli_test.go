package test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestServeBinarySignals runs the real `herald serve` binary the way a user
// does: port 0, the ready line names the port, SIGTERM closes every client
// with 320 CONNECTION_FORCED and the process exits 0.
func TestServeBinarySignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "herald")
	build := exec.Command("go", "build", "-o", bin, "github.com/heraldmq/herald/cmd/herald")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, sig := range []os.Signal{syscall.SIGTERM, os.Interrupt} {
		t.Run(sig.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "serve", "--amqp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--stomp", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--log-format", "json")
			cmd.Env = append(os.Environ(), "HERALD_LOG_LEVEL=info")
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ready := regexp.MustCompile(`"msg":"herald ready".*"amqp":"([^"]+)"`)
			addr := make(chan string, 1)
			logDone := make(chan struct{})
			go func() {
				defer close(logDone)
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					if m := ready.FindStringSubmatch(sc.Text()); m != nil {
						addr <- m[1]
					}
				}
			}()
			var a string
			select {
			case a = <-addr:
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatal("no 'herald ready' log line with the AMQP address")
			}
			conn, err := amqp.Dial("amqp://guest:guest@" + a + "/")
			if err != nil {
				_ = cmd.Process.Kill()
				t.Fatalf("dial %s: %v", a, err)
			}
			closed := conn.NotifyClose(make(chan *amqp.Error, 1))
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case e := <-closed:
				if e == nil || e.Code != amqp.ConnectionForced {
					t.Errorf("client got %v, want 320 CONNECTION_FORCED", e)
				}
			case <-time.After(10 * time.Second):
				t.Error("client was not told the server is going away")
			}
			<-logDone
			err = cmd.Wait()
			var exit *exec.ExitError
			if errors.As(err, &exit) || err != nil {
				t.Errorf("herald exited with %v, want 0", err)
			}
		})
	}
}
