package broker

import (
	"errors"
	"fmt"
	"strings"
)

// Definitions is the broker's topology in the shape of RabbitMQ's
// definitions export (the JSON of `rabbitmqctl export_definitions` and
// /api/definitions), so that a RabbitMQ export imports into Herald. Users
// and permissions live in internal/auth and are added by the caller.
type Definitions struct {
	VHosts    []VHostDef    `json:"vhosts"`
	Policies  []PolicyDef   `json:"policies"`
	Queues    []QueueDef    `json:"queues"`
	Exchanges []ExchangeDef `json:"exchanges"`
	Bindings  []BindingDef  `json:"bindings"`
}

// VHostDef is a virtual host in a definitions document.
type VHostDef struct {
	Name string `json:"name"`
}

// PolicyDef is a policy in a definitions document.
type PolicyDef struct {
	VHost      string `json:"vhost"`
	Name       string `json:"name"`
	Pattern    string `json:"pattern"`
	ApplyTo    string `json:"apply-to"`
	Definition Table  `json:"definition"`
	Priority   int    `json:"priority"`
}

// QueueDef is a queue in a definitions document.
type QueueDef struct {
	Name       string `json:"name"`
	VHost      string `json:"vhost"`
	Durable    bool   `json:"durable"`
	AutoDelete bool   `json:"auto_delete"`
	Arguments  Table  `json:"arguments"`
}

// ExchangeDef is an exchange in a definitions document.
type ExchangeDef struct {
	Name       string `json:"name"`
	VHost      string `json:"vhost"`
	Type       string `json:"type"`
	Durable    bool   `json:"durable"`
	AutoDelete bool   `json:"auto_delete"`
	Internal   bool   `json:"internal"`
	Arguments  Table  `json:"arguments"`
}

// BindingDef is a binding in a definitions document.
type BindingDef struct {
	Source          string `json:"source"`
	VHost           string `json:"vhost"`
	Destination     string `json:"destination"`
	DestinationType string `json:"destination_type"`
	RoutingKey      string `json:"routing_key"`
	Arguments       Table  `json:"arguments"`
}

// ExportDefinitions returns the topology. With durableOnly it holds what
// survives a restart, as RabbitMQ: durable exchanges and queues (not
// exclusive ones), bindings between durable things, policies and vhosts.
func (b *Broker) ExportDefinitions(durableOnly bool) Definitions {
	d := Definitions{VHosts: []VHostDef{}, Policies: []PolicyDef{}, Queues: []QueueDef{}, Exchanges: []ExchangeDef{}, Bindings: []BindingDef{}}
	for _, v := range b.VHosts() {
		d.VHosts = append(d.VHosts, VHostDef{Name: v.name})
		for _, p := range v.Policies() {
			d.Policies = append(d.Policies, PolicyDef{VHost: v.name, Name: p.Name, Pattern: p.Pattern, ApplyTo: p.ApplyTo, Definition: p.Definition, Priority: p.Priority})
		}
		durableQueue := map[string]bool{}
		for _, q := range v.Queues() {
			keep := q.durable && !q.exclusive
			durableQueue[q.name] = keep
			if durableOnly && !keep {
				continue
			}
			d.Queues = append(d.Queues, QueueDef{Name: q.name, VHost: v.name, Durable: q.durable, AutoDelete: q.autoDelete, Arguments: nonNil(q.args)})
		}
		durableExchange := map[string]bool{}
		for _, e := range v.Exchanges() {
			durableExchange[e.name] = e.durable
			if e.name == "" || strings.HasPrefix(e.name, reservedPrefix) || (durableOnly && !e.durable) {
				continue
			}
			d.Exchanges = append(d.Exchanges, ExchangeDef{Name: e.name, VHost: v.name, Type: e.kind, Durable: e.durable, AutoDelete: e.autoDelete, Internal: e.internal, Arguments: nonNil(e.args)})
		}
		for _, e := range v.Exchanges() {
			if e.name == "" {
				continue
			}
			for _, bd := range e.Bindings() {
				if _, listed := durableQueue[bd.Destination]; bd.DestinationKind == "queue" && !listed {
					continue // an internal queue's (user queues): not in the export
				}
				if durableOnly {
					if !e.durable {
						continue
					}
					if bd.DestinationKind == "queue" && !durableQueue[bd.Destination] {
						continue
					}
					if bd.DestinationKind == "exchange" && !durableExchange[bd.Destination] {
						continue
					}
				}
				d.Bindings = append(d.Bindings, BindingDef{Source: e.name, VHost: v.name, Destination: bd.Destination, DestinationType: bd.DestinationKind, RoutingKey: bd.RoutingKey, Arguments: nonNil(bd.Args)})
			}
		}
	}
	return d
}

func nonNil(t Table) Table {
	if t == nil {
		return Table{}
	}
	return t
}

// ImportDefinitions creates what d describes. Existing equivalent objects
// are left alone; every problem is reported and the rest still imported.
func (b *Broker) ImportDefinitions(d Definitions) error {
	var errs []error
	// vhost creates the named vhost if needed; nil (the problem noted)
	// when it cannot: in a cluster, a node that cannot reach the leader.
	vhost := func(name string) *VHost {
		if name == "" {
			name = DefaultVHost
		}
		r, err := b.run(CreateVHost{VHost: name})
		if r.VHost == nil {
			if err == nil {
				err = fmt.Errorf("vhost %q could not be created", name)
			}
			errs = append(errs, fmt.Errorf("vhost %q: %w", name, err))
		}
		return r.VHost
	}
	for _, v := range d.VHosts {
		vhost(v.Name)
	}
	for _, e := range d.Exchanges {
		if e.Name == "" || strings.HasPrefix(e.Name, reservedPrefix) {
			continue
		}
		v := vhost(e.VHost)
		if v == nil {
			continue
		}
		if _, err := v.DeclareExchange(e.Name, ExchangeOptions{Kind: e.Type, Durable: e.Durable, AutoDelete: e.AutoDelete, Internal: e.Internal, Args: emptyToNil(e.Arguments)}); err != nil {
			errs = append(errs, err)
		}
	}
	for _, q := range d.Queues {
		v := vhost(q.VHost)
		if v == nil {
			continue
		}
		if _, err := v.DeclareQueue(q.Name, QueueOptions{Durable: q.Durable, AutoDelete: q.AutoDelete, Args: emptyToNil(q.Arguments)}); err != nil {
			errs = append(errs, err)
		}
	}
	for _, bd := range d.Bindings {
		v := vhost(bd.VHost)
		if v == nil {
			continue
		}
		var err error
		if bd.DestinationType == "exchange" {
			err = v.BindExchange(bd.Destination, bd.Source, bd.RoutingKey, emptyToNil(bd.Arguments))
		} else {
			err = v.BindQueue(bd.Destination, bd.Source, bd.RoutingKey, emptyToNil(bd.Arguments), 0)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range d.Policies {
		v := vhost(p.VHost)
		if v == nil {
			continue
		}
		if err := v.PutPolicy(Policy{Name: p.Name, Pattern: p.Pattern, ApplyTo: p.ApplyTo, Priority: p.Priority, Definition: normalizeJSONNumbers(p.Definition)}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func emptyToNil(t Table) Table {
	if len(t) == 0 {
		return nil
	}
	return normalizeJSONNumbers(t)
}

// normalizeJSONNumbers turns the float64s of decoded JSON into int64 where
// they are whole, so that x-message-ttl: 60000 reads as an integer.
func normalizeJSONNumbers(t Table) Table {
	for k, v := range t {
		switch n := v.(type) {
		case float64:
			if n == float64(int64(n)) {
				t[k] = int64(n)
			}
		case map[string]any:
			t[k] = normalizeJSONNumbers(n)
		}
	}
	return t
}
