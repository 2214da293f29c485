package broker

import (
	"errors"
	"slices"
	"strings"

	"github.com/heraldmq/herald/internal/streamlog"
)

// What the management API reads and changes on a stream.

// StreamInfo describes a stream's retained range.
type StreamInfo struct {
	FirstOffset uint64 // first retained offset
	NextOffset  uint64 // offset the next message gets
	Messages    uint64
	Bytes       int64
	Segments    int
}

// StreamConsumerInfo is a named consumer of a stream: its stored position
// and the tags of its members now attached.
type StreamConsumerInfo struct {
	Name    string
	Offset  uint64 // the stored position (next offset it reads)
	Stored  bool   // false: the group runs but has acked nothing yet
	Members []string
}

// StreamReaderInfo is one reading group of a stream now: an anonymous
// consumer, or the members of a named one (x-stream-consumer).
type StreamReaderInfo struct {
	Name      string   // x-stream-consumer; "" = anonymous
	Consumers []string // the members' consumer tags
	Offset    uint64   // the offset after the last message delivered
	Lag       uint64   // messages from Offset to the end of the stream
	Unacked   int      // delivered and not yet settled
}

// StreamReaders lists the groups reading the stream now, by name, then
// by consumer tag.
func (q *Queue) StreamReaders() ([]StreamReaderInfo, error) {
	s, err := q.stream()
	if err != nil {
		return nil, err
	}
	end := s.log.Stats().NextOffset
	s.mu.Lock()
	out := make([]StreamReaderInfo, 0, len(s.all))
	unacked := make(map[*streamGroup]int, len(s.all))
	for _, h := range s.unacked {
		unacked[h.g]++
	}
	for _, g := range s.all {
		ri := StreamReaderInfo{Name: g.name, Offset: g.next, Unacked: unacked[g], Consumers: make([]string, 0, len(g.members))}
		for _, c := range g.members {
			ri.Consumers = append(ri.Consumers, c.tag)
		}
		if end > ri.Offset {
			ri.Lag = end - ri.Offset
		}
		out = append(out, ri)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b StreamReaderInfo) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(strings.Join(a.Consumers, ","), strings.Join(b.Consumers, ","))
	})
	return out, nil
}

// StreamMessage is a message read from a stream at Offset.
type StreamMessage struct {
	Offset  uint64
	Message *Message
}

// maxStreamPage bounds one ReadStream.
const maxStreamPage = 10000

func (q *Queue) stream() (*streamQueue, error) {
	s, ok := q.kind.(*streamQueue)
	if !ok {
		return nil, errorf(CodePreconditionFailed, "queue '%s' in vhost '%s' is not a stream", q.name, q.vhost.name)
	}
	return s, nil
}

// StreamInfo returns the stream's range; ok is false for other queue types.
func (q *Queue) StreamInfo() (StreamInfo, bool) {
	s, err := q.stream()
	if err != nil {
		return StreamInfo{}, false
	}
	st := s.log.Stats()
	return StreamInfo{FirstOffset: st.FirstOffset, NextOffset: st.NextOffset, Messages: st.NextOffset - st.FirstOffset,
		Bytes: st.Bytes, Segments: st.Segments}, true
}

// StreamConsumers lists the stream's named consumers: every stored
// position and every named group attached now.
func (q *Queue) StreamConsumers() ([]StreamConsumerInfo, error) {
	s, err := q.stream()
	if err != nil {
		return nil, err
	}
	stored := s.log.Offsets()
	byName := make(map[string]*StreamConsumerInfo)
	var out []StreamConsumerInfo
	for name, off := range stored {
		byName[name] = &StreamConsumerInfo{Name: name, Offset: off, Stored: true, Members: []string{}}
	}
	s.mu.Lock()
	for name, g := range s.groups {
		ci := byName[name]
		if ci == nil {
			ci = &StreamConsumerInfo{Name: name, Members: []string{}}
			byName[name] = ci
		}
		for _, c := range g.members {
			ci.Members = append(ci.Members, c.tag)
		}
	}
	s.mu.Unlock()
	for _, ci := range byName {
		out = append(out, *ci)
	}
	slices.SortFunc(out, func(a, b StreamConsumerInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// SetStreamOffset stores offset as consumer name's position, durably; a
// group of that name reading now continues from there.
func (q *Queue) SetStreamOffset(name string, offset uint64) error {
	s, err := q.stream()
	if err != nil {
		return err
	}
	if name == "" || len(name) > maxStreamConsumerName {
		return errorf(CodePreconditionFailed, "invalid stream consumer name: 1 to 255 bytes")
	}
	if err := s.log.StoreOffset(name, offset); err != nil {
		return errorf(CodeInternal, "cannot store the position: %v", err)
	}
	s.mu.Lock()
	if g, ok := s.groups[name]; ok {
		off := offset
		g.seekTo = &off
		g.gen++
		g.next = offset
		g.stored, g.hasStored = offset, true
		g.hasAcked = false
		clear(g.outstanding)
		g.order, g.orderHead = g.order[:0], 0
		g.redeliver = nil
		g.attention.Store(true)
		g.wake()
	}
	s.mu.Unlock()
	return nil
}

// DeleteStreamOffset forgets consumer name's stored position; it reports
// NotFound if there was none.
func (q *Queue) DeleteStreamOffset(name string) error {
	s, err := q.stream()
	if err != nil {
		return err
	}
	if _, ok := s.log.Offset(name); !ok {
		return errorf(CodeNotFound, "no stored position for consumer '%s' of stream '%s' in vhost '%s'", name, q.name, q.vhost.name)
	}
	if err := s.log.DeleteOffset(name); err != nil {
		return errorf(CodeInternal, "cannot forget the position: %v", err)
	}
	return nil
}

// ReadStream returns up to limit messages from offset (clamped to the
// retained range), without waiting for more; each carries the
// x-stream-offset header.
func (q *Queue) ReadStream(offset uint64, limit int) ([]StreamMessage, error) {
	s, err := q.stream()
	if err != nil {
		return nil, err
	}
	limit = min(max(limit, 0), maxStreamPage)
	r, err := s.log.NewReader(streamlog.AtOffset(offset))
	if err != nil {
		return nil, errorf(CodeInternal, "cannot read %v: %v", s, err)
	}
	defer r.Close()
	out := []StreamMessage{}
	for len(out) < limit {
		off, _, rec, err := r.Next()
		if errors.Is(err, streamlog.ErrCaughtUp) {
			break
		}
		if err != nil {
			return out, errorf(CodeInternal, "cannot read %v: %v", s, err)
		}
		m, err := decodeStreamRecord(rec)
		if err != nil {
			continue
		}
		if m.Properties.Headers == nil {
			m.Properties.Headers = Table{}
		}
		m.Properties.Headers["x-stream-offset"] = int64(off)
		out = append(out, StreamMessage{Offset: off, Message: m})
	}
	return out, nil
}
