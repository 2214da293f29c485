package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/web/jsonmsg"
)

// publishRequest is the body of RabbitMQ's
// POST /api/exchanges/{vhost}/{exchange}/publish.
type publishRequest struct {
	RoutingKey string `json:"routing_key"`
	messageBody
}

// messageBody is a message in a JSON request: the publish endpoint's and
// the per-user messages' bodies.
type messageBody struct {
	Payload         string        `json:"payload"`
	PayloadEncoding string        `json:"payload_encoding"`
	Properties      jsonmsg.Props `json:"properties"`
}

// decodeMessage reads the JSON request body into req and turns its message into
// the payload's bytes and broker properties; on any error it has answered
// 400 (or 413) and returns false.
func (s *Server) decodeMessage(w http.ResponseWriter, r *http.Request, req any, m *messageBody) ([]byte, broker.Properties, bool) {
	if !s.decodeBody(w, r, req) {
		return nil, broker.Properties{}, false
	}
	body, err := jsonmsg.DecodePayload(m.Payload, m.PayloadEncoding)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return nil, broker.Properties{}, false
	}
	props, err := m.Properties.ToBroker()
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return nil, broker.Properties{}, false
	}
	return body, props, true
}

func (s *Server) publishJSON(w http.ResponseWriter, r *http.Request) {
	v := s.usableVHost(w, r, r.PathValue("vhost"))
	if v == nil {
		return
	}
	var req publishRequest
	body, props, ok := s.decodeMessage(w, r, &req, &req.messageBody)
	if !ok {
		return
	}
	m := &broker.Message{Exchange: exchangeName(r.PathValue("exchange")), RoutingKey: req.RoutingKey, Properties: props, Body: body}
	s.finishPublish(w, r, v, m)
}

// publishRaw is the script-friendly form: the request body is the payload
// and the properties come from HTTP headers (see the package doc).
func (s *Server) publishRaw(w http.ResponseWriter, r *http.Request) {
	vname := r.URL.Query().Get("vhost")
	if vname == "" {
		vname = broker.DefaultVHost
	}
	v := s.usableVHost(w, r, vname)
	if v == nil {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodySize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "bad_request", "request body too large")
		} else {
			writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		}
		return
	}
	props, err := propsFromHeaders(r.Header)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	m := &broker.Message{Exchange: exchangeName(r.PathValue("exchange")), RoutingKey: r.PathValue("key"), Properties: props, Body: body}
	s.finishPublish(w, r, v, m)
}

func (s *Server) finishPublish(w http.ResponseWriter, r *http.Request, v *broker.VHost, m *broker.Message) {
	if err := checkUserID(&m.Properties, userOf(r).Name); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if err := s.check(userOf(r), v, auth.Write, auth.Exchange, m.Exchange); err != nil {
		writeBrokerError(w, err)
		return
	}
	if err := s.checkTopic(userOf(r), v, auth.Write, m.Exchange, m.RoutingKey); err != nil {
		writeBrokerError(w, err)
		return
	}
	if !s.allowPublish(w, r) {
		return
	}
	n, err := publish(r.Context(), v, m, 0)
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	s.httpCount.CountPublish()
	writeJSON(w, http.StatusOK, map[string]bool{"routed": n > 0})
}

// checkUserID enforces RabbitMQ's rule that a user_id property, if set,
// names the authenticated user.
func checkUserID(p *broker.Properties, user string) error {
	if p.UserID != "" && p.UserID != user {
		return fmt.Errorf("user_id property set to '%s' but authenticated user was '%s'", p.UserID, user)
	}
	return nil
}

// publish routes m and answers once it is as safe as a publisher confirm
// says: a persistent message (delivery_mode 2) that a durable queue took
// is on disk (the request waits for the log's group commit, which it
// shares with every other publisher). If a target queue's consumers fall
// behind, it also holds the caller until they catch up: push-back on that
// client only.
func publish(ctx context.Context, v *broker.VHost, m *broker.Message, owner broker.Owner) (int, error) {
	p := v.Publisher()
	n, err := p.Publish(m)
	if err == nil {
		err = p.RefusedError()
	}
	if err != nil {
		return n, err
	}
	if err := p.AwaitPublished(ctx.Done()); err != nil {
		return n, fmt.Errorf("the message could not be written to disk: %w", err)
	}
	if p.Congested() {
		p.WaitFlow(ctx.Done(), owner)
	}
	return n, nil
}

// headerPrefix introduces property headers of POST /v1/publish.
const headerPrefix = "X-Herald-"

// propsFromHeaders maps HTTP headers to message properties:
// Content-Type and Content-Encoding as themselves, X-Herald-<Property>
// (Delivery-Mode, Priority, Correlation-Id, Reply-To, Expiration,
// Message-Id, Timestamp, Type, User-Id, App-Id) to properties, and
// X-Herald-Header-<Name> to the AMQP header <name> (lower-cased, because
// HTTP header names are case-insensitive) as a string.
func propsFromHeaders(h http.Header) (broker.Properties, error) {
	p := broker.Properties{ContentType: h.Get("Content-Type"), ContentEncoding: h.Get("Content-Encoding")}
	for k, vs := range h {
		name, ok := strings.CutPrefix(k, headerPrefix)
		if !ok || len(vs) == 0 {
			continue
		}
		val := vs[0]
		if hdr, ok := strings.CutPrefix(name, "Header-"); ok {
			if p.Headers == nil {
				p.Headers = broker.Table{}
			}
			p.Headers[strings.ToLower(hdr)] = val
			continue
		}
		switch name {
		case "Delivery-Mode":
			if val == "persistent" {
				val = "2"
			}
			n, err := strconv.ParseUint(val, 10, 8)
			if err != nil || n < 1 || n > 2 {
				return p, fmt.Errorf("%s%s must be 1, 2 or persistent", headerPrefix, name)
			}
			p.DeliveryMode = uint8(n)
		case "Priority":
			n, err := strconv.ParseUint(val, 10, 8)
			if err != nil {
				return p, fmt.Errorf("%s%s must be 0-255", headerPrefix, name)
			}
			p.Priority = uint8(n)
		case "Timestamp":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return p, fmt.Errorf("%s%s must be seconds since the epoch", headerPrefix, name)
			}
			p.Timestamp = time.Unix(n, 0)
		case "Correlation-Id":
			p.CorrelationID = val
		case "Reply-To":
			p.ReplyTo = val
		case "Expiration":
			p.Expiration = val
		case "Message-Id":
			p.MessageID = val
		case "Type":
			p.Type = val
		case "User-Id":
			p.UserID = val
		case "App-Id":
			p.AppID = val
		default:
			return p, fmt.Errorf("unknown header %s", k)
		}
	}
	return p, nil
}
