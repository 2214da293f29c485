package rpc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/pkg/rpc/internal/amqpc"
)

const (
	defaultConcurrency  = 16
	defaultDrainTimeout = 30 * time.Second
	defaultVersion      = "0.0.0"
)

// ServerConfig configures a Server.
type ServerConfig struct {
	ConnConfig
	// Concurrency is how many requests each service of this instance runs
	// at once; it is also the prefetch of the service's consumer, so the
	// broker hands the instance no more than that. Default 16.
	Concurrency int
	// DrainTimeout bounds Close's wait for running requests; default 30s.
	DrainTimeout time.Duration
}

// Service describes a registered service, as announced in the consume
// arguments of its queue.
type Service struct {
	// Name is S: the queue is rpc.S, requests have type S.Method.
	Name string
	// Version is a semantic version (x-service-version); default "0.0.0".
	Version     string
	Description string
	Metadata    map[string]string
	// ID identifies this instance (x-service-id); random when empty.
	ID string
	// Concurrency overrides ServerConfig.Concurrency for this service.
	Concurrency int
}

// service is a registered value and its methods.
type service struct {
	info    Service
	methods map[string]handlerMethod
}

// Server answers the requests of the services registered on it. Its
// lifecycle: NewServer, Register each service, Start, then Shutdown or
// Close. It reconnects on its own and re-announces every service.
type Server struct {
	cfg ServerConfig
	log *slog.Logger

	// handlerCtx is the parent of every request's context; cancelled when
	// a shutdown runs out of time.
	handlerCtx    context.Context
	cancelHandler context.CancelFunc

	workers  sync.WaitGroup // every worker of every connection
	watchers sync.WaitGroup // one per connection: cancels its handlers when it drops

	mu struct {
		sync.Mutex
		services []*service
		started  bool
		closing  bool
		sess     *session
		// live are the consumers of the current connection, cancelled
		// first on shutdown so the broker stops sending.
		live []liveConsumer
	}
}

type liveConsumer struct {
	ch  *amqpc.Channel
	tag string
}

// NewServer returns a server that is not yet connected.
func NewServer(cfg ServerConfig) *Server {
	cfg.defaults()
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = defaultConcurrency
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = defaultDrainTimeout
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	s.handlerCtx, s.cancelHandler = context.WithCancel(context.Background())
	return s
}

// Register adds a service whose endpoints are impl's exported methods of
// the form func(ctx context.Context, req *Req) (*Resp, error); other
// methods are ignored. It must be called before Start.
func (s *Server) Register(impl any, info Service) error {
	if info.Name == "" {
		return errors.New("rpc: service has no name")
	}
	methods, err := methodsOf(impl)
	if err != nil {
		return err
	}
	if info.Version == "" {
		info.Version = defaultVersion
	}
	if info.ID == "" {
		info.ID = randomID()
	}
	if info.Concurrency <= 0 {
		info.Concurrency = s.cfg.Concurrency
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.started {
		return errors.New("rpc: Register after Start")
	}
	for _, sv := range s.mu.services {
		if sv.info.Name == info.Name {
			return fmt.Errorf("rpc: service %q registered twice", info.Name)
		}
	}
	s.mu.services = append(s.mu.services, &service{info: info, methods: methods})
	return nil
}

// Start connects, declares each service's queue and starts consuming. It
// fails if the first connection fails; later losses are reconnected.
func (s *Server) Start() error {
	s.mu.Lock()
	if s.mu.started {
		s.mu.Unlock()
		return errors.New("rpc: server already started")
	}
	if len(s.mu.services) == 0 {
		s.mu.Unlock()
		return errors.New("rpc: no service registered")
	}
	s.mu.started = true
	s.mu.Unlock()
	sess, err := startSession(s.cfg.ConnConfig, s.announce)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.mu.sess = sess
	s.mu.Unlock()
	return nil
}

// announce runs on every (re)connection: one channel per service with
// the service's prefetch, its queue declared and consumed with the
// x-service-* arguments, and Concurrency workers on the deliveries.
func (s *Server) announce(conn *amqpc.Conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closing {
		return ErrClosed
	}
	s.mu.live = s.mu.live[:0]
	// When this connection drops, the broker requeues every request it
	// had not acked, for another instance or for this one once back:
	// running handlers are told to stop, as their replies are moot.
	connCtx, cancel := context.WithCancel(s.handlerCtx)
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	s.watchers.Add(1)
	go func() {
		defer s.watchers.Done()
		<-closed
		cancel()
	}()
	for _, sv := range s.mu.services {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		if err := ch.Qos(sv.info.Concurrency); err != nil {
			return err
		}
		q := QueueName(sv.info.Name)
		// Not durable, auto-delete, not exclusive: every instance shares
		// it, and it goes with the last one so callers fail fast.
		if _, err := ch.QueueDeclare(q, false, true, false, nil); err != nil {
			return fmt.Errorf("rpc: declare %s: %w", q, err)
		}
		tag := "rpc." + sv.info.Name + "." + sv.info.ID
		// The connection's reader hands each request to a worker through
		// this channel; the prefetch (Concurrency) bounds what is in it,
		// so the hand-off never blocks the reader.
		deliveries := make(chan *amqpc.Delivery, sv.info.Concurrency)
		var endOnce sync.Once
		end := func() { endOnce.Do(func() { close(deliveries) }) }
		if _, err := ch.Consume(q, tag, false, false, consumeArgs(sv),
			func(d *amqpc.Delivery) { deliveries <- d }, end); err != nil {
			return fmt.Errorf("rpc: consume %s: %w", q, err)
		}
		s.mu.live = append(s.mu.live, liveConsumer{ch: ch, tag: tag})
		// A channel the broker closes (an error of ours) would leave the
		// service silently unserved on a live connection: drop the
		// connection instead, so the session reconnects and re-announces.
		chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
		s.watchers.Add(1)
		go func() {
			defer s.watchers.Done()
			if err := <-chClosed; err != nil && !conn.IsClosed() {
				s.log.Warn("rpc: the broker closed a service's channel; reconnecting", "service", sv.info.Name, "err", err)
				_ = conn.Close()
			}
		}()
		r := channelReplier{ch}
		for range sv.info.Concurrency {
			s.workers.Add(1)
			go s.work(connCtx, sv, r, deliveries)
		}
	}
	return nil
}

func consumeArgs(sv *service) amqp.Table {
	endpoints := make([]any, 0, len(sv.methods))
	for _, n := range sortedNames(sv.methods) {
		endpoints = append(endpoints, n)
	}
	meta := amqp.Table{}
	for k, v := range sv.info.Metadata {
		meta[k] = v
	}
	args := amqp.Table{
		ArgServiceName:      sv.info.Name,
		ArgServiceVersion:   sv.info.Version,
		ArgServiceID:        sv.info.ID,
		ArgServiceEndpoints: endpoints,
		ArgServiceMetadata:  meta,
	}
	if sv.info.Description != "" {
		args[ArgServiceDescription] = sv.info.Description
	}
	return args
}

// replier is where a worker sends replies and acks: the service's
// channel (an interface so the request handling is unit-tested with a
// fake).
type replier interface {
	// reply publishes msg to the default exchange with key, and acks the
	// request ackTag in the same write.
	reply(key string, msg *amqpc.Publishing, ackTag uint64) error
	ack(tag uint64) error
}

type channelReplier struct{ ch *amqpc.Channel }

func (r channelReplier) reply(key string, msg *amqpc.Publishing, ackTag uint64) error {
	// No mandatory flag: a caller that has gone leaves nothing to tell.
	return r.ch.PublishAck("", key, false, msg, ackTag)
}

func (r channelReplier) ack(tag uint64) error { return r.ch.Ack(tag, false) }

// work answers deliveries until the consumer is cancelled or the
// connection goes (the broker then requeues what was not acked).
func (s *Server) work(ctx context.Context, sv *service, ch replier, deliveries <-chan *amqpc.Delivery) {
	defer s.workers.Done()
	sc := new(workerScratch)
	for d := range deliveries {
		s.handle(ctx, sv, ch, sc, d)
		// Answered: the request (decoded into values of its own, its
		// reply encoded and written) holds nothing of the delivery.
		d.Release()
	}
}

// workerScratch is what a worker reuses from one request to the next:
// the reply under construction (encoded before reply returns; built
// afresh, the publishing and its header list were two allocations per
// call, as they reach the replier through an interface) and its body's
// encoding buffer.
type workerScratch struct {
	pub     amqpc.Publishing
	headers [2]amqpc.Field
	body    []byte
}

func (s *Server) handle(ctx context.Context, sv *service, ch replier, sc *workerScratch, d *amqpc.Delivery) {
	req, err := parseRequest(d)
	switch {
	case errors.Is(err, errNoReplyTo), errors.Is(err, errNoType):
		// No way to answer (or nothing to run): say so where an operator
		// looks, and take it off the queue so it does not come back.
		s.log.Warn("rpc: request dropped", "service", sv.info.Name, "reason", err,
			"type", d.Type, "correlation_id", d.CorrelationId, "reply_to", d.ReplyTo)
		_ = ch.ack(d.DeliveryTag)
		return
	case errors.Is(err, errBadType):
		s.reply(ch, sc, d, req, nil, nil, Errorf(Unimplemented, "type %q is not service.method", d.Type))
		return
	case err != nil:
		s.reply(ch, sc, d, req, nil, nil, Errorf(InvalidArgument, "%v", err))
		return
	}
	if !req.deadline.IsZero() && !time.Now().Before(req.deadline) {
		// The caller has given up: running it would be wasted work, and
		// a reply would go nowhere.
		s.log.Debug("rpc: request past its deadline, not run", "type", d.Type,
			"late", time.Since(req.deadline), "correlation_id", d.CorrelationId)
		_ = ch.ack(d.DeliveryTag)
		return
	}
	m, ok := sv.methods[req.method]
	if !ok || req.service != sv.info.Name {
		s.reply(ch, sc, d, req, nil, nil, Errorf(Unimplemented, "%s has no method %q", sv.info.Name, d.Type))
		return
	}
	c, ok := codecByType(req.contentType)
	if !ok {
		s.reply(ch, sc, d, req, nil, nil, Errorf(InvalidArgument, "unsupported content type %q", req.contentType))
		return
	}
	in := reflect.New(m.reqType)
	if err := c.unmarshal(d.Body, in.Interface()); err != nil {
		s.reply(ch, sc, d, req, nil, nil, Errorf(InvalidArgument, "malformed %s request: %v", c.contentType(), err))
		return
	}
	if !req.deadline.IsZero() {
		dc := &deadlineCtx{Context: ctx, deadline: req.deadline}
		defer dc.release()
		ctx = dc
	}
	out, err := s.invoke(ctx, sv, req, m, in)
	s.reply(ch, sc, d, req, c, out, err)
}

// invoke runs a handler; a panic becomes INTERNAL and a log line with the
// stack, never a crash of the instance.
func (s *Server) invoke(ctx context.Context, sv *service, req request, m handlerMethod, in reflect.Value) (out any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("rpc: handler panicked", "service", sv.info.Name, "method", req.method,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			out, err = nil, Errorf(Internal, "handler panicked")
		}
	}()
	return m.call(ctx, in)
}

// reply answers a request on the default exchange with its reply_to as
// the key, then acks it. With an error the body is empty and the status
// and message go in x-rpc-status and x-rpc-error; c is nil when the
// request was refused before its codec was known (JSON is then named).
func (s *Server) reply(ch replier, sc *workerScratch, d *amqpc.Delivery, req request, c codec, out any, herr error) {
	if c == nil {
		c = jsonCodec{}
		if k, ok := codecByType(req.contentType); ok {
			c = k
		}
	}
	sc.pub = amqpc.Publishing{}
	pub := &sc.pub
	pub.CorrelationId = req.correlationID
	pub.ContentType = c.contentType()
	if herr == nil {
		body, err := c.marshal(sc.body, out)
		sc.body = keepBody(body)
		if err != nil {
			s.log.Error("rpc: reply does not encode", "type", d.Type, "err", err)
			herr = Errorf(Internal, "reply does not encode as %s", c.contentType())
		} else {
			pub.Body = body
		}
	}
	code := CodeOf(herr)
	headers := &sc.headers
	*headers = [2]amqpc.Field{{Key: HeaderStatus, Value: statusValue(code)}}
	pub.HeaderList = headers[:1]
	if herr != nil {
		msg := herr.Error()
		var e *Error
		if errors.As(herr, &e) {
			msg = e.Message
		}
		headers[1] = amqpc.Field{Key: HeaderError, Value: msg}
		pub.HeaderList = headers[:2]
	}
	if err := ch.reply(req.replyTo, pub, d.DeliveryTag); err != nil {
		s.log.Warn("rpc: reply not sent", "type", d.Type, "err", err)
		_ = ch.ack(d.DeliveryTag)
	}
}

// statusValue is code's name as a header value; OK, by far the most
// common, without the allocation of boxing a computed string.
func statusValue(code Code) any {
	if code == OK {
		return "OK"
	}
	return code.String()
}

// Shutdown drains: it cancels every consumer (the broker stops sending;
// the last instance's leaving deletes the queue), lets the requests
// already received finish and be answered, then closes the connection.
// If ctx ends first, running handlers see their context cancelled, the
// connection is closed (the broker requeues what was not answered) and
// ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.mu.closing {
		s.mu.Unlock()
		return nil
	}
	s.mu.closing = true
	sess, live := s.mu.sess, s.mu.live
	s.mu.live = nil
	s.mu.Unlock()
	if sess == nil {
		return nil
	}
	for _, lc := range live {
		// An error means the channel or connection is already gone, and
		// with it the consumer.
		_ = lc.ch.Cancel(lc.tag)
	}
	drained := make(chan struct{})
	go func() {
		s.workers.Wait()
		close(drained)
	}()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = ctx.Err()
		s.cancelHandler()
	}
	// Closing the connection ends the workers that did not drain (their
	// deliveries close); wait for them so none outlives Shutdown.
	_ = sess.close(context.Background())
	<-drained
	s.watchers.Wait()
	s.cancelHandler()
	return err
}

// Close is Shutdown bounded by ServerConfig.DrainTimeout.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	return s.Shutdown(ctx)
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
