package admin

import (
	"errors"
	"net/http"

	"github.com/heraldmq/herald/internal/auth"
)

// Topic permissions in the paths and JSON shapes of RabbitMQ's management
// API (its rabbit_mgmt_wm_topic_permission*): an entry is {user, vhost,
// exchange, write, read}; a user has at most one per exchange and vhost.
// Administrators only, as RabbitMQ. The checks themselves are in
// internal/auth (topicperms.go); every protocol calls them.

// topicPermissionRoutes registers the endpoints with the router's admin
// helper.
func (s *Server) topicPermissionRoutes(admin func(string, http.HandlerFunc)) {
	admin("GET /api/topic-permissions", s.listTopicPermissions)
	admin("GET /api/topic-permissions/{vhost}/{user}", s.showTopicPermissions)
	admin("GET /api/topic-permissions/{vhost}/{user}/{exchange}", s.showTopicPermissions)
	admin("PUT /api/topic-permissions/{vhost}/{user}", s.putTopicPermissions)
	admin("DELETE /api/topic-permissions/{vhost}/{user}", s.deleteTopicPermissions)
	admin("DELETE /api/topic-permissions/{vhost}/{user}/{exchange}", s.deleteTopicPermissions)
	admin("GET /api/users/{user}/topic-permissions", s.userTopicPermissions)
	admin("GET /api/vhosts/{vhost}/topic-permissions", s.vhostTopicPermissions)
}

func topicPermissionsWhere(all []auth.TopicPermissionEntry, keep func(auth.TopicPermissionEntry) bool) []auth.TopicPermissionEntry {
	out := []auth.TopicPermissionEntry{}
	for _, p := range all {
		if keep(p) {
			out = append(out, p)
		}
	}
	return out
}

func (s *Server) listTopicPermissions(w http.ResponseWriter, r *http.Request) {
	writeList(w, r, topicPermissionsWhere(s.users.ListTopicPermissions(), func(auth.TopicPermissionEntry) bool { return true }), "user")
}

func (s *Server) userTopicPermissions(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("user")
	if _, ok := s.users.User(name); !ok {
		writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
		return
	}
	writeList(w, r, topicPermissionsWhere(s.users.ListTopicPermissions(), func(p auth.TopicPermissionEntry) bool { return p.User == name }), "user")
}

func (s *Server) vhostTopicPermissions(w http.ResponseWriter, r *http.Request) {
	v := s.vhostOf(w, r.PathValue("vhost"))
	if v == nil {
		return
	}
	writeList(w, r, topicPermissionsWhere(s.users.ListTopicPermissions(), func(p auth.TopicPermissionEntry) bool { return p.VHost == v.Name() }), "user")
}

// topicEntries returns user's entries in vhost (on one exchange when the
// path names it); nil when there are none, which is a 404 as in RabbitMQ.
func (s *Server) topicEntries(r *http.Request) []auth.TopicPermissionEntry {
	vhost, user := r.PathValue("vhost"), r.PathValue("user")
	exchange, one := r.PathValue("exchange"), r.PathValue("exchange") != ""
	var out []auth.TopicPermissionEntry
	for _, p := range s.users.ListTopicPermissions() {
		if p.VHost == vhost && p.User == user && (!one || p.Exchange == exchange) {
			out = append(out, p)
		}
	}
	return out
}

func (s *Server) showTopicPermissions(w http.ResponseWriter, r *http.Request) {
	entries := s.topicEntries(r)
	if entries == nil {
		writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, entries)
}

// topicPermissionsBody is the PUT body; pointers tell a missing field
// from an empty pattern (which allows only the empty key).
type topicPermissionsBody struct {
	Exchange *string `json:"exchange"`
	Write    *string `json:"write"`
	Read     *string `json:"read"`
}

func (s *Server) putTopicPermissions(w http.ResponseWriter, r *http.Request) {
	vhost, user := r.PathValue("vhost"), r.PathValue("user")
	if s.vhostOf(w, vhost) == nil {
		return
	}
	var b topicPermissionsBody
	if !s.decodeBody(w, r, &b) {
		return
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"exchange", b.Exchange}, {"write", b.Write}, {"read", b.Read}} {
		if f.v == nil {
			writeError(w, http.StatusBadRequest, "bad_request", "key_missing: "+f.name)
			return
		}
	}
	p := auth.TopicPermissions{Exchange: *b.Exchange, Write: *b.Write, Read: *b.Read}
	replaced, err := s.users.SetTopicPermissions(user, vhost, p)
	switch {
	case errors.Is(err, auth.ErrNoSuchUser):
		writeError(w, http.StatusBadRequest, "bad_request", "no_such_user: "+err.Error())
		return
	case err != nil:
		// The text names the field: "invalid write pattern ...".
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	s.log.Info("topic permissions set", "user", user, "vhost", vhost, "exchange", p.Exchange, "write", p.Write, "read", p.Read, "by", userOf(r).Name)
	created(w, replaced)
}

func (s *Server) deleteTopicPermissions(w http.ResponseWriter, r *http.Request) {
	vhost, user := r.PathValue("vhost"), r.PathValue("user")
	var exchange *string
	if e := r.PathValue("exchange"); e != "" {
		exchange = &e
	}
	if !s.users.ClearTopicPermissions(user, vhost, exchange) {
		writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
		return
	}
	s.log.Info("topic permissions cleared", "user", user, "vhost", vhost, "exchange", r.PathValue("exchange"), "by", userOf(r).Name)
	w.WriteHeader(http.StatusNoContent)
}
