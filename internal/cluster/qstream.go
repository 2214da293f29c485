package cluster

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// A follower's quorum batches go to the leader over one connection that
// stays open (opQStream): the follower writes a batch after another
// without waiting, the leader appends them in the order they arrive
// (raft.Apply, which pipelines) and answers each, in order, once it is
// committed. One connection, read by one goroutine, keeps a node's batches
// in order; several in flight keep the log busy.
//
// Frames: a batch is a 4-byte big-endian length and the entry
// (encodeEntry's bytes); an answer is a 2-byte big-endian length and the
// error text (empty: committed), then, for a committed batch, the count
// and the indexes (uvarints) of its ops not applied (quorumOutcome).

const (
	opQStream = "qstream"
	// qStreamDepth bounds the batches in flight on one stream.
	qStreamDepth = 32
	// qStreamIdle closes a leader's side of a stream that carries nothing.
	qStreamIdle = 5 * time.Minute
)

// serveQStream is the leader's side; r holds what the request's decoder
// read beyond the request.
func (n *Node) serveQStream(c net.Conn, r io.Reader) {
	t := n.mux.track(c)
	if t == nil {
		return
	}
	defer t.Close()
	type answer struct{ f raft.ApplyFuture }
	answers := make(chan answer, qStreamDepth)
	var wg sync.WaitGroup
	wg.Go(func() {
		w := bufio.NewWriter(c)
		for a := range answers {
			var text string
			var out quorumOutcome
			if err := a.f.Error(); err != nil {
				text = err.Error()
				if len(text) > 1024 {
					text = text[:1024]
				}
			} else {
				out, _ = a.f.Response().(quorumOutcome)
			}
			_ = c.SetWriteDeadline(time.Now().Add(qStreamIdle))
			b := binary.BigEndian.AppendUint16(nil, uint16(len(text)))
			b = append(b, text...)
			if text == "" {
				b = binary.AppendUvarint(b, uint64(len(out.gapped)))
				for _, i := range out.gapped {
					b = binary.AppendUvarint(b, uint64(i))
				}
			}
			_, _ = w.Write(b)
			if len(answers) == 0 {
				if w.Flush() != nil {
					_ = c.Close() // the reader below ends too
				}
			}
		}
	})
	defer func() {
		close(answers)
		wg.Wait()
	}()
	for {
		_ = c.SetReadDeadline(time.Now().Add(qStreamIdle))
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		size := binary.BigEndian.Uint32(hdr[:])
		if size > maxRequest {
			return
		}
		data := make([]byte, size)
		if _, err := io.ReadFull(r, data); err != nil {
			return
		}
		answers <- answer{n.raft.Apply(data, qForwardTimeout)}
	}
}

// qstream is a follower's side of one stream to the leader at addr.
type qstream struct {
	addr    string
	c       net.Conn
	w       *bufio.Writer
	pending chan []qpending // batches sent, not answered yet, in order
	broken  chan struct{}   // closed when the stream fails
	once    sync.Once
}

// openQStream dials the leader and starts reading its answers.
func (p *qproposer) openQStream(addr string) (*qstream, error) {
	c, err := p.n.mux.dial(addr, time.Second, kindRPC)
	if err != nil {
		return nil, err
	}
	hdr, _ := json.Marshal(request{Op: opQStream}) // no newline: the frames follow at once
	if _, err := c.Write(hdr); err != nil {
		c.Close()
		return nil, err
	}
	s := &qstream{addr: addr, c: c, w: bufio.NewWriterSize(c, 64<<10), pending: make(chan []qpending, qStreamDepth), broken: make(chan struct{})}
	p.n.wg.Add(1)
	go func() {
		defer p.n.wg.Done()
		p.readAnswers(s)
	}()
	return s, nil
}

func (s *qstream) fail() {
	s.once.Do(func() {
		close(s.broken)
		_ = s.c.Close()
	})
}

func (s *qstream) isBroken() bool {
	select {
	case <-s.broken:
		return true
	default:
		return false
	}
}

// dropStream closes the stream and fails the batches its reader has not
// taken (they are put back, by number); the reader finishes the one it
// reads, if any. Only the proposer's goroutine sends on a stream, so
// nothing is added meanwhile.
func (p *qproposer) dropStream() {
	s := p.stream
	if s == nil {
		return
	}
	p.stream = nil
	s.fail()
	for {
		select {
		case batch := <-s.pending:
			p.finish(batch, errors.New("cluster: the stream to the leader failed"))
			p.inflight.Add(-1)
		default:
			return
		}
	}
}

// sendQStream writes one batch; its answer finishes it later. A write
// that fails breaks the stream: the batch is then failed (and put back)
// by the reader or by dropStream.
func (p *qproposer) sendQStream(s *qstream, batch []qpending, data []byte) {
	p.inflight.Add(1)
	select {
	case s.pending <- batch:
	case <-s.broken:
		p.inflight.Add(-1)
		p.finish(batch, errors.New("cluster: the stream to the leader failed"))
		return
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(data)))
	_ = s.c.SetWriteDeadline(time.Now().Add(qForwardTimeout))
	_, err := s.w.Write(hdr[:])
	if err == nil {
		_, err = s.w.Write(data)
	}
	if err == nil {
		err = s.w.Flush()
	}
	if err != nil {
		s.fail()
	}
}

// readAnswers finishes the stream's batches as the leader answers; when
// the stream fails, the batch it waits for fails (and is put back by
// number: each op applies once however often it is sent), and it ends.
func (p *qproposer) readAnswers(s *qstream) {
	r := bufio.NewReader(s.c)
	for {
		var batch []qpending
		select {
		case batch = <-s.pending:
		case <-s.broken:
		case <-p.n.ctx.Done():
			s.fail()
		}
		if batch == nil {
			return
		}
		_ = s.c.SetReadDeadline(time.Now().Add(qForwardTimeout + time.Second))
		var hdr [2]byte
		_, err := io.ReadFull(r, hdr[:])
		var text []byte
		if err == nil {
			text = make([]byte, binary.BigEndian.Uint16(hdr[:]))
			_, err = io.ReadFull(r, text)
		}
		var gapped []int
		if err == nil && len(text) == 0 {
			var n uint64
			if n, err = binary.ReadUvarint(r); err == nil && n > uint64(len(batch)) {
				err = errors.New("bad answer")
			}
			for ; err == nil && n > 0; n-- {
				var i uint64
				if i, err = binary.ReadUvarint(r); err == nil && i >= uint64(len(batch)) {
					err = errors.New("bad answer")
				}
				gapped = append(gapped, int(i))
			}
		}
		switch {
		case err != nil:
			s.fail()
			p.finish(batch, fmt.Errorf("cluster: no answer from the leader %s: %w", s.addr, err))
		case len(text) > 0:
			p.finish(batch, fmt.Errorf("cluster: the leader did not commit the change: %s", text))
		default:
			p.finishCommitted(batch, gapped)
		}
		p.inflight.Add(-1)
	}
}
