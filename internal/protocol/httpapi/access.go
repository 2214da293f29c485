package httpapi

import (
	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
)

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
