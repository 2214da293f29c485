package admin

import (
	"net/http"
	"time"

	"github.com/heraldmq/herald/internal/broker"
)

// The lookup service of RPC services (docs/rpc-gateway.md): the services
// the broker carries, derived from the consumers of rpc.S queues, with
// the statistics the core counts from their traffic. Listing them needs a
// management tag, as every other list.

// ServiceJSON is one service.
type ServiceJSON struct {
	Name        string           `json:"name"`
	VHost       string           `json:"vhost"`
	Description string           `json:"description,omitempty"`
	Instances   []InstanceJSON   `json:"instances"`
	Stats       ServiceStatsJSON `json:"stats"`
}

// InstanceJSON is one instance of a service: a consumer of rpc.S.
type InstanceJSON struct {
	ID          string            `json:"id"`
	Version     string            `json:"version"`
	Description string            `json:"description,omitempty"`
	Endpoints   []string          `json:"endpoints"`
	Metadata    map[string]string `json:"metadata"`
	Connection  string            `json:"connection"` // the connection's name, "" for an internal consumer
	ConsumerTag string            `json:"consumer_tag"`
	Prefetch    int               `json:"prefetch_count"`
	Unacked     int               `json:"messages_unacknowledged"`
	Since       time.Time         `json:"since"`
	Stats       ServiceStatsJSON  `json:"stats"`
}

// ServiceStatsJSON are the statistics the broker counts: requests
// delivered, replies by x-rpc-status, requests expired while queued, and
// the time from delivery to reply. ErrorRate is the share of replies
// whose status is not OK (0 without replies).
type ServiceStatsJSON struct {
	Requests  uint64            `json:"requests"`
	Replies   map[string]uint64 `json:"replies"`
	Expired   uint64            `json:"expired"`
	AvgMs     float64           `json:"avg_ms"`
	P99Ms     float64           `json:"p99_ms"`
	ErrorRate float64           `json:"error_rate"`
}

func (s *Server) serviceRoutes(mg func(string, http.HandlerFunc)) {
	mg("GET /api/services", s.listServices)
	mg("GET /api/services/{vhost}", s.listServices)
	mg("GET /api/services/{vhost}/{name}", s.showService)
}

func newServiceStatsJSON(st broker.ServiceStats) ServiceStatsJSON {
	out := ServiceStatsJSON{Requests: st.Requests, Replies: st.Replies, Expired: st.Expired, AvgMs: st.AvgMs, P99Ms: st.P99Ms}
	if out.Replies == nil {
		out.Replies = map[string]uint64{}
	}
	var all, failed uint64
	for status, n := range st.Replies {
		all += n
		if status != "OK" {
			failed += n
		}
	}
	if all > 0 {
		out.ErrorRate = float64(failed) / float64(all)
	}
	return out
}

func newServiceJSON(si broker.ServiceInfo, connNames map[broker.Owner]string) ServiceJSON {
	out := ServiceJSON{Name: si.Name, VHost: si.VHost, Description: si.Description, Instances: []InstanceJSON{},
		Stats: newServiceStatsJSON(si.Stats)}
	for _, in := range si.Instances {
		ij := InstanceJSON{ID: in.ID, Version: in.Version, Description: in.Description, Endpoints: in.Endpoints,
			Metadata: in.Metadata, Connection: connNames[in.Owner], ConsumerTag: in.Tag, Prefetch: in.Prefetch,
			Unacked: in.Unacked, Since: in.Since.UTC(), Stats: newServiceStatsJSON(in.Stats)}
		if ij.Endpoints == nil {
			ij.Endpoints = []string{}
		}
		if ij.Metadata == nil {
			ij.Metadata = map[string]string{}
		}
		out.Instances = append(out.Instances, ij)
	}
	return out
}

func (s *Server) connectionNames() map[broker.Owner]string {
	names := map[broker.Owner]string{}
	for _, c := range s.broker.Connections() {
		names[c.Owner] = c.Name
	}
	return names
}

// listServices is GET /api/services and /api/services/{vhost}.
func (s *Server) listServices(w http.ResponseWriter, r *http.Request) {
	names := s.connectionNames()
	listPerVHost(s, w, r, "name", func(v *broker.VHost, out []ServiceJSON) []ServiceJSON {
		for _, si := range s.broker.Services(v.Name()) {
			out = append(out, newServiceJSON(si, names))
		}
		return out
	})
}

// showService is GET /api/services/{vhost}/{name}: 404 while no instance
// serves the service.
func (s *Server) showService(w http.ResponseWriter, r *http.Request) {
	v := s.vhostOf(w, r.PathValue("vhost"))
	if v == nil {
		return
	}
	si, ok := s.broker.Service(v.Name(), r.PathValue("name"))
	if !ok {
		writeError(w, http.StatusNotFound, "Object Not Found", "no service '"+r.PathValue("name")+"' in vhost '"+v.Name()+"'")
		return
	}
	writeJSON(w, http.StatusOK, newServiceJSON(si, s.connectionNames()))
}
