package httpapi

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/wsconn"
)

// In-band login of /ws.
//
// A page that cannot put a token on the upgrade (no headers on a browser
// WebSocket, and a token in the URL ends up in proxies' logs) opens /ws
// without credentials and sends {"op":"connect","token":"<JWT>"} as its
// first frame; the socket is then the token's user, exactly as with
// Authorization: Bearer. This needs bearer tokens to be enabled; without
// them a socket without credentials is refused with 401 as before (the
// shell's AuthenticatedInBand routes the upgrade here).

// serveWSConnect accepts a socket, waits for its connect frame and runs
// it as the token's user. A refusal closes the socket with 1008 and the
// reason (a browser cannot read the status of a refused upgrade).
func (s *Server) serveWSConnect(w http.ResponseWriter, r *http.Request) {
	if !s.track() {
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "server shutting down")
		return
	}
	defer s.untrack()
	c, err := wsconn.Accept(w, r, s.wsAcceptOptions())
	if err != nil {
		s.log.Info("websocket upgrade refused", "remote", r.RemoteAddr, "err", err)
		return
	}
	refuse := func(reason string) {
		s.log.Info("websocket login refused", "remote", r.RemoteAddr, "reason", reason)
		_ = c.Close(wsconn.StatusPolicyViolation, truncateReason(reason))
	}
	// The connect frame must come within wsConnectTimeout (and before
	// shutdown).
	_ = c.SetReadDeadline(time.Now().Add(wsConnectTimeout))
	stopShutdown := context.AfterFunc(s.ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	_, b, err := c.ReadMessage()
	stopShutdown()
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		refuse("no connect frame")
		return
	}
	f, err := parseFrame(b)
	if err != nil {
		refuse(err.Error())
		return
	}
	if f.Op != "connect" || f.Token == "" {
		refuse(`the first frame must be {"op":"connect","token":"<JWT>"} (or log in on the upgrade)`)
		return
	}
	u, err := s.shell.VerifyToken(f.Token)
	if err != nil {
		refuse(err.Error())
		return
	}
	vname := r.URL.Query().Get("vhost")
	if vname == "" {
		vname = broker.DefaultVHost
	}
	v := s.broker.VHost(vname)
	if v == nil {
		refuse("no vhost '" + vname + "'")
		return
	}
	if err := s.shell.CheckerFor(u).CheckVHost(u.Name, v.Name()); err != nil {
		refuse(err.Error())
		return
	}
	id := f.ID
	s.startWS(c, r, u, v, &id)
}

// wsAcceptOptions are /ws's origin rules (same-origin pages and the
// origins Config.CORSOrigins names, "*": any) and its limits.
func (s *Server) wsAcceptOptions() *wsconn.Options {
	return &wsconn.Options{
		OriginPatterns: s.cfg.CORSOrigins,
		AnyOrigin:      slices.Contains(s.cfg.CORSOrigins, "*"),
		ReadLimit:      s.cfg.MaxBodySize,
		WriteTimeout:   s.cfg.WriteTimeout,
		Pool:           &s.wspool,
	}
}
