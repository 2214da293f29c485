package httpapi

import (
	"fmt"
	"net/http"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/web"
)

// Per-user messages. Every /ws socket gets a hidden queue of its own bound
// to the built-in direct exchange amq.herald.user (broker.UserExchange)
// with its user's name as routing key, and consumes it under the
// subscription id "$user". So whatever reaches that exchange with key U
// reaches every socket of user U: a send op from a browser, POST
// /api/users/{vhost}/{user}/messages from a backend, or a plain AMQP,
// MQTT or STOMP publish to amq.herald.user with routing key U.
//
// The queue is made when the first message to U is routed
// (broker.UserListener), not at connect: a queue, its binding and its
// consumer would cost every idle socket over a KiB, and most never
// receive a per-user message.
//
// Sending to U over the web needs write on the per-user resource
// "amq.herald.user.U" (an exchange-type resource in the permission
// regexps, e.g. "^amq\.herald\.user\." for every user). The answer never
// says whether U exists or is connected: a message to nobody is dropped
// as a publish that routes nowhere is.

// userSubID is the subscription id of per-user messages.
const userSubID = "$user"

// userResource is the resource checked for sending to user.
func userResource(user string) string { return broker.UserExchange + "." + user }

// listenUser registers the socket for its user's messages: the first one
// routed to the user makes its queue (openUserQueue).
func (ws *wsSession) listenUser() {
	ws.rt.listen = ws.vhost.ListenUser(ws.user.Name, ws.openUserQueue)
}

// openUserQueue starts the socket's per-user subscription; it runs on the
// goroutine of the first publisher to the user, before that message is
// routed. A failure (the vhost is being deleted) leaves the socket
// without per-user messages.
func (ws *wsSession) openUserQueue() {
	q, err := ws.vhost.DeclareUserQueue(ws.user.Name, ws.owner)
	if err != nil {
		ws.logger().Warn("no per-user messages for this websocket", "err", err)
		return
	}
	// private: a user queue that the socket does not drain counts as a
	// slow subscription (closed beyond --slow-subscriber-depth).
	x := &sub{o: ws.ob, id: userSubID, queue: q, auto: true, private: true, noAck: true}
	if err := ws.consume(x, 0); err != nil {
		ws.logger().Warn("no per-user messages for this websocket", "err", err)
		_, _ = ws.vhost.DeleteQueue(q.Name(), ws.owner, false, false)
		return
	}
	ws.mu.Lock()
	ws.rt.user = x
	ws.mu.Unlock()
	ws.start(x)
}

// userMessage builds the message that sends body to user to: through
// amq.herald.user, with user_id set to the sender (whom the receiver can
// answer).
func userMessage(to, from string, props broker.Properties, body []byte) *broker.Message {
	props.UserID = from
	return &broker.Message{Exchange: broker.UserExchange, RoutingKey: to, Properties: props, Body: body}
}

// sendToUser runs {"op":"send","to":"U",...} (the publish op's body,
// encoding, properties and headers). With confirm it answers
// {"op":"confirmed","id":...} with no "routed": whether U is connected
// is not the sender's to learn.
func (ws *wsSession) sendToUser(f *wsFrame) {
	f.Exchange = nil
	f.Key = ""
	m, err := f.message()
	if err == nil {
		err = checkUserID(&m.Properties, ws.user.Name)
	}
	if err != nil {
		ws.publishError(f.ID, http.StatusBadRequest, err.Error())
		return
	}
	if err := ws.s.check(ws.user, ws.vhost, auth.Write, auth.Exchange, userResource(f.To)); err != nil {
		ws.publishError(f.ID, web.HTTPStatus(err), err.Error())
		return
	}
	if !ws.rate.Wait(ws.stop) {
		return
	}
	m = userMessage(f.To, ws.user.Name, m.Properties, m.Body)
	if _, err := ws.publisher().Publish(m); err != nil {
		ws.publishError(f.ID, web.HTTPStatus(err), err.Error())
		return
	}
	ws.reg.CountPublish()
	if f.Confirm {
		ws.confirmQueue().Confirm(ws.publisher(), wsAnswer{id: f.ID, confirm: true, b: mustJSON(map[string]any{"op": "confirmed", "id": f.ID})})
		ws.confirms.Wait(maxUnsentConfirms, ws.stop)
		ws.ob.waitControl()
	}
}

// userMessageRequest is the body of POST /api/users/{vhost}/{user}/messages:
// the publish endpoint's, without a routing key.
type userMessageRequest = messageBody

// postUserMessage sends to every /ws socket of a user. It answers
// {"sent": true} whether or not anyone received it.
func (s *Server) postUserMessage(w http.ResponseWriter, r *http.Request) {
	v := s.usableVHost(w, r, r.PathValue("vhost"))
	if v == nil {
		return
	}
	var req userMessageRequest
	body, props, ok := s.decodeMessage(w, r, &req, &req)
	if !ok {
		return
	}
	if err := checkUserID(&props, userOf(r).Name); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	to := r.PathValue("user")
	if err := s.check(userOf(r), v, auth.Write, auth.Exchange, userResource(to)); err != nil {
		writeBrokerError(w, err)
		return
	}
	if !s.allowPublish(w, r) {
		return
	}
	if _, err := publish(r.Context(), v, userMessage(to, userOf(r).Name, props, body), 0); err != nil {
		writeBrokerError(w, fmt.Errorf("sending to a user: %w", err))
		return
	}
	s.httpCount.CountPublish()
	writeJSON(w, http.StatusOK, map[string]bool{"sent": true})
}
