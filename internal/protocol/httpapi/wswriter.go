package httpapi

import (
	"encoding/json"
	"strconv"
	"sync"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/wsconn"
)

// The /ws writer. A socket has none while its outbox is empty: the first
// queued item starts one (outbox.kick), which writes everything queued,
// each burst in one writev, and ends when the outbox is empty.
//
// A broadcast reaches many sockets as the same *broker.Message. Its
// frame differs between them only in "sub" and "tag", so the rest (the
// message's JSON: exchange, key, body, properties) is encoded once, kept
// in the server's encCache, and each socket writes its own short prefix
// followed by the shared bytes, without copying them when they are large.

// maxBatchFrame bounds one batched WebSocket message (?batch=1).
const maxBatchFrame = 256 << 10

// maxWriteBurst bounds the bytes gathered for one write.
const maxWriteBurst = 256 << 10

// maxSpareItems bounds the item slice a socket keeps between bursts.
const maxSpareItems = 16

// kick starts the writer; the outbox calls it with its lock held.
func (ws *wsSession) kick() {
	ws.writers.Add(1)
	go ws.flush()
}

// flush writes what the outbox holds until it is empty.
func (ws *wsSession) flush() {
	defer ws.writers.Done()
	var used []outItem
	for {
		batch, slow, ok := ws.ob.takeOrIdle(used)
		if !ok {
			return
		}
		if slow {
			ws.checkSlow()
		}
		ws.countDeliveries(batch)
		ok = ws.writeItems(batch)
		clear(batch) // drop message references while idle
		used = batch[:0]
		if !ok {
			// However the writer ends, wake a read loop waiting for
			// outbox room.
			ws.ob.close()
			return
		}
	}
}

// framePart is one item's frame: prefix (in the writer's scratch) then
// shared (a cached encoding or a control frame).
type framePart struct {
	prefix, shared []byte
}

// writeItems writes a batch, settling auto-ack deliveries once written.
func (ws *wsSession) writeItems(batch []outItem) bool {
	sp, _ := ws.s.wbufs.Get().(*[]byte)
	if sp == nil {
		sp = new([]byte)
	}
	scratch := (*sp)[:0]
	wb := ws.s.wspool.GetBatch()
	defer func() {
		ws.s.wspool.PutBatch(wb)
		if cap(scratch) <= maxWriteBurst {
			*sp = scratch[:0]
			ws.s.wbufs.Put(sp)
		}
	}()
	start := 0 // first item not yet written
	defer func() {
		// What is not written goes back to its queue (auto-ack
		// deliveries; the others are pending, requeued by close).
		ws.ob.unwritten(batch[start:])
	}()
	write := func(end int) bool {
		if wb.Len() > 0 {
			if err := ws.c.WriteBatch(wb); err != nil {
				ws.closing.Store(true)
				_ = ws.c.CloseNow() // ends the read loop
				ws.unpark()
				return false
			}
		}
		for i := start; i < end; i++ {
			if batch[i].sub != nil {
				ws.ob.written(&batch[i])
			}
		}
		start = end
		scratch = scratch[:0]
		return true
	}
	// In batch mode a run of items becomes one message of
	// newline-separated frames; groupStart..i is the run being gathered.
	var group []framePart
	groupSize := 0
	endGroup := func() {
		if len(group) == 0 {
			return
		}
		wb.Start(wsconn.OpText, groupSize)
		for j, p := range group {
			if j > 0 {
				wb.Append(newline)
			}
			wb.Append(p.prefix)
			wb.Append(p.shared)
		}
		clear(group)
		group, groupSize = group[:0], 0
	}
	for i := range batch {
		if ws.closing.Load() {
			return false
		}
		var p framePart
		scratch, p = ws.encodeItem(scratch, &batch[i])
		n := len(p.prefix) + len(p.shared)
		if !ws.batch {
			wb.Add(wsconn.OpText, p.prefix, p.shared)
		} else {
			if len(group) > 0 && groupSize+1+n > maxBatchFrame {
				endGroup()
			}
			if len(group) > 0 {
				groupSize++
			}
			group = append(group, p)
			groupSize += n
		}
		if wb.Size()+groupSize >= maxWriteBurst {
			endGroup()
			if !write(i + 1) {
				return false
			}
		}
	}
	endGroup()
	return write(len(batch))
}

var newline = []byte{'\n'}

// maxInlineFrame bounds a delivery a flusher writes (wsflush.go): a
// larger one goes to the socket's writer (the flusher's write copies the
// frame).
const maxInlineFrame = 16 << 10

// encodeItem encodes an item's frame: a control frame as it is, a
// delivery as its prefix (op, sub, tag) and the message's shared JSON.
func (ws *wsSession) encodeItem(scratch []byte, it *outItem) ([]byte, framePart) {
	if it.sub == nil {
		return scratch, framePart{shared: it.ctrl}
	}
	tail, ok := ws.s.encCache.tail(&it.d)
	if !ok {
		m := newMessageJSON(&it.d)
		m.Op, m.Sub, m.Tag = "message", it.sub.id, it.tag
		return scratch, framePart{shared: mustJSON(m)}
	}
	x := it.sub
	if x.idJSON == nil {
		x.idJSON, _ = json.Marshal(x.id) // a string always encodes
	}
	from := len(scratch)
	scratch = append(scratch, `{"op":"message","sub":`...)
	scratch = append(scratch, x.idJSON...)
	scratch = append(scratch, `,"tag":`...)
	scratch = strconv.AppendUint(scratch, it.tag, 10)
	scratch = append(scratch, ',')
	return scratch, framePart{prefix: scratch[from:len(scratch):len(scratch)], shared: tail[1:]}
}

// encCache keeps the JSON of recently delivered messages (a broadcast is
// one *broker.Message delivered to every subscriber's queue), bounded in
// entries and bytes; it is emptied when full.
type encCache struct {
	mu    sync.Mutex
	m     map[encKey][]byte
	bytes int
}

type encKey struct {
	m           *broker.Message
	redelivered bool
}

const (
	maxEncEntries = 128
	maxEncBytes   = 1 << 20
	maxEncBody    = 64 << 10 // larger bodies are encoded per socket
)

// tail returns the JSON object of a delivery without op, sub and tag
// (`{"exchange":...}`); ok is false for what it does not cache (a stream
// delivery, whose offset differs per reader; a large body; a message that
// cannot be encoded).
func (c *encCache) tail(d *broker.Delivery) ([]byte, bool) {
	if len(d.Message.Body) > maxEncBody {
		return nil, false
	}
	if _, ok := deliveryOffset(d); ok {
		return nil, false
	}
	k := encKey{d.Message, d.Redelivered}
	c.mu.Lock()
	b, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return b, true
	}
	b, err := json.Marshal(newMessageJSON(d))
	if err != nil || len(b) < 2 || b[0] != '{' {
		return nil, false
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxEncEntries || c.bytes+len(b) > maxEncBytes {
		c.m, c.bytes = make(map[encKey][]byte, maxEncEntries), 0
	}
	if _, dup := c.m[k]; !dup {
		c.m[k] = b
		c.bytes += len(b)
	}
	c.mu.Unlock()
	return b, true
}
