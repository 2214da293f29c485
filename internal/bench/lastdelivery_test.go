package bench

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"
)

func TestLastDeliveryRecordsTheSlowestSubscriber(t *testing.T) {
	r := newRun(context.Background(), Config{}, io.Discard)
	r.measureStart.Store(0) // everything is in the window
	l := newLastDelivery(3)
	base := time.Now().UnixNano()
	l.arm(r, 0, base)
	l.record(r, 0, base+int64(time.Millisecond))
	l.record(r, 0, base+int64(40*time.Millisecond)) // the slowest arrives second
	l.record(r, 0, base+int64(2*time.Millisecond))
	l.arm(r, 1, base)
	l.record(r, 1, base+int64(time.Millisecond)) // one of three: incomplete
	l.record(r, 7, base)                         // never armed: stray

	res := l.result()
	if res.Messages != 2 || res.Complete != 1 || res.Incomplete != 1 || res.Stray != 1 {
		t.Fatalf("got %+v, want 2 messages, 1 complete, 1 incomplete, 1 stray", res)
	}
	if got := res.Latency.Max; got < 39*time.Millisecond || got > 41*time.Millisecond {
		t.Errorf("last delivery latency = %v, want ~40ms (the slowest subscriber)", got)
	}
}

func TestParseSourceAddrs(t *testing.T) {
	got, err := ParseSourceAddrs("127.0.0.2-127.0.0.4, 127.0.1.9")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.1.9"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"127.0.0", "127.0.0.5-127.0.0.2", "127.0.0.2-127.0.1.3", "localhost", "127.0.0.300"} {
		if _, err := ParseSourceAddrs(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
