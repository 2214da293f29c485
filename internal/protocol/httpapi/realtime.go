package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/wsconn"
	"github.com/heraldmq/herald/internal/web"
)

// The realtime side of a /ws socket: its client id, the in-band login
// and token refresh (connect, refresh), the close at token expiry, the
// heartbeat that notices a vanished peer, and the frame-rate push-back.
// Presence (presence.go) and per-user messages (usermessages.go) hang off
// the same state.

// Realtime limits that are no setting (web.Config holds the settings:
// WSHeartbeat, MaxFrameRate, MaxPresence).
const (
	// wsConnectTimeout bounds the wait for the connect frame of a socket
	// that opened without credentials.
	wsConnectTimeout = 10 * time.Second
	// maxInfoLen bounds a presence info value.
	maxInfoLen = 4096
)

// wsRealtime is a wsSession's realtime state.
type wsRealtime struct {
	// client is the socket's random id, its name in presence sets.
	client string
	// info is the presence info: the token's info claim, else none.
	info json.RawMessage
	// connectID is the id of the connect frame that logged the socket in
	// (in-band login): answered with "connected" once the session runs.
	connectID *flexString
	// listen waits for the socket's first per-user message, which makes
	// user, the subscription to its user queue ($user; guarded by
	// wsSession.mu).
	listen *broker.UserListener
	user   *sub
	// frames paces the frames the socket sends (nil: no limit), made by
	// the first (pace; read loop only).
	frames      *broker.PublishLimiter
	framesReady bool
	// paused is set while the read loop is pushed back: pongs are not
	// read then, so the heartbeat does not count a missed one.
	paused atomic.Bool
	// joined holds the presence memberships by subscription id (guarded
	// by wsSession.mu).
	joined map[string]presenceJoin

	expMu  sync.Mutex // guards expiry
	expiry *time.Timer
}

func newClientID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// openRealtime runs before the read loop: the per-user messages' listener
// and the expiry timer of a token login. (The heartbeat runs on the
// watchdog.)
func (ws *wsSession) openRealtime() {
	rt := &ws.rt
	rt.client = newClientID()
	rt.info = ws.user.Info
	ws.armExpiry(ws.user.Expires)
	ws.listenUser()
	if rt.connectID != nil {
		ws.sendConnected("connected", *rt.connectID)
	}
}

// closeRealtime runs once the read loop has ended, before the outbox
// closes.
func (ws *wsSession) closeRealtime() {
	rt := &ws.rt
	ws.s.presence.leaveAll(ws)
	if rt.listen != nil {
		rt.listen.Cancel() // openUserQueue is not running after this
	}
	ws.mu.Lock()
	user := rt.user
	ws.mu.Unlock()
	if user != nil {
		user.bc.Cancel()
	}
	rt.expMu.Lock()
	if rt.expiry != nil {
		rt.expiry.Stop()
	}
	rt.expMu.Unlock()
}

// armExpiry closes the socket with 1008 "token expired" when the token
// it logged in with expires, unless a refresh moves the time.
func (ws *wsSession) armExpiry(at time.Time) {
	if at.IsZero() {
		return
	}
	rt := &ws.rt
	rt.expMu.Lock()
	defer rt.expMu.Unlock()
	if rt.expiry != nil {
		rt.expiry.Stop()
	}
	rt.expiry = time.AfterFunc(time.Until(at), func() {
		ws.logger().Info("websocket token expired without a refresh; closing")
		ws.shutdown(wsconn.StatusPolicyViolation, "token expired")
	})
}

func (ws *wsSession) sendConnected(op string, id flexString) {
	m := map[string]any{"op": op, "client": ws.rt.client, "user": ws.user.Name}
	if id != "" {
		m["id"] = id
	}
	if !ws.user.Expires.IsZero() {
		m["expires"] = ws.user.Expires.Unix()
	}
	ws.send(m)
}

// login runs connect and refresh on a running socket. connect without a
// token answers who the socket is; with one, and refresh, it replaces
// the token the socket logged in with by a newer one of the same user
// (the permissions and the expiry are the new token's).
func (ws *wsSession) login(f *wsFrame) {
	if f.Token == "" {
		ws.sendConnected("connected", f.ID)
		return
	}
	if !ws.s.shell.TokensEnabled() {
		ws.sendError(f.ID, http.StatusBadRequest, "bearer tokens are not enabled on this server")
		return
	}
	if !ws.user.IsToken() {
		ws.sendError(f.ID, http.StatusBadRequest, "this socket logged in with a password; a token cannot replace it")
		return
	}
	u, err := ws.s.shell.VerifyToken(f.Token)
	if err != nil {
		ws.sendError(f.ID, http.StatusUnauthorized, err.Error())
		return
	}
	if u.Name != ws.user.Name {
		ws.sendError(f.ID, http.StatusForbidden, fmt.Sprintf("the token is for user '%s', the socket is '%s's", u.Name, ws.user.Name))
		return
	}
	// The socket is the new token's login from now on: its scopes, its
	// expiry. (ws.user is read by the read loop only, which runs this.)
	ws.user = u
	ws.pubAllowedOK = false
	ws.armExpiry(u.Expires)
	op := "connected"
	if f.Op == "refresh" {
		op = "refreshed"
	}
	ws.sendConnected(op, f.ID)
}

// heartbeat runs on the watchdog's ticker, every half interval: it pings
// the peer and closes the socket when the ping goes unanswered for half an
// interval, so a vanished peer (no FIN, e.g. a laptop lid closed) is gone
// within one interval and leaves its presence sets. It reports false once
// it has closed the socket. Server shutdown cancels the wait.
func (ws *wsSession) heartbeat() bool {
	if ws.rt.paused.Load() {
		return true
	}
	ctx, cancel := context.WithTimeout(ws.s.ctx, ws.s.cfg.WSHeartbeat/2)
	err := ws.c.Ping(ctx)
	cancel()
	if err == nil || ws.s.ctx.Err() != nil || ws.rt.paused.Load() {
		return true
	}
	select {
	case <-ws.done:
		return false // closed meanwhile
	default:
	}
	ws.logger().Info("websocket peer did not answer a ping; closing", "err", err)
	ws.closing.Store(true)
	_ = ws.c.CloseNow() // ends the read loop
	ws.unpark()
	return false
}

// pace pushes back a socket that floods: beyond --max-frame-rate frames a
// second the read loop stops reading until a token is due. Publishes are
// paced by --max-publish-rate and acks by the prefetch, so they pass.
func (ws *wsSession) pace(op string) {
	switch op {
	case "publish", "ack", "nack":
		return
	}
	rt := &ws.rt
	if !rt.framesReady {
		rate := ws.s.cfg.MaxFrameRate
		if rate == 0 {
			rate = web.DefaultMaxFrameRate
		}
		rt.frames, rt.framesReady = broker.NewPublishLimiter(rate), true
	}
	ws.rt.paused.Store(true)
	ws.rt.frames.Wait(ws.stop)
	ws.rt.paused.Store(false)
}

// dispatchRealtime runs the realtime ops; it reports false for an op it
// does not know.
func (ws *wsSession) dispatchRealtime(f *wsFrame) bool {
	switch f.Op {
	case "connect", "refresh":
		ws.login(f)
	case "presence":
		ws.presenceQuery(f)
	case "send":
		ws.sendToUser(f)
	default:
		return false
	}
	return true
}

// checkRealtime validates the realtime ops' frames (parseFrame).
func (f *wsFrame) checkRealtime() error {
	switch f.Op {
	case "connect":
	case "refresh":
		if f.Token == "" {
			return fmt.Errorf("refresh needs a token")
		}
	case "presence":
		if f.Channel == "" {
			return fmt.Errorf("presence needs a channel (<exchange>/<routing key>)")
		}
	case "send":
		if f.To == "" {
			return fmt.Errorf("send needs to (a user name)")
		}
		if f.Encoding != "" && f.Encoding != "string" && f.Encoding != "base64" {
			return fmt.Errorf("encoding must be string or base64, not %q", f.Encoding)
		}
	default:
		return fmt.Errorf("unknown op %q", f.Op)
	}
	return nil
}

// checkPresenceFields validates a subscribe's presence options.
func (f *wsFrame) checkPresenceFields() error {
	if len(f.Info) > maxInfoLen {
		return fmt.Errorf("info longer than %d bytes", maxInfoLen)
	}
	if (f.Presence || f.JoinLeave) && f.Exchange == nil && f.Stream == "" {
		return fmt.Errorf("presence and join_leave need an exchange subscription (the channel is <exchange>/<routing key>) or a stream's (its name)")
	}
	if (f.Presence || f.JoinLeave) && f.Exchange == nil && strings.Contains(f.Stream, "/") {
		return fmt.Errorf("stream %q has no presence channel: its name holds a /", f.Stream)
	}
	return nil
}
