package metrics

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Protocol label values, so that every adapter spells them alike.
const (
	ProtocolAMQP   = "amqp091"
	ProtocolMQTT   = "mqtt"
	ProtocolSTOMP  = "stomp"
	ProtocolWS     = "websocket"
	ProtocolSSE    = "sse"
	ProtocolHTTP   = "http"
	ProtocolMQTTWS = "mqtt-ws"
)

// Counters are what the core cannot count because only an adapter sees
// it: client connections and their failures. All have the label
// "protocol" (one of the Protocol constants).
//
//	herald_connections_opened_total{protocol}       accepted client connections (TCP or WebSocket)
//	herald_connections_closed_total{protocol}       closed ones; opened - closed is the number open
//	herald_auth_failures_total{protocol}            refused logins
//	herald_protocol_errors_total{protocol}          connections closed for a protocol violation
//
// The helpers are safe on a nil *Counters, so an adapter whose config
// carries none (as in its unit tests) needs no check. They are safe for
// concurrent use.
type Counters struct {
	ConnectionsOpened *prometheus.CounterVec
	ConnectionsClosed *prometheus.CounterVec
	AuthFailures      *prometheus.CounterVec
	ProtocolErrors    *prometheus.CounterVec
}

func newCounters() *Counters {
	vec := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"protocol"})
	}
	return &Counters{
		ConnectionsOpened: vec("herald_connections_opened_total", "Client connections accepted."),
		ConnectionsClosed: vec("herald_connections_closed_total", "Client connections closed."),
		AuthFailures:      vec("herald_auth_failures_total", "Client logins refused."),
		ProtocolErrors:    vec("herald_protocol_errors_total", "Client connections closed for a protocol violation."),
	}
}

func (c *Counters) register(reg prometheus.Registerer) {
	reg.MustRegister(c.ConnectionsOpened, c.ConnectionsClosed, c.AuthFailures, c.ProtocolErrors)
}

// ConnOpened counts an accepted connection of protocol.
func (c *Counters) ConnOpened(protocol string) {
	if c != nil {
		c.ConnectionsOpened.WithLabelValues(protocol).Inc()
	}
}

// ConnClosed counts a closed connection of protocol.
func (c *Counters) ConnClosed(protocol string) {
	if c != nil {
		c.ConnectionsClosed.WithLabelValues(protocol).Inc()
	}
}

// AuthFailed counts a refused login over protocol.
func (c *Counters) AuthFailed(protocol string) {
	if c != nil {
		c.AuthFailures.WithLabelValues(protocol).Inc()
	}
}

// ProtocolError counts a connection closed for a protocol violation.
func (c *Counters) ProtocolError(protocol string) {
	if c != nil {
		c.ProtocolErrors.WithLabelValues(protocol).Inc()
	}
}

// ProtocolLabel maps a connection registry's protocol name ("AMQP 0-9-1",
// "MQTT 5.0", "Web STOMP 1.2", "Web", ...) or the name of a counter
// without a connection ("HTTP", "SSE": see broker.ProtocolCounter) to the
// protocol label value.
func ProtocolLabel(registryName string) string {
	switch {
	case strings.HasPrefix(registryName, "AMQP"):
		return ProtocolAMQP
	case strings.HasPrefix(registryName, "MQTT"):
		return ProtocolMQTT
	case strings.HasPrefix(registryName, "STOMP"), strings.HasPrefix(registryName, "Web STOMP"):
		return ProtocolSTOMP
	case strings.HasPrefix(registryName, "Web MQTT"):
		return ProtocolMQTTWS
	case registryName == "Web":
		return ProtocolWS
	case registryName == "HTTP":
		return ProtocolHTTP
	case registryName == "SSE":
		return ProtocolSSE
	}
	return strings.ToLower(registryName)
}
