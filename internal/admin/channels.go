package admin

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/heraldmq/herald/internal/broker"
)

// Channels in the paths and JSON shape of RabbitMQ's management API.
// Only connections whose adapter reports its channels (AMQP) have any;
// they are named as RabbitMQ names them: "<connection name> (<number>)".

type ChannelJSON struct {
	Name                   string         `json:"name"`
	Number                 int            `json:"number"`
	User                   string         `json:"user"`
	VHost                  string         `json:"vhost"`
	Node                   string         `json:"node"`
	State                  string         `json:"state"`
	ConsumerCount          int            `json:"consumer_count"`
	PrefetchCount          int            `json:"prefetch_count"`
	GlobalPrefetchCount    int            `json:"global_prefetch_count"`
	MessagesUnacknowledged int            `json:"messages_unacknowledged"`
	Confirm                bool           `json:"confirm"`
	Transactional          bool           `json:"transactional"`
	ConnectionDetails      map[string]any `json:"connection_details"`
}

func (s *Server) channelsOf(c broker.ConnectionInfo) []ChannelJSON {
	if c.ChannelList == nil {
		return nil
	}
	ph, pp := splitHostPort(c.Peer)
	var out []ChannelJSON
	for _, ch := range c.ChannelList() {
		out = append(out, ChannelJSON{Name: c.Name + " (" + strconv.Itoa(ch.Number) + ")", Number: ch.Number,
			User: c.User, VHost: c.VHost, Node: s.node, State: "running", ConsumerCount: ch.ConsumerCount,
			PrefetchCount: ch.PrefetchCount, GlobalPrefetchCount: ch.GlobalPrefetchCount,
			MessagesUnacknowledged: ch.UnackedCount, Confirm: ch.Confirm, Transactional: ch.Transactional,
			ConnectionDetails: map[string]any{"name": c.Name, "peer_host": ph, "peer_port": pp}})
	}
	return out
}

// listChannels is GET /api/channels and /api/vhosts/{vhost}/channels:
// the channels of the connections the user may see.
func (s *Server) listChannels(w http.ResponseWriter, r *http.Request) {
	vhost := ""
	if r.PathValue("vhost") != "" {
		v := s.vhostOf(w, r.PathValue("vhost"))
		if v == nil {
			return
		}
		vhost = v.Name()
	}
	out := []ChannelJSON{}
	for _, c := range s.visibleConnections(userOf(r), vhost) {
		out = append(out, s.channelsOf(c)...)
	}
	writeList(w, r, out, "name")
}

// connectionChannels is GET /api/connections/{name}/channels.
func (s *Server) connectionChannels(w http.ResponseWriter, r *http.Request) {
	c, ok := s.findConnection(w, r)
	if !ok {
		return
	}
	writeList(w, r, s.channelsOf(c), "name")
}

// showChannel is GET /api/channels/{channel}, the channel named
// "<connection name> (<number>)".
func (s *Server) showChannel(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("channel")
	i := strings.LastIndex(name, " (")
	if i >= 0 && strings.HasSuffix(name, ")") {
		conn := name[:i]
		for _, c := range s.visibleConnections(userOf(r), "") {
			if c.Name != conn {
				continue
			}
			for _, ch := range s.channelsOf(c) {
				if ch.Name == name {
					writeJSON(w, http.StatusOK, ch)
					return
				}
			}
		}
	}
	writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
}
