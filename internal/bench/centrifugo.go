package bench

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/coder/websocket"
)

// Centrifugo dialect of ws-fanout, for side-by-side runs against
// Centrifugo (v4-v6 JSON protocol): when --url's path is
// /connection/websocket, each subscriber sends connect and subscribe
// commands for the channel "ticks" and the publisher publishes into it
// from its own client connection (the channel must allow client
// publishes), just as Herald's subscribers and publisher do over /ws. The
// publication data is {"body":"<base64 message>"}, so a push carries the
// same "body" field the /ws frames do and is read by the same code.
//
// Centrifugo config for it (anonymous clients, client publish):
//
//	{"client": {"allow_anonymous_connect_without_token": true, "allowed_origins": ["*"]},
//	 "channel": {"without_namespace": {"allow_subscribe_for_anonymous": true, "allow_subscribe_for_client": true,
//	   "allow_publish_for_anonymous": true, "allow_publish_for_client": true}}}

// centrifugoPath is the path of Centrifugo's bidirectional WebSocket.
const centrifugoPath = "/connection/websocket"

// centrifugoPing is Centrifugo's server ping (an empty command); the
// client answers with the same.
const centrifugoPing = "{}"

// subscribe opens a subscriber's subscription in the dialect of the URL.
func (d *wsDialer) subscribe(ctx context.Context, c wsConn) error {
	if !d.centrifugo {
		return wsSubscribe(ctx, c)
	}
	cmds := `{"id":1,"connect":{}}` + "\n" + `{"id":2,"subscribe":{"channel":"` + wsKey + `"}}`
	if err := c.Write(ctx, websocket.MessageText, []byte(cmds)); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, setupConnectTimeout)
	defer cancel()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return err
		}
		for _, line := range splitLines(b) {
			if string(line) == centrifugoPing {
				if err := c.Write(ctx, websocket.MessageText, line); err != nil {
					return err
				}
				continue
			}
			var m struct {
				ID    int             `json:"id"`
				Error json.RawMessage `json:"error"`
			}
			if json.Unmarshal(line, &m) != nil || m.ID == 0 {
				continue
			}
			if len(m.Error) > 0 {
				return fmt.Errorf("centrifugo refused command %d: %s", m.ID, m.Error)
			}
			if m.ID == 2 {
				return nil
			}
		}
	}
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		if i > 0 {
			out = append(out, b[:i])
		}
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return out
}

// runCentrifugo is wsPublisher.run for Centrifugo: publish commands with
// ids, whose replies a reader drains (answering pings) until the
// connection is closed at teardown.
func (p *wsPublisher) runCentrifugo(start <-chan struct{}) error {
	r := p.r
	go func() {
		for {
			_, b, err := p.c.Read(context.Background())
			if err != nil {
				return // closed at teardown
			}
			for _, line := range splitLines(b) {
				if string(line) == centrifugoPing {
					_ = p.c.Write(context.Background(), websocket.MessageText, []byte(centrifugoPing))
				}
			}
		}
	}()
	if err := p.c.Write(r.ctx, websocket.MessageText, []byte(`{"id":1,"connect":{}}`)); err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	select {
	case <-start:
	case <-r.stopSend:
		return nil
	}
	pc := newPacer(float64(r.cfg.Rate), time.Now())
	body := NewBody(r.cfg.Size)
	var frame []byte
	var seq uint64
	for !r.sendStopped.Load() {
		intended, now, ok := pc.nextSend(r.stopSend)
		if !ok {
			break
		}
		EncodeHeader(body, Header{Seq: seq, SentAt: now, Intended: intended})
		p.last.arm(r, seq, now)
		frame = append(frame[:0], `{"id":`...)
		frame = strconv.AppendUint(frame, seq+2, 10)
		frame = append(frame, `,"publish":{"channel":"`+wsKey+`","data":{"body":"`...)
		frame = base64.StdEncoding.AppendEncode(frame, body)
		frame = append(frame, `"}}}`...)
		if err := p.c.Write(r.ctx, websocket.MessageText, frame); err != nil {
			if r.sendStopped.Load() || r.ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return nil
			}
			return fmt.Errorf("publisher: %w", err)
		}
		seq++
		p.sent.Store(seq)
	}
	return nil
}
