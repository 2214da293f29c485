package web

import (
	"net/http"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
)

// Access control on the HTTP side. Messaging endpoints (REST publish and
// get, fetch, WebSocket, SSE) need the same permissions as the AMQP
// operations they amount to; management endpoints need user tags as in
// RabbitMQ's management plugin (see RequireTag).

// AccessRefused wraps a refusal as a core error, so that the existing
// error paths answer it with 403 {"error":"access_refused"} (REST) or a
// 403 error frame (WebSocket).
func AccessRefused(err error) error {
	return &broker.Error{Code: broker.CodeAccessRefused, Text: err.Error()}
}

// Check refuses an operation that needs kind on the named resource.
func (s *Server) Check(u *auth.User, v *broker.VHost, kind auth.Kind, res auth.Resource, name string) error {
	if res == auth.Exchange {
		name = auth.ExchangeResource(name)
	}
	if err := s.CheckerFor(u).Check(u.Name, v.Name(), kind, res, name); err != nil {
		return AccessRefused(err)
	}
	return nil
}

// UsableVHost is VHostOf for messaging: the user must have permissions
// in the vhost, else 403.
func (s *Server) UsableVHost(w http.ResponseWriter, r *http.Request, name string) *broker.VHost {
	v := s.VHostOf(w, name)
	if v == nil {
		return nil
	}
	if err := s.CheckerFor(UserOf(r)).CheckVHost(UserOf(r).Name, v.Name()); err != nil {
		WriteError(w, http.StatusForbidden, "access_refused", err.Error())
		return nil
	}
	return v
}

// Management access levels, as RabbitMQ's management plugin: any of
// management, policymaker, monitoring or administrator may log in and
// read; administrator alone manages users, permissions and vhosts.
var managementTags = []string{auth.TagManagement, auth.TagPolicymaker, auth.TagMonitoring, auth.TagAdministrator}

// RequireTag wraps a handler so that only users with one of tags reach it.
func RequireTag(h http.HandlerFunc, tags ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := UserOf(r)
		for _, t := range tags {
			if u.HasTag(t) {
				h(w, r)
				return
			}
		}
		reason := "Not management user"
		if len(tags) == 1 {
			reason = "Not " + tags[0] + " user"
		}
		WriteError(w, http.StatusForbidden, "not_authorised", reason)
	}
}

// CheckTopic refuses a publish (Write) or bind (Read) with key on a topic
// exchange the user's topic permissions do not allow (auth.CheckTopicAccess,
// shared by every protocol). The web has no client id: {client_id} stays
// unexpanded, as RabbitMQ leaves it for protocols other than MQTT.
func (s *Server) CheckTopic(u *auth.User, v *broker.VHost, kind auth.Kind, exchange, key string) error {
	if err := auth.CheckTopicAccess(s.CheckerFor(u), u.Name, v.Name(), kind, exchange, key, auth.TopicVars{}, exchangeKind(v)); err != nil {
		return AccessRefused(err)
	}
	return nil
}

// exchangeKind looks up the type of an exchange of v ("" when there is
// none: the publish then fails on its own).
func exchangeKind(v *broker.VHost) func(string) string {
	return func(name string) string {
		if e, err := v.Exchange(name); err == nil {
			return e.Kind()
		}
		return ""
	}
}
