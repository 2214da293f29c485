package admin

import (
	"net/http"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/web/jsonmsg"
)

// Policies in the paths and JSON shape of RabbitMQ's management API. As
// in RabbitMQ, they need the policymaker or administrator tag; a
// policymaker only reaches the vhosts it has permissions in.

type PolicyJSON struct {
	VHost      string         `json:"vhost"`
	Name       string         `json:"name"`
	Pattern    string         `json:"pattern"`
	ApplyTo    string         `json:"apply-to"`
	Definition map[string]any `json:"definition"`
	Priority   int            `json:"priority"`
}

func newPolicyJSON(v *broker.VHost, p broker.Policy) PolicyJSON {
	return PolicyJSON{VHost: v.Name(), Name: p.Name, Pattern: p.Pattern, ApplyTo: p.ApplyTo, Definition: argsJSON(p.Definition), Priority: p.Priority}
}

// policyVHost resolves {vhost} for a policy request: 404 if it does not
// exist, 403 if a non-administrator has no permissions in it.
func (s *Server) policyVHost(w http.ResponseWriter, r *http.Request) *broker.VHost {
	v := s.vhostOf(w, r.PathValue("vhost"))
	if v == nil {
		return nil
	}
	if u := userOf(r); !u.HasTag(auth.TagAdministrator) {
		if err := s.checkerFor(u).CheckVHost(u.Name, v.Name()); err != nil {
			writeError(w, http.StatusForbidden, "access_refused", err.Error())
			return nil
		}
	}
	return v
}

func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request) {
	vs := s.broker.VHosts()
	if r.PathValue("vhost") != "" {
		v := s.policyVHost(w, r)
		if v == nil {
			return
		}
		vs = []*broker.VHost{v}
	}
	u := userOf(r)
	out := []PolicyJSON{}
	for _, v := range vs {
		if !u.HasTag(auth.TagAdministrator) && s.checkerFor(u).CheckVHost(u.Name, v.Name()) != nil {
			continue
		}
		for _, p := range v.Policies() {
			out = append(out, newPolicyJSON(v, p))
		}
	}
	writeList(w, r, out, "name")
}

func (s *Server) showPolicy(w http.ResponseWriter, r *http.Request) {
	v := s.policyVHost(w, r)
	if v == nil {
		return
	}
	for _, p := range v.Policies() {
		if p.Name == r.PathValue("name") {
			writeJSON(w, http.StatusOK, newPolicyJSON(v, p))
			return
		}
	}
	writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
}

func (s *Server) putPolicy(w http.ResponseWriter, r *http.Request) {
	v := s.policyVHost(w, r)
	if v == nil {
		return
	}
	var req struct {
		Pattern    *string         `json:"pattern"`
		Definition map[string]any  `json:"definition"`
		Priority   jsonmsg.FlexInt `json:"priority"`
		ApplyTo    string          `json:"apply-to"`
	}
	if !s.decodeBody(w, r, &req) {
		return
	}
	if req.Pattern == nil {
		writeError(w, http.StatusBadRequest, "bad_request", "pattern is required")
		return
	}
	if len(req.Definition) == 0 {
		writeError(w, http.StatusBadRequest, "bad_request", "definition must not be empty")
		return
	}
	// JSON numbers become int64 where whole (max-length: 10 is an integer).
	def, err := jsonmsg.TableFromJSON(req.Definition)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	name := r.PathValue("name")
	existed := false
	for _, p := range v.Policies() {
		existed = existed || p.Name == name
	}
	if err := v.PutPolicy(broker.Policy{Name: name, Pattern: *req.Pattern, ApplyTo: req.ApplyTo, Priority: int(req.Priority), Definition: def}); err != nil {
		writeBrokerError(w, err)
		return
	}
	s.log.Info("policy set", "vhost", v.Name(), "policy", name, "pattern", *req.Pattern, "by", userOf(r).Name)
	created(w, existed)
}

func (s *Server) deletePolicy(w http.ResponseWriter, r *http.Request) {
	v := s.policyVHost(w, r)
	if v == nil {
		return
	}
	if err := v.DeletePolicy(r.PathValue("name")); err != nil {
		writeBrokerError(w, err)
		return
	}
	s.log.Info("policy deleted", "vhost", v.Name(), "policy", r.PathValue("name"), "by", userOf(r).Name)
	w.WriteHeader(http.StatusNoContent)
}
