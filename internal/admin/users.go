package admin

import (
	"errors"
	"net/http"
	"strings"

	"github.com/heraldmq/herald/internal/auth"
)

// Users, permissions and vhosts in the paths and JSON shapes of RabbitMQ's
// management API, so that rabbitmqadmin and scripts written for it work.

type userJSON struct {
	Name             string         `json:"name"`
	PasswordHash     string         `json:"password_hash"`
	HashingAlgorithm string         `json:"hashing_algorithm"`
	Tags             auth.Tags      `json:"tags"`
	Limits           map[string]any `json:"limits"`
}

func newUserJSON(u *auth.User) userJSON {
	d := u.Def()
	return userJSON{Name: d.Name, PasswordHash: d.PasswordHash, HashingAlgorithm: d.HashingAlgorithm, Tags: d.Tags, Limits: d.Limits}
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	u := userOf(r)
	writeJSON(w, http.StatusOK, map[string]any{"name": u.Name, "tags": auth.Tags(append([]string{}, u.Tags...))})
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	out := []userJSON{}
	for _, u := range s.users.List() {
		out = append(out, newUserJSON(u))
	}
	writeList(w, r, out, "name")
}

func (s *Server) showUser(w http.ResponseWriter, r *http.Request) {
	u, ok := s.users.User(r.PathValue("user"))
	if !ok {
		writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, newUserJSON(u))
}

// putUserRequest is PUT /api/users/{user}: a password or a password_hash
// (RabbitMQ's encoding); tags as "a,b" or a list. Neither password field
// keeps the current password of an existing user, as RabbitMQ.
type putUserRequest struct {
	Password         *string   `json:"password"`
	PasswordHash     *string   `json:"password_hash"`
	HashingAlgorithm string    `json:"hashing_algorithm"`
	Tags             auth.Tags `json:"tags"`
}

func (s *Server) putUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("user")
	var req putUserRequest
	if !s.decodeBody(w, r, &req) {
		return
	}
	if name == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "user name must not be empty")
		return
	}
	old, existed := s.users.User(name)
	switch {
	case req.Password != nil:
		s.users.PutUser(name, *req.Password, req.Tags)
	case req.PasswordHash != nil:
		if err := s.users.PutUserHash(name, *req.PasswordHash, req.HashingAlgorithm, req.Tags); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
	case existed:
		// Only the tags change.
		if err := s.users.PutUserHash(name, old.PasswordHash(), "", req.Tags); err != nil {
			writeError(w, http.StatusInternalServerError, "internal_error", err.Error())
			return
		}
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "a new user needs password or password_hash")
		return
	}
	s.log.Info("user saved", "user", name, "tags", strings.Join(req.Tags, ","), "by", userOf(r).Name)
	created(w, existed)
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) {
	if !s.users.Delete(r.PathValue("user")) {
		writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
		return
	}
	s.log.Info("user deleted", "user", r.PathValue("user"), "by", userOf(r).Name)
	w.WriteHeader(http.StatusNoContent)
}

type permissionJSON struct {
	User      string `json:"user"`
	VHost     string `json:"vhost"`
	Configure string `json:"configure"`
	Write     string `json:"write"`
	Read      string `json:"read"`
}

func permissionsJSON(filter func(auth.PermissionEntry) bool, all []auth.PermissionEntry) []permissionJSON {
	out := []permissionJSON{}
	for _, p := range all {
		if filter(p) {
			out = append(out, permissionJSON{User: p.User, VHost: p.VHost, Configure: p.Configure, Write: p.Write, Read: p.Read})
		}
	}
	return out
}

func (s *Server) listPermissions(w http.ResponseWriter, r *http.Request) {
	writeList(w, r, permissionsJSON(func(auth.PermissionEntry) bool { return true }, s.users.ListPermissions()), "user")
}

func (s *Server) userPermissions(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("user")
	if _, ok := s.users.User(name); !ok {
		writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
		return
	}
	writeList(w, r, permissionsJSON(func(p auth.PermissionEntry) bool { return p.User == name }, s.users.ListPermissions()), "user")
}

func (s *Server) vhostPermissions(w http.ResponseWriter, r *http.Request) {
	v := s.vhostOf(w, r.PathValue("vhost"))
	if v == nil {
		return
	}
	writeList(w, r, permissionsJSON(func(p auth.PermissionEntry) bool { return p.VHost == v.Name() }, s.users.ListPermissions()), "user")
}

func (s *Server) showPermissions(w http.ResponseWriter, r *http.Request) {
	vhost, user := r.PathValue("vhost"), r.PathValue("user")
	p, ok := s.users.Permissions(user, vhost)
	if !ok {
		writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, permissionJSON{User: user, VHost: vhost, Configure: p.Configure, Write: p.Write, Read: p.Read})
}

func (s *Server) putPermissions(w http.ResponseWriter, r *http.Request) {
	vhost, user := r.PathValue("vhost"), r.PathValue("user")
	if s.vhostOf(w, vhost) == nil {
		return
	}
	var p auth.Permissions
	if !s.decodeBody(w, r, &p) {
		return
	}
	_, existed := s.users.Permissions(user, vhost)
	if err := s.users.SetPermissions(user, vhost, p); err != nil {
		if errors.Is(err, auth.ErrNoSuchUser) {
			writeError(w, http.StatusBadRequest, "bad_request", "no_such_user: "+err.Error())
		} else {
			writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		}
		return
	}
	s.log.Info("permissions set", "user", user, "vhost", vhost, "configure", p.Configure, "write", p.Write, "read", p.Read, "by", userOf(r).Name)
	created(w, existed)
}

func (s *Server) deletePermissions(w http.ResponseWriter, r *http.Request) {
	if !s.users.ClearPermissions(r.PathValue("user"), r.PathValue("vhost")) {
		writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// putVHost creates a vhost. As in RabbitMQ, nobody (the creator
// included) gets permissions in it implicitly.
func (s *Server) putVHost(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("vhost")
	if name == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "vhost name must not be empty")
		return
	}
	existed := s.broker.VHost(name) != nil
	s.broker.AddVHost(name)
	created(w, existed)
}

// deleteVHost deletes a vhost as RabbitMQ does: the permissions in it
// first (so that nobody logs in meanwhile), then the vhost in the core,
// which closes its connections (AMQP: 320 CONNECTION_FORCED "vhost 'x' is
// deleted") and deletes its queues, their messages, exchanges, bindings,
// policies and limits. The default vhost "/" may be deleted too.
func (s *Server) deleteVHost(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("vhost")
	if s.vhostOf(w, name) == nil {
		return
	}
	s.users.ClearVHostPermissions(name)
	queues, err := s.broker.DeleteVHost(name)
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	s.log.Info("vhost deleted", "vhost", name, "queues", queues, "by", userOf(r).Name)
	w.WriteHeader(http.StatusNoContent)
}
