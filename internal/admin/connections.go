package admin

import (
	"net"
	"net/http"
	"strconv"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
)

// Connections and consumers in the paths and JSON shapes of RabbitMQ's
// management API. As in RabbitMQ, administrators and monitoring users see
// every connection; other management users see their own.

type ConnectionJSON struct {
	Name        string `json:"name"`
	User        string `json:"user"`
	VHost       string `json:"vhost"`
	Protocol    string `json:"protocol"`
	ConnectedAt int64  `json:"connected_at"` // milliseconds since the epoch, as RabbitMQ
	Channels    int    `json:"channels"`
	PeerHost    string `json:"peer_host"`
	PeerPort    int    `json:"peer_port"`
	Host        string `json:"host"`
	Port        int    `json:"port"`
	State       string `json:"state"`
	Type        string `json:"type"`
	Node        string `json:"node"`
	// ClientProperties is the AMQP client's table, rendered as RabbitMQ
	// does (tables as objects, arrays as lists, timestamps as seconds);
	// {} for other protocols. UserProvidedName is its connection_name,
	// by which tools find a connection.
	ClientProperties map[string]any `json:"client_properties"`
	UserProvidedName string         `json:"user_provided_name,omitempty"`
}

func splitHostPort(addr string) (string, int) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

func (s *Server) newConnectionJSON(c broker.ConnectionInfo) ConnectionJSON {
	ph, pp := splitHostPort(c.Peer)
	lh, lp := splitHostPort(c.Local)
	return ConnectionJSON{Name: c.Name, User: c.User, VHost: c.VHost, Protocol: c.Protocol, ConnectedAt: c.ConnectedAt.UnixMilli(),
		Channels: c.Channels, PeerHost: ph, PeerPort: pp, Host: lh, Port: lp, State: "running", Type: "network", Node: s.node,
		ClientProperties: argsJSON(c.ClientProperties), UserProvidedName: userProvidedName(c.ClientProperties)}
}

// userProvidedName is the client's connection_name property, as RabbitMQ
// reports it (a string, or text sent as bytes).
func userProvidedName(props broker.Table) string {
	switch n := props["connection_name"].(type) {
	case string:
		return n
	case []byte:
		return string(n)
	}
	return ""
}

// seesAll reports whether u may see every user's connections.
func seesAll(u *auth.User) bool {
	return u.HasTag(auth.TagAdministrator) || u.HasTag(auth.TagMonitoring)
}

// visibleConnections lists the connections u may see, in the vhost when
// one is given.
func (s *Server) visibleConnections(u *auth.User, vhost string) []broker.ConnectionInfo {
	var out []broker.ConnectionInfo
	for _, c := range s.broker.Connections() {
		if (seesAll(u) || c.User == u.Name) && (vhost == "" || c.VHost == vhost) {
			out = append(out, c)
		}
	}
	return out
}

func (s *Server) listConnections(w http.ResponseWriter, r *http.Request) {
	vhost := ""
	if r.PathValue("vhost") != "" {
		v := s.vhostOf(w, r.PathValue("vhost"))
		if v == nil {
			return
		}
		vhost = v.Name()
	}
	out := []ConnectionJSON{}
	for _, c := range s.visibleConnections(userOf(r), vhost) {
		out = append(out, s.newConnectionJSON(c))
	}
	writeList(w, r, out, "name")
}

func (s *Server) findConnection(w http.ResponseWriter, r *http.Request) (broker.ConnectionInfo, bool) {
	for _, c := range s.visibleConnections(userOf(r), "") {
		if c.Name == r.PathValue("name") {
			return c, true
		}
	}
	writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
	return broker.ConnectionInfo{}, false
}

func (s *Server) showConnection(w http.ResponseWriter, r *http.Request) {
	if c, ok := s.findConnection(w, r); ok {
		writeJSON(w, http.StatusOK, s.newConnectionJSON(c))
	}
}

// closeConnection is DELETE /api/connections/{name}: the client gets the
// protocol's close (AMQP: connection.close 320 CONNECTION_FORCED) with the
// X-Reason header as its text. Administrators close any connection, other
// users their own (monitoring users only look).
func (s *Server) closeConnection(w http.ResponseWriter, r *http.Request) {
	c, ok := s.findConnection(w, r)
	if !ok {
		return
	}
	u := userOf(r)
	if !u.HasTag(auth.TagAdministrator) && c.User != u.Name {
		writeError(w, http.StatusForbidden, "not_authorised", "Not administrator user")
		return
	}
	reason := r.Header.Get("X-Reason")
	if reason == "" {
		reason = "Closed via management plugin"
	}
	if c.Close == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "this connection cannot be closed from the API")
		return
	}
	s.log.Info("closing connection", "connection", c.Name, "protocol", c.Protocol, "reason", reason, "by", u.Name)
	c.Close(reason)
	w.WriteHeader(http.StatusNoContent)
}

type ConsumerJSON struct {
	Arguments      map[string]any `json:"arguments"`
	AckRequired    bool           `json:"ack_required"`
	Active         bool           `json:"active"`
	ActivityStatus string         `json:"activity_status"`
	ChannelDetails map[string]any `json:"channel_details"`
	ConsumerTag    string         `json:"consumer_tag"`
	Exclusive      bool           `json:"exclusive"`
	PrefetchCount  int            `json:"prefetch_count"`
	Priority       int64          `json:"priority"`
	Unacked        int            `json:"messages_unacknowledged"`
	Queue          struct {
		Name  string `json:"name"`
		VHost string `json:"vhost"`
	} `json:"queue"`
}

// listConsumers is GET /api/consumers[/{vhost}]. channel_details names
// the consumer's connection when it has one (management API consumers,
// such as a long-polling fetch, have none).
func (s *Server) listConsumers(w http.ResponseWriter, r *http.Request) {
	u := userOf(r)
	byOwner := map[broker.Owner]broker.ConnectionInfo{}
	for _, c := range s.broker.Connections() {
		byOwner[c.Owner] = c
	}
	listPerVHost(s, w, r, "consumer_tag", func(v *broker.VHost, out []ConsumerJSON) []ConsumerJSON {
		for _, q := range v.Queues() {
			for _, ci := range q.Consumers() {
				conn, hasConn := byOwner[ci.Owner]
				if !seesAll(u) && (!hasConn || conn.User != u.Name) {
					continue
				}
				cj := ConsumerJSON{Arguments: argsJSON(ci.Args), AckRequired: !ci.NoAck, Active: true, ActivityStatus: "up",
					ChannelDetails: map[string]any{}, ConsumerTag: ci.Tag, Exclusive: ci.Exclusive, PrefetchCount: ci.Prefetch,
					Priority: ci.Priority, Unacked: ci.Unacked}
				cj.Queue.Name, cj.Queue.VHost = ci.Queue, ci.VHost
				if hasConn {
					ph, pp := splitHostPort(conn.Peer)
					cj.ChannelDetails = map[string]any{"connection_name": conn.Name, "user": conn.User, "peer_host": ph, "peer_port": pp, "node": s.node}
				}
				out = append(out, cj)
			}
		}
		return out
	})
}
