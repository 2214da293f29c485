package admin

import (
	"encoding/json"
	"net/http"

	"github.com/heraldmq/herald/internal/broker"
)

// Vhost and user limits, as RabbitMQ's management API has them:
//
//	GET    /api/vhost-limits                   [{"vhost": "/", "value": {"max-connections": 10}}]
//	GET    /api/vhost-limits/{vhost}
//	PUT    /api/vhost-limits/{vhost}/{name}    {"value": N}   name: max-connections | max-queues
//	DELETE /api/vhost-limits/{vhost}/{name}
//	GET    /api/user-limits                    [{"user": "u", "value": {"max-connections": 10}}]
//	GET    /api/user-limits/{user}
//	PUT    /api/user-limits/{user}/{name}      {"value": N}   name: max-connections
//	DELETE /api/user-limits/{user}/{name}
//
// A negative value means no limit; 0 forbids. Administrators only.

func (s *Server) limitRoutes(admin func(string, http.HandlerFunc)) {
	admin("GET /api/vhost-limits", s.listVHostLimits)
	admin("GET /api/vhost-limits/{vhost}", s.listVHostLimits)
	admin("PUT /api/vhost-limits/{vhost}/{name}", s.putVHostLimit)
	admin("DELETE /api/vhost-limits/{vhost}/{name}", s.deleteVHostLimit)
	admin("GET /api/user-limits", s.listUserLimits)
	admin("GET /api/user-limits/{user}", s.listUserLimits)
	admin("PUT /api/user-limits/{user}/{name}", s.putUserLimit)
	admin("DELETE /api/user-limits/{user}/{name}", s.deleteUserLimit)
}

// limitsJSON lists entries as RabbitMQ does, under key ("vhost" or "user"),
// keeping only the one named by the path, if any.
func limitsJSON(entries []broker.LimitEntry, key, only string) []map[string]any {
	out := make([]map[string]any, 0, len(entries))
	for _, e := range entries {
		if only == "" || e.Name == only {
			out = append(out, map[string]any{key: e.Name, "value": e.Limits})
		}
	}
	return out
}

func (s *Server) listVHostLimits(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("vhost")
	if name != "" && s.vhostOf(w, name) == nil {
		return
	}
	writeJSON(w, http.StatusOK, limitsJSON(s.broker.VHostLimits(), "vhost", name))
}

func (s *Server) listUserLimits(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("user")
	if name != "" {
		if _, ok := s.users.User(name); !ok {
			writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
			return
		}
	}
	writeJSON(w, http.StatusOK, limitsJSON(s.broker.UserLimits(), "user", name))
}

// limitValue decodes {"value": N}; N must be an integer.
func (s *Server) limitValue(w http.ResponseWriter, r *http.Request) (int, bool) {
	var body struct {
		Value *json.Number `json:"value"`
	}
	if !s.decodeBody(w, r, &body) {
		return 0, false
	}
	if body.Value == nil {
		writeError(w, http.StatusBadRequest, "bad_request", "the body must be {\"value\": N}")
		return 0, false
	}
	n, err := body.Value.Int64()
	if err != nil || n != int64(int(n)) {
		writeError(w, http.StatusBadRequest, "bad_request", "value must be an integer")
		return 0, false
	}
	return int(n), true
}

func (s *Server) putVHostLimit(w http.ResponseWriter, r *http.Request) {
	v := s.vhostOf(w, r.PathValue("vhost"))
	if v == nil {
		return
	}
	n, ok := s.limitValue(w, r)
	if !ok {
		return
	}
	if err := s.broker.SetVHostLimit(v.Name(), r.PathValue("name"), n); err != nil {
		writeBrokerError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteVHostLimit(w http.ResponseWriter, r *http.Request) {
	v := s.vhostOf(w, r.PathValue("vhost"))
	if v == nil {
		return
	}
	s.broker.ClearVHostLimit(v.Name(), r.PathValue("name"))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) putUserLimit(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("user")
	if _, ok := s.users.User(user); !ok {
		writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
		return
	}
	n, ok := s.limitValue(w, r)
	if !ok {
		return
	}
	if err := s.broker.SetUserLimit(user, r.PathValue("name"), n); err != nil {
		writeBrokerError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteUserLimit(w http.ResponseWriter, r *http.Request) {
	s.broker.ClearUserLimit(r.PathValue("user"), r.PathValue("name"))
	w.WriteHeader(http.StatusNoContent)
}
