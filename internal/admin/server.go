// Package admin is RabbitMQ's management API (/api/...) and the web
// console, mounted on the HTTP shell (internal/web): vhosts, users,
// permissions, exchanges, queues, bindings, policies, limits,
// definitions, connections, channels, consumers, nodes and message rates.
package admin

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/heraldmq/herald/internal/admin/console"
	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/web"
)

// Server serves the management API and the console.
type Server struct {
	shell  *web.Server
	cfg    web.Config
	broker *broker.Broker
	users  *auth.Users
	log    *slog.Logger
	// started is when Mount ran: the node's uptime, unless Config.Node
	// says otherwise.
	started time.Time
	node    string // "herald@<hostname>", RabbitMQ's node name shape
	// stats samples the queues' counters for the message rates
	// (stats.go); its goroutine runs until the shell closes.
	stats *statsSampler
	// cluster is set in cluster mode (cluster.go).
	cluster Cluster
}

// Mount registers the management API and the console on the shell and
// starts the message-rate sampler, which stops when the shell closes.
func Mount(shell *web.Server) *Server {
	s := &Server{shell: shell, cfg: shell.Config(), broker: shell.Broker(), users: shell.Users(), log: shell.Logger(),
		started: time.Now(), node: nodeName(), stats: newStatsSampler(shell.Broker())}
	s.routes()
	shell.Go(func() { s.stats.run(shell.Context(), s.cfg.StatsInterval) })
	return s
}

func (s *Server) routes() {
	c := console.Handler()
	s.shell.Public("GET /", c)
	s.shell.Public("GET /console/{path...}", c)

	mg, admin := s.shell.Management, s.shell.Administrator
	mg("GET /api/overview", s.overview)
	mg("GET /api/whoami", s.whoami)
	mg("GET /api/vhosts", s.listVHosts)
	mg("GET /api/vhosts/{vhost}", s.showVHost)
	admin("PUT /api/vhosts/{vhost}", s.putVHost)
	admin("DELETE /api/vhosts/{vhost}", s.deleteVHost)
	admin("GET /api/users", s.listUsers)
	admin("GET /api/users/{user}", s.showUser)
	admin("PUT /api/users/{user}", s.putUser)
	admin("DELETE /api/users/{user}", s.deleteUser)
	admin("GET /api/users/{user}/permissions", s.userPermissions)
	admin("GET /api/permissions", s.listPermissions)
	admin("GET /api/permissions/{vhost}/{user}", s.showPermissions)
	admin("PUT /api/permissions/{vhost}/{user}", s.putPermissions)
	admin("DELETE /api/permissions/{vhost}/{user}", s.deletePermissions)
	admin("GET /api/vhosts/{vhost}/permissions", s.vhostPermissions)
	mg("GET /api/exchanges", s.listExchanges)
	mg("GET /api/exchanges/{vhost}", s.listExchanges)
	mg("GET /api/exchanges/{vhost}/{name}", s.showExchange)
	mg("PUT /api/exchanges/{vhost}/{name}", s.putExchange)
	mg("DELETE /api/exchanges/{vhost}/{name}", s.deleteExchange)
	mg("GET /api/queues", s.listQueues)
	mg("GET /api/queues/{vhost}", s.listQueues)
	mg("GET /api/queues/{vhost}/{name}", s.showQueue)
	mg("PUT /api/queues/{vhost}/{name}", s.putQueue)
	mg("DELETE /api/queues/{vhost}/{name}", s.deleteQueue)
	mg("DELETE /api/queues/{vhost}/{name}/contents", s.purgeQueue)
	s.bindingRoutes(mg)
	mg("GET /api/queues/{vhost}/{name}/messages", s.peekMessages)
	mg("DELETE /api/queues/{vhost}/{name}/messages/{id}", s.deleteMessage)
	mg("POST /api/queues/{vhost}/{name}/move", s.moveMessages)
	mg("GET /api/aliveness-test/{vhost}", s.aliveness)
	pm := s.shell.Policymaker
	pm("GET /api/policies", s.listPolicies)
	pm("GET /api/policies/{vhost}", s.listPolicies)
	pm("GET /api/policies/{vhost}/{name}", s.showPolicy)
	pm("PUT /api/policies/{vhost}/{name}", s.putPolicy)
	pm("DELETE /api/policies/{vhost}/{name}", s.deletePolicy)
	admin("GET /api/definitions", s.exportDefinitions)
	admin("GET /api/definitions/{vhost}", s.exportDefinitions)
	admin("POST /api/definitions", s.importDefinitions)
	admin("POST /api/definitions/{vhost}", s.importDefinitions)
	mg("GET /api/connections", s.listConnections)
	mg("GET /api/vhosts/{vhost}/connections", s.listConnections)
	mg("GET /api/connections/{name}", s.showConnection)
	mg("DELETE /api/connections/{name}", s.closeConnection)
	mg("GET /api/consumers", s.listConsumers)
	mg("GET /api/consumers/{vhost}", s.listConsumers)
	mg("GET /api/health/checks/alarms", s.alarms)
	mg("GET /api/nodes", s.listNodes)
	mg("GET /api/nodes/{node}", s.showNode)
	mg("GET /api/channels", s.listChannels)
	mg("GET /api/vhosts/{vhost}/channels", s.listChannels)
	mg("GET /api/connections/{name}/channels", s.connectionChannels)
	mg("GET /api/channels/{channel}", s.showChannel)
	s.limitRoutes(admin)
	s.streamRoutes(mg)
	s.topicPermissionRoutes(admin)
	s.serviceRoutes(mg)
}

// The shell's helpers under the names this package's handlers use.

func writeJSON(w http.ResponseWriter, status int, v any) { web.WriteJSON(w, status, v) }
func writeError(w http.ResponseWriter, status int, errText, reason string) {
	web.WriteError(w, status, errText, reason)
}
func writeBrokerError(w http.ResponseWriter, err error) { web.WriteBrokerError(w, err) }
func userOf(r *http.Request) *auth.User                 { return web.UserOf(r) }
func exchangeName(name string) string                   { return web.ExchangeName(name) }

func (s *Server) vhostOf(w http.ResponseWriter, name string) *broker.VHost {
	return s.shell.VHostOf(w, name)
}
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	return s.shell.DecodeBody(w, r, v)
}
func (s *Server) checkerFor(u *auth.User) web.Checker { return s.shell.CheckerFor(u) }
func (s *Server) check(u *auth.User, v *broker.VHost, kind auth.Kind, res auth.Resource, name string) error {
	return s.shell.Check(u, v, kind, res, name)
}
func (s *Server) checkTopic(u *auth.User, v *broker.VHost, kind auth.Kind, exchange, key string) error {
	return s.shell.CheckTopic(u, v, kind, exchange, key)
}
