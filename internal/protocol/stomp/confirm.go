package stomp

import (
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/stomp/frame"
)

// Receipts: a RECEIPT tells the client the server has processed its frame,
// so the receipt of a SEND of a persistent message (persistent:true) that
// a durable queue took goes out only once the message log has fsynced it,
// as RabbitMQ's plugin does with its internal publisher confirms. The
// read loop does not wait: it queues the receipt in c.confirms (the core's
// ConfirmQueue) and reads on, so the SENDs in flight share one group
// commit. Receipts, and a final ERROR, go out in the order of the frames
// they answer; one that needs no disk goes at once unless an earlier one
// is still waiting. A receipt waits for every message published since the
// last one (SENDs without a receipt header, a transaction's SENDs at
// COMMIT): after it, everything before it is safe.

// maxUnsentReceipts bounds the receipts a connection may have waiting for
// the disk; beyond it the read loop stops reading that client until the
// log catches up (push-back).
const maxUnsentReceipts = 4096

func newConfirms(c *conn) *broker.ConfirmQueue[outItem] {
	return broker.NewConfirmQueue(c.sendConfirm)
}

// sendConfirm hands a due receipt or ERROR to the writer. It runs under
// the ConfirmQueue's lock, maybe on the log's commit goroutine: it only
// queues. err is set if a message could not be written to disk: instead
// of the receipt the client gets an ERROR (and the connection closes).
func (c *conn) sendConfirm(it outItem, err error) {
	if err != nil {
		c.log.Error("stomp message not written to disk; no receipt", "err", err)
		receipt := ""
		if it.f != nil {
			receipt = it.f.Value("receipt-id")
		}
		it = outItem{f: errorFrame("internal_error", "INTERNAL_ERROR - the message could not be written to disk: "+err.Error(), receipt), close: true}
	}
	c.out.push(it)
}

// receipt queues the RECEIPT for a frame that asked for one.
func (c *conn) receipt(id string) {
	c.confirms.Confirm(c.pub, outItem{f: &frame.Frame{Command: frame.RECEIPT, Headers: []frame.Header{{Key: "receipt-id", Value: id}}}})
}
