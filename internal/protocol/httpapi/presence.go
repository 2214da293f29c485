package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/wsconn"
	"github.com/heraldmq/herald/internal/web"
)

// Presence: who is subscribed to a channel. A channel is
// "<exchange>/<routing key>" (the exchange subscription's binding); a /ws
// subscription with "presence": true puts its socket in the channel's set
// under the socket's client id and user (with an info value), and one with
// "join_leave": true gets a join or leave frame for every change. A
// socket leaves when it unsubscribes or closes; the heartbeat closes a
// vanished one. Sets live in memory on this node.

// presenceKey names a channel in a vhost.
type presenceKey struct{ vhost, channel string }

// presenceJoin is what one subscription joined.
type presenceJoin struct {
	key                 presenceKey
	presence, joinLeave bool
}

// presenceClient is one member of a presence set, as clients see it.
type presenceClient struct {
	Client string          `json:"client"`
	User   string          `json:"user"`
	Info   json.RawMessage `json:"info,omitempty"`
}

// presenceChannel is one channel's set and its join/leave watchers.
// refs and watchers count subscriptions, so that a socket with two
// subscriptions to one channel is one member and gets one event.
type presenceChannel struct {
	members  map[string]presenceClient // by client id
	refs     map[string]int
	watchers map[*wsSession]int
}

// presenceHub holds every channel's presence set.
type presenceHub struct {
	limit int // members per channel

	mu    sync.Mutex // guards chans; taken before any outbox's lock
	chans map[presenceKey]*presenceChannel
}

func newPresenceHub(limit int) *presenceHub {
	if limit <= 0 {
		limit = web.DefaultMaxPresence
	}
	return &presenceHub{limit: limit, chans: map[presenceKey]*presenceChannel{}}
}

// maxPendingEvents bounds the join/leave frames waiting in one socket's
// outbox; a watcher that falls that far behind is closed ("too slow").
const maxPendingEvents = 1024

// event queues a join/leave frame without waiting (the hub's lock is
// held); false means the socket is too far behind.
func (o *outbox) event(b []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return true
	}
	if o.ctrls >= maxPendingEvents {
		return false
	}
	o.items = append(o.items, outItem{ctrl: b})
	o.ctrls++
	o.ring()
	return true
}

// notifyLocked sends a join or leave frame to the channel's watchers.
func (h *presenceHub) notifyLocked(pc *presenceChannel, op, channel string, c presenceClient) {
	if len(pc.watchers) == 0 {
		return
	}
	b := mustJSON(map[string]any{"op": op, "channel": channel, "client": c.Client, "user": c.User, "info": c.Info})
	for w := range pc.watchers {
		if !w.ob.event(b) {
			w.logger().Warn("closing a websocket that does not read its join/leave frames", "channel", channel)
			go w.shutdown(wsconn.StatusPolicyViolation, "too slow")
		}
	}
}

// join adds a subscription of ws to a channel: as a member (presence) and
// or as a watcher (joinLeave). A full set refuses a new member. Once
// admitted, answer (the subscribe's) is queued before any join frame.
func (h *presenceHub) join(ws *wsSession, k presenceKey, presence, joinLeave bool, info json.RawMessage, answer []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	pc := h.chans[k]
	if pc == nil {
		pc = &presenceChannel{members: map[string]presenceClient{}, refs: map[string]int{}, watchers: map[*wsSession]int{}}
	}
	id := ws.rt.client
	if presence && pc.refs[id] == 0 && len(pc.members) >= h.limit {
		if len(pc.members) == 0 && len(pc.watchers) == 0 {
			delete(h.chans, k)
		}
		return &broker.Error{Code: broker.CodeResourceError, Text: fmt.Sprintf(
			"presence set of channel '%s' in vhost '%s' is full: %d clients (--max-presence)", k.channel, k.vhost, h.limit)}
	}
	h.chans[k] = pc
	ws.ob.controlNoWait(answer) // bounded: one per subscribe
	if joinLeave {
		pc.watchers[ws]++
	}
	if presence {
		pc.refs[id]++
		if pc.refs[id] == 1 {
			c := presenceClient{Client: id, User: ws.user.Name, Info: info}
			pc.members[id] = c
			h.notifyLocked(pc, "join", k.channel, c)
		}
	}
	return nil
}

// leave undoes one join.
func (h *presenceHub) leave(ws *wsSession, k presenceKey, presence, joinLeave bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	pc := h.chans[k]
	if pc == nil {
		return
	}
	if joinLeave {
		if pc.watchers[ws]--; pc.watchers[ws] <= 0 {
			delete(pc.watchers, ws)
		}
	}
	id := ws.rt.client
	if presence {
		if pc.refs[id]--; pc.refs[id] <= 0 {
			delete(pc.refs, id)
			if c, ok := pc.members[id]; ok {
				delete(pc.members, id)
				h.notifyLocked(pc, "leave", k.channel, c)
			}
		}
	}
	if len(pc.members) == 0 && len(pc.watchers) == 0 {
		delete(h.chans, k)
	}
}

// leaveAll removes a closing socket from every channel.
func (h *presenceHub) leaveAll(ws *wsSession) {
	ws.mu.Lock()
	joined := ws.rt.joined
	ws.rt.joined = nil
	ws.mu.Unlock()
	for _, j := range joined {
		h.leave(ws, j.key, j.presence, j.joinLeave)
	}
}

// clients lists a channel's members, sorted by user then client.
func (h *presenceHub) clients(k presenceKey) []presenceClient {
	h.mu.Lock()
	out := []presenceClient{}
	if pc := h.chans[k]; pc != nil {
		for _, c := range pc.members {
			out = append(out, c)
		}
	}
	h.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].User != out[j].User {
			return out[i].User < out[j].User
		}
		return out[i].Client < out[j].Client
	})
	return out
}

// presenceStats counts a channel's clients and distinct users.
type presenceStats struct {
	Clients int `json:"clients"`
	Users   int `json:"users"`
}

func statsOf(cs []presenceClient) presenceStats {
	users := map[string]bool{}
	for _, c := range cs {
		users[c.User] = true
	}
	return presenceStats{Clients: len(cs), Users: len(users)}
}

// channelSummary is one line of GET /api/presence.
type channelSummary struct {
	VHost   string `json:"vhost"`
	Channel string `json:"channel"`
	presenceStats
}

// list summarizes every channel with members (vhost "" for all).
func (h *presenceHub) list(vhost string) []channelSummary {
	h.mu.Lock()
	var out []channelSummary
	for k, pc := range h.chans {
		if len(pc.members) == 0 || (vhost != "" && k.vhost != vhost) {
			continue
		}
		users := map[string]bool{}
		for _, c := range pc.members {
			users[c.User] = true
		}
		out = append(out, channelSummary{VHost: k.vhost, Channel: k.channel, presenceStats: presenceStats{Clients: len(pc.members), Users: len(users)}})
	}
	h.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].VHost != out[j].VHost {
			return out[i].VHost < out[j].VHost
		}
		return out[i].Channel < out[j].Channel
	})
	if out == nil {
		out = []channelSummary{}
	}
	return out
}

// channelOf is the channel of an exchange subscription.
func channelOf(exchange, key string) string { return exchange + "/" + key }

// checkChannel parses a channel and checks that u may read it, as
// subscribing needs: read on its exchange, or on the stream a channel
// without "/" names (a name that is no stream is no channel).
func (s *Server) checkChannel(u *auth.User, v *broker.VHost, channel string) error {
	bad := &broker.Error{Code: broker.CodeCommandInvalid, Text: fmt.Sprintf("channel %q is not <exchange>/<routing key> nor a stream's name", channel)}
	ex, _, ok := strings.Cut(channel, "/")
	if !ok && channel != "" {
		// A channel with no "/" is a stream's: reading it is reading the
		// stream, and it must be one.
		if err := s.check(u, v, auth.Read, auth.Queue, channel); err != nil {
			return err
		}
		if q, err := v.Queue(channel); err != nil || q.Type() != broker.QueueTypeStream {
			return bad
		}
		return nil
	}
	if ex == "" {
		return bad
	}
	return s.check(u, v, auth.Read, auth.Exchange, ex)
}

// joinPresence runs after a subscribe that asked for presence or
// join_leave; on a refusal (a full set) the subscription is undone.
func (ws *wsSession) joinPresence(x *sub, f *wsFrame, answer []byte) (answered bool, err error) {
	if !f.Presence && !f.JoinLeave {
		return false, nil
	}
	info := ws.rt.info
	if len(info) == 0 && len(f.Info) > 0 {
		info = f.Info
	}
	ch := f.Stream // a stream's channel is its name
	if f.Exchange != nil {
		ch = channelOf(exchangeName(*f.Exchange), f.Key)
	}
	k := presenceKey{ws.vhost.Name(), ch}
	if err := ws.s.presence.join(ws, k, f.Presence, f.JoinLeave, info, answer); err != nil {
		return false, err
	}
	ws.mu.Lock()
	if ws.rt.joined == nil {
		ws.rt.joined = map[string]presenceJoin{} // made by the first join: most sockets never join
	}
	ws.rt.joined[x.id] = presenceJoin{key: k, presence: f.Presence, joinLeave: f.JoinLeave}
	ws.mu.Unlock()
	return true, nil
}

// leavePresence runs when a subscription ends.
func (ws *wsSession) leavePresence(x *sub) {
	ws.mu.Lock()
	j, ok := ws.rt.joined[x.id]
	delete(ws.rt.joined, x.id)
	ws.mu.Unlock()
	if ok {
		ws.s.presence.leave(ws, j.key, j.presence, j.joinLeave)
	}
}

// presenceQuery answers {"op":"presence","channel":...}: any socket that
// may read the channel, subscribed or not.
func (ws *wsSession) presenceQuery(f *wsFrame) {
	if err := ws.s.checkChannel(ws.user, ws.vhost, f.Channel); err != nil {
		ws.brokerError(f.ID, err)
		return
	}
	cs := ws.s.presence.clients(presenceKey{ws.vhost.Name(), f.Channel})
	m := map[string]any{"op": "presence", "channel": f.Channel, "clients": cs}
	if f.ID != "" {
		m["id"] = f.ID
	}
	ws.send(m)
}

// getPresence serves GET /api/presence/{vhost}/{channel}[/stats].
func (s *Server) getPresence(w http.ResponseWriter, r *http.Request) {
	v := s.usableVHost(w, r, r.PathValue("vhost"))
	if v == nil {
		return
	}
	ch := r.PathValue("channel")
	if err := s.checkChannel(userOf(r), v, ch); err != nil {
		writeBrokerError(w, err)
		return
	}
	cs := s.presence.clients(presenceKey{v.Name(), ch})
	if strings.HasSuffix(r.Pattern, "/stats") {
		writeJSON(w, http.StatusOK, statsOf(cs))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"channel": ch, "clients": cs})
}

// listPresence serves GET /api/presence[/{vhost}] (management): the
// channels with members, with their counts.
func (s *Server) listPresence(w http.ResponseWriter, r *http.Request) {
	vh := r.PathValue("vhost")
	if vh != "" && s.shell.VHostOf(w, vh) == nil {
		return
	}
	writeJSON(w, http.StatusOK, s.presence.list(vh))
}
