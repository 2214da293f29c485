package test

import (
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
)

// TestMemoryAlarmSlowsNewConnections: while the memory alarm is raised the
// accept loops hold each new connection (internal/app admit: up to a
// second each, one listener takes them one at a time), so a burst of
// connects cannot grow the broker past its watermark; connections already
// open are not affected, and once the alarm clears new ones are served as
// before.
func TestMemoryAlarmSlowsNewConnections(t *testing.T) {
	t.Parallel()
	s := startServer(t, func(c *app.Config) { c.AlarmCheckInterval = 20 * time.Millisecond })
	open := s.dial(t)
	ch := mustChannel(t, open)
	q := tempQueue(t, ch)

	s.SetMemoryLimit(1) // any process uses more than a byte
	eventually(t, "the memory alarm", func() bool { return slices.Contains(s.Alarms(), "memory") })

	// Each connection waits out the admission hold before its handshake
	// is even read: two in a row take at least two holds.
	const hold = time.Second // app's admitHold
	start := time.Now()
	for range 2 {
		s.dial(t)
	}
	if took := time.Since(start); took < 2*hold {
		t.Fatalf("2 connections under the memory alarm took %v, want at least %v (admission hold)", took, 2*hold)
	}
	// The connection opened before the alarm still works (a passive
	// declare is no publish, which the alarm would hold).
	if _, err := ch.QueueDeclarePassive(q, false, true, true, false, nil); err != nil {
		t.Fatalf("an open connection under the memory alarm: %v", err)
	}

	s.SetMemoryLimit(0)
	eventually(t, "the memory alarm to clear", func() bool { return !slices.Contains(s.Alarms(), "memory") })
	c := s.dial(t)
	pch := mustChannel(t, c)
	mustPublish(t, pch, "", q, amqp.Publishing{Body: []byte("after")})
	d := recv(t, mustConsume(t, ch, q, "", true))
	if string(d.Body) != "after" {
		t.Fatalf("got %q", d.Body)
	}
}
