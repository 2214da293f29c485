package amqp091

import (
	"errors"
	"log/slog"
	"testing"
)

// confirmHarness is a channel with confirms whose outbox nobody drains:
// the test reads the items the confirms queued.
func confirmHarness() (*confirms, *outbox) {
	c := &conn{log: slog.New(slog.DiscardHandler), out: newOutbox()}
	ch := &channel{c: c, id: 3}
	ch.confirms.ch = ch
	return &ch.confirms, c.out
}

func items(o *outbox) []outItem {
	o.mu.Lock()
	defer o.mu.Unlock()
	it := o.items
	o.items = nil
	return it
}

// A group commit completes the publishes of its chunk one by one: the
// outbox holds one multiple-ack for all of them, not one ack each.
func TestConfirmsCoalesceCompletionsIntoOneMultipleAck(t *testing.T) {
	cf, o := confirmHarness()
	var seqs []uint64
	for range 1000 {
		seqs = append(seqs, cf.add(false, true))
	}
	for _, s := range seqs {
		cf.complete(s, nil)
	}
	got := items(o)
	if len(got) != 1 || got[0].kind != itemAck || got[0].tag != 1000 || !got[0].flag || got[0].channel != 3 {
		t.Fatalf("outbox = %+v, want one multiple-ack of tag 1000 on channel 3", got)
	}
	if len(cf.waiting) != 0 || cf.head != 0 {
		t.Fatalf("waiting not emptied: %d from %d", len(cf.waiting), cf.head)
	}
}

// Out of order: nothing is acked past a publish still waiting for the
// disk; a failed one is nacked between the acks around it.
func TestConfirmsOutOfOrderAndNack(t *testing.T) {
	cf, o := confirmHarness()
	for range 600 {
		cf.add(false, true)
	}
	cf.complete(2, nil)
	cf.complete(3, nil)
	if got := items(o); len(got) != 0 {
		t.Fatalf("acked past the waiting publish 1: %+v", got)
	}
	cf.complete(1, nil)
	if got := items(o); len(got) != 1 || got[0].kind != itemAck || got[0].tag != 3 || !got[0].flag {
		t.Fatalf("after 1: %+v, want ack 3 multiple", got)
	}
	for s := uint64(4); s <= 300; s++ {
		cf.complete(s, nil) // the head passes 256: the slice is compacted
	}
	cf.complete(302, nil)
	cf.complete(301, errors.New("disk"))
	got := items(o)
	if len(got) != 3 || got[0].tag != 300 || got[1].kind != itemNack || got[1].tag != 301 || got[2].kind != itemAck || got[2].tag != 302 {
		t.Fatalf("after 301 failed: %+v, want ack 300, nack 301, ack 302", got)
	}
	for s := uint64(303); s <= 600; s++ {
		cf.complete(s, nil)
	}
	if got := items(o); len(got) != 1 || got[0].tag != 600 {
		t.Fatalf("end: %+v, want ack 600", got)
	}
	cf.complete(600, nil) // twice, or unknown: nothing more
	if got := items(o); len(got) != 0 {
		t.Fatalf("a completion of a settled publish sent %+v", got)
	}
}
