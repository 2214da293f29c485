package bench

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

type fakeSender struct {
	sent, copies uint64
}

func (s *fakeSender) run(<-chan struct{}) error    { return nil }
func (s *fakeSender) sentCount() uint64            { return s.sent }
func (s *fakeSender) deliveriesPerMessage() uint64 { return s.copies }

type fakeReceiver struct{ received atomic.Uint64 }

func (r *fakeReceiver) receivedCount() uint64 { return r.received.Load() }

func TestTrafficMeterCounts(t *testing.T) {
	m := &trafficMeter[*fakeSender, *fakeReceiver]{
		senders:   []*fakeSender{{sent: 10, copies: 3}, {sent: 5, copies: 1}},
		receivers: []*fakeReceiver{{}, {}},
	}
	m.receivers[0].received.Store(7)
	m.receivers[1].received.Store(9)
	if sent, recv := m.counts(); sent != 15 || recv != 16 {
		t.Errorf("counts = %d, %d", sent, recv)
	}
	if got := m.expected(); got != 35 {
		t.Errorf("expected = %d, want 10*3 + 5*1", got)
	}
}

// The warmup's messages stay out of the window's figures, the schedule
// latency is filed under the phase of the actual send time, and only what
// the meter measures is reported.
func TestTrafficMeterLatencyPhases(t *testing.T) {
	r := newRun(context.Background(), Config{}, io.Discard)
	const window = int64(1_000_000_000)
	r.measureStart.Store(window)

	m := &trafficMeter[*fakeSender, *fakeReceiver]{scheduleLatency: true, confirmLatency: true}
	a, b := m.newDeliveryLatency(), m.newDeliveryLatency()
	// Sent 1µs before the window, received 2µs into it: warmup.
	a.record(r, Header{SentAt: window - 1000, Intended: window - 5000}, window+2000)
	// Sent in the window, 40µs late against the schedule, 10µs in transit.
	b.record(r, Header{SentAt: window + 50_000, Intended: window + 10_000}, window+60_000)
	b.record(r, Header{SentAt: window + 70_000, Intended: window + 70_000}, window+90_000)
	confirm := m.newConfirmLatency()
	confirm.record(r, window-1, window+100)
	confirm.record(r, window+1000, window+4000)

	res := Result{Warmup: &Phase{}}
	m.fillLatency(&res)
	if res.Count != 2 || res.Max != 20*time.Microsecond {
		t.Errorf("window latency %+v", res.LatencySummary)
	}
	if w := res.Warmup.Latency; w.Count != 1 || w.Max != 3*time.Microsecond {
		t.Errorf("warmup latency %+v", w)
	}
	if s := res.ScheduleLatency; s == nil || s.Count != 2 || s.Max != 50*time.Microsecond {
		t.Errorf("schedule latency %+v", s)
	}
	if c := res.ConfirmLatency; c == nil || c.Count != 1 || c.Max != 3*time.Microsecond {
		t.Errorf("confirm latency %+v", c)
	}
	all := NewSnapshot()
	m.latency(all)
	if all.Count() != 3 {
		t.Errorf("progress latency has %d samples, want both phases (3)", all.Count())
	}

	plain := &trafficMeter[*fakeSender, *fakeReceiver]{}
	if l := plain.newDeliveryLatency(); l.fromIntended != nil {
		t.Error("an unscheduled meter records the schedule latency")
	}
	if plain.newConfirmLatency() != nil {
		t.Error("a meter without confirms made a confirm recorder")
	}
	res = Result{}
	plain.fillLatency(&res)
	if res.ScheduleLatency != nil || res.ConfirmLatency != nil || res.Warmup != nil {
		t.Errorf("unmeasured figures reported: %+v", res)
	}
}

func TestReceiverAccountObserve(t *testing.T) {
	r := newRun(context.Background(), Config{}, io.Discard)
	a := receiverAccount{tracker: NewTracker(1), latency: new(deliveryLatency)}
	body := NewBody(HeaderSize)
	EncodeHeader(body, Header{Seq: 0, SentAt: 1, Intended: 1})
	a.observe(r, body, false, 2)
	a.observe(r, body, true, 3)
	a.observe(r, []byte("short"), false, 4)
	if a.receivedCount() != 3 || a.tracker.Duplicated != 1 || a.tracker.Redelivered != 1 || a.tracker.Malformed != 1 {
		t.Errorf("received %d, tracker %+v", a.receivedCount(), a.tracker)
	}
	if n := a.latency.fromSent[warmupPhase].Snapshot().Count(); n != 2 {
		t.Errorf("%d latency samples, want 2 (malformed bodies have none)", n)
	}
}

func TestAwaitInFlight(t *testing.T) {
	r := newRun(context.Background(), Config{Drain: time.Minute}, io.Discard)
	m := &trafficMeter[*fakeSender, *fakeReceiver]{
		senders:   []*fakeSender{{sent: 4, copies: 2}},
		receivers: []*fakeReceiver{{}},
	}
	m.receivers[0].received.Store(8)
	m.progress = newProgress(r, m)
	res := Result{DrainTimedOut: true}
	stopped := time.Now().Add(-time.Second)
	if err := m.awaitInFlight(r, &res, stopped); err != nil {
		t.Fatal(err)
	}
	if res.DrainTimedOut || res.DrainTime < time.Second || res.DrainTime > time.Minute {
		t.Errorf("drain %v, timed out %v", res.DrainTime, res.DrainTimedOut)
	}
}

func TestUnpacedNextSend(t *testing.T) {
	pc := newPacer(0, time.Now())
	if pc != nil {
		t.Fatal("rate 0 made a pacer")
	}
	before := time.Now().UnixNano()
	intended, now, ok := pc.nextSend(nil)
	if !ok || now < before || intended != now {
		t.Errorf("nextSend = %d, %d, %v", intended, now, ok)
	}
}

func TestSetDeliveryCounts(t *testing.T) {
	var res Result
	res.setDeliveryCounts(GroupTally{Expected: 10, Received: 8, Unique: 7, Lost: 3, Duplicated: 1, Redelivered: 2, OutOfOrder: 4, Malformed: 5})
	want := Result{Expected: 10, Received: 13, Lost: 3, Duplicated: 1, Redelivered: 2, OutOfOrder: 4, Malformed: 5}
	if res.Expected != want.Expected || res.Received != want.Received || res.Lost != want.Lost || res.Duplicated != want.Duplicated ||
		res.Redelivered != want.Redelivered || res.OutOfOrder != want.OutOfOrder || res.Malformed != want.Malformed {
		t.Errorf("got %+v", res)
	}
}
