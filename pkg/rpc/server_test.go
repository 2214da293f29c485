package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/heraldmq/herald/pkg/rpc/internal/amqpc"
)

type echoReq struct {
	Text string `json:"text"`
}

type echoResp struct {
	Text string `json:"text"`
}

type echoService struct{ sawDeadline time.Time }

func (e *echoService) Echo(ctx context.Context, r *echoReq) (*echoResp, error) {
	e.sawDeadline, _ = ctx.Deadline()
	return &echoResp{Text: r.Text}, nil
}

func (e *echoService) Nil(ctx context.Context, r *echoReq) (*echoResp, error) { return nil, nil }

func (e *echoService) Fail(ctx context.Context, r *echoReq) (*echoResp, error) {
	if r.Text == "plain" {
		return nil, errors.New("plain error")
	}
	return nil, Errorf(NotFound, "no %s", r.Text)
}

func (e *echoService) Boom(ctx context.Context, r *echoReq) (*echoResp, error) { panic("boom") }

func (e *echoService) Proto(ctx context.Context, r *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return wrapperspb.String(r.GetValue() + "!"), nil
}

// Shapes that are not endpoints.
func (e *echoService) Helper() string                                             { return "" }
func (e *echoService) NoCtx(r *echoReq) (*echoResp, error)                        { return nil, nil }
func (e *echoService) ValueReq(ctx context.Context, r echoReq) (*echoResp, error) { return nil, nil }

// fakeChannel records replies and acks.
type fakeChannel struct {
	mu      sync.Mutex
	replies []published
	acks    int
}

type published struct {
	key string
	msg amqpc.Publishing
}

func (f *fakeChannel) reply(key string, msg *amqpc.Publishing, ackTag uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies = append(f.replies, published{key, *msg})
	f.acks++
	return nil
}

func (f *fakeChannel) ack(tag uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acks++
	return nil
}

func testServer(t testing.TB) (*Server, *service, *echoService) {
	t.Helper()
	impl := &echoService{}
	s := NewServer(ServerConfig{ConnConfig: ConnConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}})
	if err := s.Register(impl, Service{Name: "echo"}); err != nil {
		t.Fatal(err)
	}
	return s, s.mu.services[0], impl
}

// handleOne runs one delivery through the server and returns its reply
// (nil when none) after checking it was acked exactly once.
func handleOne(t testing.TB, s *Server, sv *service, d amqpc.Delivery) *amqpc.Publishing {
	t.Helper()
	ch := &fakeChannel{}
	s.handle(context.Background(), sv, ch, new(workerScratch), &d)
	if ch.acks != 1 {
		t.Fatalf("acks %d, want one", ch.acks)
	}
	switch len(ch.replies) {
	case 0:
		return nil
	case 1:
		r := ch.replies[0]
		if r.key != d.ReplyTo || r.msg.CorrelationId != d.CorrelationId {
			t.Fatalf("reply to %q id %q for request reply_to %q id %q", r.key, r.msg.CorrelationId, d.ReplyTo, d.CorrelationId)
		}
		if st, _ := r.msg.Header(HeaderStatus); !validCode(st) {
			t.Fatalf("reply status %v", r.msg.HeaderList)
		}
		return &r.msg
	}
	t.Fatalf("%d replies", len(ch.replies))
	return nil
}

func delivery(typ string, body string) amqpc.Delivery {
	d := amqpc.Delivery{Body: []byte(body)}
	d.Type, d.ReplyTo, d.CorrelationId, d.ContentType = typ, "amq.rabbitmq.reply-to.x", "c1", ContentTypeJSON
	return d
}

func validCode(v any) bool {
	_, ok := ParseCode(tableString(v))
	return ok
}

func status(p *amqpc.Publishing) (string, string) {
	st, _ := p.Header(HeaderStatus)
	msg, _ := p.Header(HeaderError)
	return tableString(st), tableString(msg)
}

func TestRegisterFindsHandlerMethods(t *testing.T) {
	_, sv, _ := testServer(t)
	if got := strings.Join(sortedNames(sv.methods), ","); got != "Boom,Echo,Fail,Nil,Proto" {
		t.Fatalf("endpoints %s", got)
	}
	s := NewServer(ServerConfig{})
	if err := s.Register(struct{}{}, Service{Name: "x"}); err == nil {
		t.Fatal("a value without handler methods registered")
	}
	if err := s.Register(&echoService{}, Service{}); err == nil {
		t.Fatal("a service without a name registered")
	}
	must(t, s.Register(&echoService{}, Service{Name: "x"}))
	if err := s.Register(&echoService{}, Service{Name: "x"}); err == nil {
		t.Fatal("a service registered twice")
	}
	a := consumeArgs(s.mu.services[0])
	if a[ArgServiceName] != "x" || a[ArgServiceVersion] != "0.0.0" || len(a[ArgServiceID].(string)) != 16 {
		t.Fatalf("args %v", a)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestHandle(t *testing.T) {
	s, sv, impl := testServer(t)

	r := handleOne(t, s, sv, delivery("echo.Echo", `{"text":"hi"}`))
	if st, _ := status(r); st != "OK" || string(r.Body) != `{"text":"hi"}` || r.ContentType != ContentTypeJSON {
		t.Fatalf("echo: %v %s", r.HeaderList, r.Body)
	}
	if !impl.sawDeadline.IsZero() {
		t.Fatal("a request without x-deadline got a deadline")
	}
	dl := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	d := delivery("echo.Echo", `{}`)
	d.Headers = amqp.Table{HeaderDeadline: dl.UnixMilli()}
	handleOne(t, s, sv, d)
	if !impl.sawDeadline.Equal(dl) {
		t.Fatalf("handler deadline %v, want %v", impl.sawDeadline, dl)
	}

	r = handleOne(t, s, sv, delivery("echo.Nil", `{}`))
	if st, _ := status(r); st != "OK" || string(r.Body) != `{"text":""}` {
		t.Fatalf("nil reply: %v %s", r.HeaderList, r.Body)
	}
	// An empty JSON body is the zero request.
	r = handleOne(t, s, sv, delivery("echo.Echo", ``))
	if st, _ := status(r); st != "OK" {
		t.Fatalf("empty body: %v", r.HeaderList)
	}

	cases := []struct {
		typ, body, ct, status, msg string
	}{
		{"echo.Fail", `{"text":"thing"}`, "", "NOT_FOUND", "no thing"},
		{"echo.Fail", `{"text":"plain"}`, "", "UNKNOWN", "plain error"},
		{"echo.Boom", `{}`, "", "INTERNAL", "handler panicked"},
		{"echo.Missing", `{}`, "", "UNIMPLEMENTED", ""},
		{"other.Echo", `{}`, "", "UNIMPLEMENTED", ""},
		{"echo", `{}`, "", "UNIMPLEMENTED", ""},
		{"echo.Echo", `{"text":`, "", "INVALID_ARGUMENT", ""},
		{"echo.Echo", `[1]`, "", "INVALID_ARGUMENT", ""},
		{"echo.Echo", `{}`, "text/plain", "INVALID_ARGUMENT", `unsupported content type "text/plain"`},
		{"echo.Echo", "\x01", ContentTypeProtobuf, "INVALID_ARGUMENT", ""},
	}
	for _, c := range cases {
		d := delivery(c.typ, c.body)
		if c.ct != "" {
			d.ContentType = c.ct
		}
		r := handleOne(t, s, sv, d)
		st, msg := status(r)
		if st != c.status || (c.msg != "" && msg != c.msg) || len(r.Body) != 0 {
			t.Errorf("%s %q: status %q %q body %q, want %q %q", c.typ, c.body, st, msg, r.Body, c.status, c.msg)
		}
	}
}

func TestHandleProtobuf(t *testing.T) {
	s, sv, _ := testServer(t)
	body, _ := proto.Marshal(wrapperspb.String("hi"))
	d := delivery("echo.Proto", string(body))
	d.ContentType = ContentTypeProtobuf
	r := handleOne(t, s, sv, d)
	var out wrapperspb.StringValue
	must(t, proto.Unmarshal(r.Body, &out))
	if st, _ := status(r); st != "OK" || out.GetValue() != "hi!" || r.ContentType != ContentTypeProtobuf {
		t.Fatalf("%v %q %q", r.HeaderList, out.GetValue(), r.ContentType)
	}
	// The same method also speaks JSON (protobuf messages encode with
	// encoding/json as plain structs).
	r = handleOne(t, s, sv, delivery("echo.Proto", `{"value":"j"}`))
	var j map[string]string
	must(t, json.Unmarshal(r.Body, &j))
	if j["value"] != "j!" {
		t.Fatalf("json to a proto method: %s", r.Body)
	}
}

// TestHandleDropsWhatCannotBeAnswered: no reply_to, no type, or past the
// deadline: acked (so it does not come back), not run, no reply.
func TestHandleDropsWhatCannotBeAnswered(t *testing.T) {
	s, sv, impl := testServer(t)
	noReply := delivery("echo.Echo", `{}`)
	noReply.ReplyTo = ""
	noType := delivery("", `{}`)
	late := delivery("echo.Echo", `{}`)
	late.Headers = amqp.Table{HeaderDeadline: time.Now().Add(-time.Millisecond).UnixMilli()}
	for _, d := range []amqpc.Delivery{noReply, noType, late} {
		if r := handleOne(t, s, sv, d); r != nil {
			t.Fatalf("reply %v to %+v", r.HeaderList, d)
		}
	}
	if !impl.sawDeadline.IsZero() {
		t.Fatal("a late request ran")
	}
}

// FuzzHandle: whatever a client sends, the server acks it once, does not
// crash, and any reply carries a status it knows.
func FuzzHandle(f *testing.F) {
	f.Add("echo.Echo", "r", "application/json", "1", []byte(`{"text":"x"}`))
	f.Add("echo.Proto", "r", "application/protobuf", "99999999999999", []byte{0x0a, 0x01, 'x'})
	f.Add("echo", "", "", "", []byte{})
	f.Add("echo.Boom", "r", "application/json; charset=utf-8", "-5", []byte(`{}`))
	f.Add(".", "r", "text/", "x", []byte(`{"text":[]}`))
	s, sv, _ := testServer(f)
	f.Fuzz(func(t *testing.T, typ, replyTo, ct, deadline string, body []byte) {
		d := amqpc.Delivery{Body: body}
		d.Type, d.ReplyTo, d.ContentType, d.CorrelationId = typ, replyTo, ct, "id"
		if deadline != "" {
			d.Headers = amqp.Table{HeaderDeadline: deadline}
		}
		handleOne(t, s, sv, d)
	})
}

// valueService has value receivers: registered as a value, its handlers
// are called on a copy behind a pointer.
type valueService struct{ suffix string }

func (v valueService) Echo(_ context.Context, r *echoReq) (*echoResp, error) {
	return &echoResp{Text: r.Text + v.suffix}, nil
}

func (v valueService) Nil(context.Context, *echoReq) (*echoResp, error) { return nil, nil }

func (v valueService) Fail(context.Context, *echoReq) (*echoResp, error) {
	return nil, Errorf(NotFound, "none")
}

// mapService is a value that is itself one word (a map).
type mapService map[string]string

func (m mapService) Echo(_ context.Context, r *echoReq) (*echoResp, error) {
	return &echoResp{Text: r.Text + m["suffix"]}, nil
}

func (m mapService) Nil(context.Context, *echoReq) (*echoResp, error) { return nil, nil }

func (m mapService) Fail(context.Context, *echoReq) (*echoResp, error) {
	return nil, Errorf(NotFound, "none")
}

// TestHandleValueAndPointer: services registered as values (of a struct
// type and of a one-word type) and as a pointer answer alike.
func TestHandleValueAndPointer(t *testing.T) {
	quiet := ConnConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, impl := range []any{valueService{suffix: "!"}, &valueService{suffix: "!"}, mapService{"suffix": "!"}} {
		s := NewServer(ServerConfig{ConnConfig: quiet})
		must(t, s.Register(impl, Service{Name: "v"}))
		sv := s.mu.services[0]
		r := handleOne(t, s, sv, delivery("v.Echo", `{"text":"hi"}`))
		if st, _ := status(r); st != "OK" || string(r.Body) != `{"text":"hi!"}` {
			t.Errorf("%T echo: %s %s", impl, st, r.Body)
		}
		r = handleOne(t, s, sv, delivery("v.Nil", `{}`))
		if st, _ := status(r); st != "OK" || string(r.Body) != `{"text":""}` {
			t.Errorf("%T nil: %s %s", impl, st, r.Body)
		}
		r = handleOne(t, s, sv, delivery("v.Fail", `{}`))
		if st, msg := status(r); st != "NOT_FOUND" || msg != "none" {
			t.Errorf("%T fail: %s %s", impl, st, msg)
		}
	}
}
