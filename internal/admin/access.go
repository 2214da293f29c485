package admin

import (
	"net/http"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
)

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
