package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// directReplyTo is RabbitMQ's pseudo-queue for direct reply-to.
const directReplyTo = "amq.rabbitmq.reply-to"

// rpcServer consumes requests and echoes each body back to its reply_to with
// the request's correlation_id.
type rpcServer struct {
	r          *run
	cn         *conn
	deliveries <-chan amqp.Delivery
	handled    atomic.Uint64
	malformed  uint64 // requests without reply_to; read after run returns
}

func newRPCServer(r *run, id int, queue string) (*rpcServer, error) {
	cn, deliveries, err := r.consumeQueue(fmt.Sprintf("rpc server %d", id), queue, fmt.Sprintf("%ss%d", namePrefix, id))
	if err != nil {
		return nil, err
	}
	return &rpcServer{r: r, cn: cn, deliveries: deliveries}, nil
}

func (s *rpcServer) run() error {
	r := s.r
	ch := s.cn.ch
	manual := !r.cfg.AutoAck
	for {
		select {
		case d, ok := <-s.deliveries:
			if !ok {
				if r.recvStopped.Load() {
					return nil
				}
				return fmt.Errorf("%s: requests stopped: %v (the broker cancelled the consumer or closed the channel)", s.cn.name, s.cn.reason(nil))
			}
			if d.ReplyTo == "" {
				s.malformed++
			} else {
				// Not r.ctx: requests already taken should still be answered
				// after an interrupt.
				err := ch.PublishWithContext(context.Background(), "", d.ReplyTo, false, false, amqp.Publishing{
					CorrelationId: d.CorrelationId,
					DeliveryMode:  d.DeliveryMode,
					Body:          d.Body,
				})
				if err != nil {
					if r.recvStopped.Load() {
						return nil
					}
					return fmt.Errorf("%s: publishing a reply to %q failed: %w", s.cn.name, d.ReplyTo, s.cn.reason(err))
				}
			}
			if manual {
				if err := ch.Ack(d.DeliveryTag, false); err != nil {
					if r.recvStopped.Load() {
						return nil
					}
					return fmt.Errorf("%s: ack failed: %w", s.cn.name, s.cn.reason(err))
				}
			}
			s.handled.Add(1)
		case <-r.stopRecv:
			return nil
		}
	}
}

// rpcCaller sends one request at a time and waits for its reply.
type rpcCaller struct {
	r        *run
	id       int
	cn       *conn
	replies  <-chan amqp.Delivery
	replyTo  string
	reqQueue string
	rate     float64
	body     []byte
	sent     atomic.Uint64
	answered atomic.Uint64
	latency  *deliveryLatency // of the round trips

	// Read after run returns.
	lost, duplicated, timeouts, malformed uint64
}

func newRPCCaller(r *run, id int, reqQueue string, rate float64, latency *deliveryLatency) (*rpcCaller, error) {
	cn, err := r.dial(fmt.Sprintf("rpc caller %d", id))
	if err != nil {
		return nil, err
	}
	c := &rpcCaller{
		r: r, id: id, cn: cn, reqQueue: reqQueue, rate: rate,
		body: NewBody(r.cfg.Size), latency: latency,
	}
	tag := fmt.Sprintf("%sr%d", namePrefix, id)
	if r.cfg.DirectReplyTo {
		c.replyTo = directReplyTo
		c.replies, err = cn.ch.Consume(directReplyTo, tag, true, false, false, false, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: consuming from %s failed: %v — the broker does not seem to support direct reply-to; run without --direct-reply-to", cn.name, directReplyTo, err)
		}
		return c, nil
	}
	q, err := cn.ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return nil, brokerError(cn.name, "declaring a server-named exclusive reply queue", err)
	}
	if q.Name == "" {
		return nil, fmt.Errorf("%s: the broker returned an empty name for a server-named queue", cn.name)
	}
	c.replyTo = q.Name
	c.replies, err = cn.ch.Consume(q.Name, tag, true, true, false, false, nil)
	if err != nil {
		return nil, brokerError(cn.name, "consuming from reply queue "+q.Name, err)
	}
	return c, nil
}

func (c *rpcCaller) run(start <-chan struct{}) error {
	r := c.r
	select {
	case <-start:
	case <-r.stopSend:
		return nil
	}
	pc := newPacer(c.rate, time.Now())
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	pending := map[uint64]bool{} // timed-out requests whose reply may still come
	msg := amqp.Publishing{ReplyTo: c.replyTo, DeliveryMode: r.deliveryMode(), Body: c.body}
	closed := func() error {
		if r.sendStopped.Load() {
			return nil
		}
		return fmt.Errorf("%s: replies stopped: %v", c.cn.name, c.cn.reason(nil))
	}
	var seq uint64
	for !r.sendStopped.Load() {
		intended, now, ok := pc.nextSend(r.stopSend)
		if !ok {
			break
		}
		EncodeHeader(c.body, Header{Producer: uint32(c.id), Seq: seq, SentAt: now, Intended: intended})
		corr := strconv.FormatUint(seq, 10)
		msg.CorrelationId = corr
		if err := c.cn.ch.PublishWithContext(r.ctx, "", c.reqQueue, false, false, msg); err != nil {
			if r.sendStopped.Load() || r.ctx.Err() != nil {
				break
			}
			return fmt.Errorf("%s: publishing a request failed: %w", c.cn.name, c.cn.reason(err))
		}
		c.sent.Store(seq + 1)
		timer.Reset(r.cfg.RPCTimeout)
	wait:
		for {
			select {
			case d, ok := <-c.replies:
				if !ok {
					return closed()
				}
				if c.reply(d, seq, corr, pending) {
					break wait
				}
			case <-timer.C:
				c.timeouts++
				pending[seq] = true
				break wait
			case <-r.abort:
				return nil
			}
		}
		timer.Stop()
		seq++
	}
	// Give replies to timed-out requests a last chance.
	if len(pending) > 0 {
		timer.Reset(drainIdle)
	late:
		for len(pending) > 0 {
			select {
			case d, ok := <-c.replies:
				if !ok {
					break late
				}
				c.reply(d, ^uint64(0), "", pending)
			case <-timer.C:
				break late
			case <-r.abort:
				break late
			}
		}
	}
	c.lost = uint64(len(pending))
	return nil
}

// reply accounts for one reply and reports whether it answers the current
// request seq.
func (c *rpcCaller) reply(d amqp.Delivery, seq uint64, corr string, pending map[uint64]bool) bool {
	now := time.Now().UnixNano()
	h, ok := DecodeHeader(d.Body)
	if !ok || h.Producer != uint32(c.id) {
		c.malformed++
		return false
	}
	record := func() {
		c.latency.record(c.r, h, now)
		c.answered.Add(1)
	}
	switch {
	case h.Seq == seq && d.CorrelationId == corr:
		record()
		return true
	case h.Seq == seq:
		c.malformed++ // right body, wrong correlation_id
	case pending[h.Seq]:
		delete(pending, h.Seq) // late, but not lost
		record()
	default:
		c.duplicated++
	}
	return false
}

// A caller is the sender of its requests and the receiver of their replies.
func (c *rpcCaller) sentCount() uint64            { return c.sent.Load() }
func (c *rpcCaller) deliveriesPerMessage() uint64 { return 1 }
func (c *rpcCaller) receivedCount() uint64        { return c.answered.Load() }

func runRPC(r *run) (res Result, err error) {
	cfg := r.cfg
	res = r.newResult()
	admin, err := r.dial("admin")
	if err != nil {
		return res, err
	}
	var queues []string
	defer func() { r.teardown(admin, queues, "") }()

	reqQueue := r.name("rpc")
	if err := adminCall(admin, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(reqQueue, cfg.Persistent, true, false, false, nil)
		return err
	}); err != nil {
		return res, brokerError("admin", "declaring request queue "+reqQueue, err)
	}
	queues = append(queues, reqQueue)

	var servers []*rpcServer
	for i := 0; i < cfg.Consumers; i++ {
		s, err := newRPCServer(r, i, reqQueue)
		if err != nil {
			return res, err
		}
		servers = append(servers, s)
	}
	m := &trafficMeter[*rpcCaller, *rpcCaller]{scheduleLatency: cfg.Rate > 0}
	for i := 0; i < cfg.Callers; i++ {
		if err := r.ctx.Err(); err != nil {
			return res, err
		}
		rate := float64(share(cfg.Rate, cfg.Callers, i))
		c, err := newRPCCaller(r, i, reqQueue, rate, m.newDeliveryLatency())
		if err != nil {
			return res, err
		}
		m.senders = append(m.senders, c)
		m.receivers = append(m.receivers, c)
	}

	var serversWG, callersWG sync.WaitGroup
	for _, s := range servers {
		r.goWorker(&serversWG, s.run)
	}
	w, err := m.runSenders(r, &callersWG)
	if err != nil {
		return res, err
	}

	// Callers finish their request in flight (or time out), then give late
	// replies a last second.
	r.stopSending()
	drainStart := time.Now()
	limit := cfg.RPCTimeout + drainIdle + 2*time.Second
	if !waitFor(&callersWG, limit) {
		r.warn("callers did not finish within %v; closing their connections", limit)
		r.stopAll()
		for _, c := range m.senders {
			c.cn.kill()
		}
		callersWG.Wait()
	}
	res.DrainTime = time.Since(drainStart)
	select {
	case err := <-r.errs:
		return res, err
	default:
	}

	r.stopReceiving()
	if !waitFor(&serversWG, 3*time.Second) {
		for _, s := range servers {
			s.cn.kill()
		}
		serversWG.Wait()
	}

	for _, c := range m.senders {
		res.Sent += c.sent.Load()
		res.Received += c.answered.Load()
		res.Lost += c.lost
		res.Duplicated += c.duplicated
		res.Timeouts += c.timeouts
		res.Malformed += c.malformed
	}
	for _, s := range servers {
		res.Malformed += s.malformed
	}
	res.Expected = res.Sent
	r.fill(&res, w)
	m.fillLatency(&res)
	if res.Timeouts > 0 {
		r.warn("%s requests got no reply within --rpc-timeout %v", FormatCount(res.Timeouts), cfg.RPCTimeout)
	}
	res.Warnings = r.takeWarnings()
	return res, nil
}
