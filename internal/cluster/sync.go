package cluster

import (
	"errors"
	"strings"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/definitions"
)

// syncTo makes b's replicated definitions those of doc, applying commands
// directly (a snapshot is applied on every node by itself, never
// replicated again): what doc holds is declared, and the vhosts, queues,
// exchanges, bindings and policies b has beyond it are deleted. Node-local
// queues (exclusive, auto-delete) and what is bound to them stay.
func syncTo(b *broker.Broker, doc definitions.Document) error {
	var errs []error
	apply := func(c broker.Command) {
		if _, err := b.Apply(c); err != nil {
			errs = append(errs, err)
		}
	}
	vhosts := map[string]bool{}
	for _, v := range doc.VHosts {
		vhosts[v.Name] = true
	}
	for _, v := range b.VHosts() {
		if !vhosts[v.Name()] {
			apply(broker.DeleteVHost{VHost: v.Name()})
		}
	}
	type key struct{ vhost, name string }
	queues, exchanges, policies := map[key]bool{}, map[key]bool{}, map[key]bool{}
	for _, q := range doc.Queues {
		queues[key{q.VHost, q.Name}] = true
	}
	for _, e := range doc.Exchanges {
		exchanges[key{e.VHost, e.Name}] = true
	}
	for _, p := range doc.Policies {
		policies[key{p.VHost, p.Name}] = true
	}
	type bkey struct{ vhost, src, dst, kind, rk string }
	bindings := map[bkey]bool{}
	for _, bd := range doc.Bindings {
		bindings[bkey{bd.VHost, bd.Source, bd.Destination, bd.DestinationType, bd.RoutingKey}] = true
	}
	for _, v := range b.VHosts() {
		vn := v.Name()
		for _, q := range v.Queues() {
			if !localQueue(q) && !queues[key{vn, q.Name()}] {
				apply(broker.DeleteQueue{VHost: vn, Name: q.Name()})
			}
		}
		for _, e := range v.Exchanges() {
			if e.Name() == "" || strings.HasPrefix(e.Name(), "amq.") {
				continue
			}
			if !exchanges[key{vn, e.Name()}] {
				apply(broker.DeleteExchange{VHost: vn, Name: e.Name()})
			}
		}
		for _, e := range v.Exchanges() {
			if e.Name() == "" {
				continue
			}
			for _, bd := range e.Bindings() {
				if bindings[bkey{vn, bd.Source, bd.Destination, bd.DestinationKind, bd.RoutingKey}] {
					continue
				}
				if bd.DestinationKind == "queue" {
					if q, err := v.Queue(bd.Destination); err == nil && localQueue(q) {
						continue
					}
				}
				apply(broker.Unbind{VHost: vn, Source: bd.Source, Destination: bd.Destination,
					ToExchange: bd.DestinationKind == "exchange", RoutingKey: bd.RoutingKey, Args: map[string]any(bd.Args)})
			}
		}
		for _, p := range v.Policies() {
			if !policies[key{vn, p.Name}] {
				apply(broker.DeletePolicy{VHost: vn, Name: p.Name})
			}
		}
	}
	for _, c := range doc.Definitions.Commands() {
		apply(c)
	}
	return errors.Join(errs...)
}
