package web

import (
	"net/http"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
)

// Access control on the HTTP side. Messaging endpoints (REST publish and
// get, fetch, WebSocket, SSE) need the same permissions as the AMQP
// operations they amount to; management endpoints need user tags as in
// RabbitMQ's management plugin (see requireTag).

// accessRefused wraps a refusal as a core error, so that the existing
// error paths answer it with 403 {"error":"access_refused"} (REST) or a
// 403 error frame (WebSocket).
func accessRefused(err error) error {
	return &broker.Error{Code: broker.CodeAccessRefused, Text: err.Error()}
}

// check refuses an operation that needs kind on the named resource.
func (s *Server) check(u *auth.User, v *broker.VHost, kind auth.Kind, res auth.Resource, name string) error {
	if res == auth.Exchange {
		name = auth.ExchangeResource(name)
	}
	if err := s.checkerFor(u).Check(u.Name, v.Name(), kind, res, name); err != nil {
		return accessRefused(err)
	}
	return nil
}

// usableVHost is vhostOf for messaging: the user must have permissions
// in the vhost, else 403.
func (s *Server) usableVHost(w http.ResponseWriter, r *http.Request, name string) *broker.VHost {
	v := s.vhostOf(w, name)
	if v == nil {
		return nil
	}
	if err := s.checkerFor(userOf(r)).CheckVHost(userOf(r).Name, v.Name()); err != nil {
		writeError(w, http.StatusForbidden, "access_refused", err.Error())
		return nil
	}
	return v
}

// privateQueue declares a server-named exclusive queue bound to exchange
// for one subscriber (WebSocket, SSE): configure on the queue (checked
// once the core has named it), write on it and read on the exchange for
// the bind, read on it to consume.
func (s *Server) privateQueue(u *auth.User, v *broker.VHost, exchange, key string, owner broker.Owner) (*broker.Queue, error) {
	if err := s.check(u, v, auth.Read, auth.Exchange, exchange); err != nil {
		return nil, err
	}
	if err := s.checkTopic(u, v, auth.Read, exchange, key); err != nil {
		return nil, err
	}
	q, err := v.DeclareQueue("", broker.QueueOptions{Exclusive: true, AutoDelete: true, Owner: owner})
	if err != nil {
		return nil, err
	}
	for _, k := range []auth.Kind{auth.Configure, auth.Write, auth.Read} {
		if err = s.check(u, v, k, auth.Queue, q.Name()); err != nil {
			break
		}
	}
	if err == nil {
		err = v.BindQueue(q.Name(), exchange, key, nil, owner)
	}
	if err != nil {
		_, _ = v.DeleteQueue(q.Name(), owner, false, false)
		return nil, err
	}
	return q, nil
}

// Management access levels, as RabbitMQ's management plugin: any of
// management, policymaker, monitoring or administrator may log in and
// read; administrator alone manages users, permissions and vhosts.
var managementTags = []string{auth.TagManagement, auth.TagPolicymaker, auth.TagMonitoring, auth.TagAdministrator}

// requireTag wraps a handler so that only users with one of tags reach it.
func requireTag(h http.HandlerFunc, tags ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := userOf(r)
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
		writeError(w, http.StatusForbidden, "not_authorised", reason)
	}
}

// allowMgmt checks, for a management write, the permission the matching
// AMQP operation needs (RabbitMQ's management API checks both the tag and
// the permission); it answers 403 itself.
func (s *Server) allowMgmt(w http.ResponseWriter, r *http.Request, v *broker.VHost, res auth.Resource, name string, kind auth.Kind) bool {
	if err := s.check(userOf(r), v, kind, res, name); err != nil {
		writeBrokerError(w, err)
		return false
	}
	return true
}

// checkTopic refuses a publish (Write) or bind (Read) with key on a topic
// exchange the user's topic permissions do not allow (auth.CheckTopicAccess,
// shared by every protocol). The web has no client id: {client_id} stays
// unexpanded, as RabbitMQ leaves it for protocols other than MQTT.
func (s *Server) checkTopic(u *auth.User, v *broker.VHost, kind auth.Kind, exchange, key string) error {
	if err := auth.CheckTopicAccess(s.checkerFor(u), u.Name, v.Name(), kind, exchange, key, auth.TopicVars{}, exchangeKind(v)); err != nil {
		return accessRefused(err)
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
