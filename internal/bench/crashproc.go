package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// heraldProc is a herald binary started by the crash loop, on free
// loopback ports (AMQP and MQTT) and a data dir that outlives it.
type heraldProc struct {
	cmd        *exec.Cmd
	amqp, mqtt string // bound addresses, from the ready line
	logDone    chan struct{}

	mu   sync.Mutex
	tail []string // its last log lines, for a report when it fails
}

const procTailLines = 40

// startHeraldProc runs `bin serve` on dataDir and waits for its ready line.
func startHeraldProc(bin, dataDir string) (*heraldProc, error) {
	cmd := exec.Command(bin, "serve", "--amqp", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--stomp", "off", "--http", "off",
		"--data-dir", dataDir, "--log-format", "json", "--log-level", "info")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &heraldProc{cmd: cmd, logDone: make(chan struct{})}
	type readyLine struct{ Msg, AMQP, MQTT string }
	ready := make(chan readyLine, 1)
	go func() {
		defer close(p.logDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.tail = append(p.tail, line)
			if len(p.tail) > procTailLines {
				p.tail = p.tail[len(p.tail)-procTailLines:]
			}
			p.mu.Unlock()
			var r readyLine
			if json.Unmarshal([]byte(line), &r) == nil && r.Msg == "herald ready" {
				select {
				case ready <- r:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	t := time.NewTimer(2 * time.Minute) // recovery of a large log takes a while
	defer t.Stop()
	select {
	case r := <-ready:
		p.amqp, p.mqtt = r.AMQP, r.MQTT
		return p, nil
	case <-p.logDone:
		p.kill()
		return nil, fmt.Errorf("herald exited before it was ready:\n%s", p.logTail())
	case <-t.C:
		p.kill()
		return nil, fmt.Errorf("herald: no ready line within 2 minutes:\n%s", p.logTail())
	}
}

func (p *heraldProc) logTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// kill is kill -9, then the process is reaped.
func (p *heraldProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.logDone // the pipe drained before Wait
	_ = p.cmd.Wait()
}

// stop is a clean shutdown (SIGTERM), with kill -9 past the deadline.
func (p *heraldProc) stop(deadline time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.logDone:
		err := p.cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("herald exited with %v after SIGTERM:\n%s", err, p.logTail())
		}
		return err
	case <-time.After(deadline):
		p.kill()
		return fmt.Errorf("herald did not stop within %v of SIGTERM", deadline)
	}
}
