package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// TestServeMQTTReceiveMaximumInvalid: --mqtt-receive-maximum (and its
// variable, its config file key) takes 1 to 65535; anything else stops `herald serve` with a
// message naming the setting and the range.
func TestServeMQTTReceiveMaximumInvalid(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		file string // config file content
		want string
	}{
		{args: []string{"--mqtt-receive-maximum", "0"}, want: `invalid value "0" for flag -mqtt-receive-maximum: must be a whole number from 1 to 65535`},
		{args: []string{"--mqtt-receive-maximum=65536"}, want: `invalid value "65536" for flag -mqtt-receive-maximum: must be a whole number from 1 to 65535`},
		{args: []string{"--mqtt-receive-maximum", "-1"}, want: "must be a whole number from 1 to 65535"},
		{args: []string{"--mqtt-receive-maximum", "lots"}, want: "must be a whole number from 1 to 65535"},
		{env: "70000", want: `invalid HERALD_MQTT_RECEIVE_MAXIMUM="70000": must be a whole number from 1 to 65535`},
		{file: "mqtt-receive-maximum: 0\n", want: `invalid mqtt-receive-maximum: "0": must be a whole number from 1 to 65535`},
	} {
		t.Run(strings.Join(tc.args, " ")+tc.env+tc.file, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("HERALD_MQTT_RECEIVE_MAXIMUM", tc.env)
			}
			args := append([]string{"--data-dir", t.TempDir()}, tc.args...)
			if tc.file != "" {
				path := filepath.Join(t.TempDir(), "herald.yaml")
				if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", path)
			}
			var out, errOut bytes.Buffer
			if code := runServe(context.Background(), args, &out, &errOut); code != 2 {
				t.Fatalf("exit %d, want 2; stderr:\n%s", code, errOut.String())
			}
			if !strings.Contains(errOut.String(), tc.want) {
				t.Fatalf("stderr %q does not say %q", errOut.String(), tc.want)
			}
		})
	}
}

// TestServeMQTTReceiveMaximum: the value reaches the MQTT listener, which
// sends it in CONNACK; from HERALD_MQTT_RECEIVE_MAXIMUM, and from the flag,
// which wins over the variable.
func TestServeMQTTReceiveMaximum(t *testing.T) {
	t.Setenv("HERALD_MQTT_RECEIVE_MAXIMUM", "9")
	if got := serveConnackReceiveMaximum(t); got != 9 {
		t.Fatalf("CONNACK Receive Maximum %d, want 9 (HERALD_MQTT_RECEIVE_MAXIMUM)", got)
	}
	if got := serveConnackReceiveMaximum(t, "--mqtt-receive-maximum", "7"); got != 7 {
		t.Fatalf("CONNACK Receive Maximum %d, want 7 (the flag)", got)
	}
}

// serveConnackReceiveMaximum runs `herald serve args...` with only MQTT
// listening, on a free port, connects an MQTT 5 client and returns the
// Receive Maximum of its CONNACK.
func serveConnackReceiveMaximum(t *testing.T, args ...string) uint16 {
	t.Helper()
	cp := &packet.Connect{ProtocolName: "MQTT", ProtocolLevel: packet.V5, CleanStart: true, ClientID: "rm", KeepAlive: 30,
		UsernameFlag: true, Username: "guest", PasswordFlag: true, Password: []byte("guest")}
	ack := serveConnack(t, cp, args...)
	if ack.ReasonCode != 0 {
		t.Fatalf("connack %#v", ack)
	}
	return ack.Properties.ReceiveMaximum
}

// TestServeMQTTAllowAnonymous: a CONNECT without a user name is accepted
// by default, refused (0x86) with HERALD_MQTT_ALLOW_ANONYMOUS=false, and
// the flag wins over the variable.
func TestServeMQTTAllowAnonymous(t *testing.T) {
	cp := &packet.Connect{ProtocolName: "MQTT", ProtocolLevel: packet.V5, CleanStart: true, ClientID: "anon", KeepAlive: 30}
	if ack := serveConnack(t, cp); ack.ReasonCode != 0 {
		t.Fatalf("default: connack %#x, want 0", ack.ReasonCode)
	}
	t.Setenv("HERALD_MQTT_ALLOW_ANONYMOUS", "false")
	if ack := serveConnack(t, cp); ack.ReasonCode != packet.BadUserNameOrPassword {
		t.Fatalf("HERALD_MQTT_ALLOW_ANONYMOUS=false: connack %#x, want 0x86", ack.ReasonCode)
	}
	if ack := serveConnack(t, cp, "--mqtt-allow-anonymous=true"); ack.ReasonCode != 0 {
		t.Fatalf("--mqtt-allow-anonymous=true: connack %#x, want 0", ack.ReasonCode)
	}
}

// serveConnack runs `herald serve args...` with only MQTT listening, on a
// free port, sends cp (MQTT 5) and returns the CONNACK.
func serveConnack(t *testing.T, cp *packet.Connect, args ...string) *packet.Connack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	args = append([]string{"--data-dir", t.TempDir(), "--mqtt", "127.0.0.1:0", "--amqp", "off", "--stomp", "off",
		"--http", "off", "--vm-memory-high-watermark", "0", "--disk-free-limit", "0", "--log-format", "json"}, args...)
	exited := make(chan int, 1)
	go func() {
		exited <- runServe(ctx, args, io.Discard, pw)
		pw.Close()
	}()
	defer func() {
		cancel()
		if code := <-exited; code != 0 {
			t.Errorf("herald serve exited %d", code)
		}
	}()
	// The ready line says where MQTT listens; the rest of the log is drained.
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var line struct{ Msg, MQTT string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "herald ready" {
				addr <- line.MQTT
			}
		}
		close(addr)
	}()
	var a string
	select {
	case a = <-addr:
	case <-time.After(10 * time.Second):
		t.Fatal("herald serve not ready")
	}
	if a == "" {
		t.Fatal("herald serve ended before it was ready")
	}
	nc, err := net.Dial("tcp", a)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(cp.Encode(nil, packet.V5)); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := packet.Read(bufio.NewReader(nc), packet.V5, 0)
	ack, ok := p.(*packet.Connack)
	if err != nil || !ok {
		t.Fatalf("connack %#v %v", p, err)
	}
	return ack
}
