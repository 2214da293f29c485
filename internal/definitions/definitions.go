// Package definitions composes Herald's definitions document: the broker's
// topology (vhosts, policies, queues, exchanges, bindings) and the users
// and permissions, in the shape of RabbitMQ's definitions export (the JSON
// of `rabbitmqctl export_definitions` and GET /api/definitions). The
// durable definitions file, the management API and `herald serve
// --load-definitions` share it, so one format goes everywhere.
package definitions

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
)

// RabbitVersion is the RabbitMQ version the documents claim to be, so
// that RabbitMQ's tooling accepts them.
const RabbitVersion = "3.13.0"

// Document is RabbitMQ's export shape: the broker's topology and the
// users and permissions (password hashes, never passwords).
type Document struct {
	ProductName    string `json:"product_name,omitempty"`
	ProductVersion string `json:"product_version,omitempty"`
	RabbitVersion  string `json:"rabbit_version,omitempty"`
	// Users and Permissions are pointers so that a document without these
	// sections (a topology-only export, an old file) leaves the users
	// alone instead of deleting them all.
	Users       *[]auth.UserDef         `json:"users,omitempty"`
	Permissions *[]auth.PermissionEntry `json:"permissions,omitempty"`
	// TopicPermissions is RabbitMQ's topic_permissions section.
	TopicPermissions *[]auth.TopicPermissionEntry `json:"topic_permissions,omitempty"`
	// Parameters are RabbitMQ's runtime parameters; Herald interprets
	// component "vhost-limits" (see limits.go).
	Parameters []Parameter `json:"parameters,omitempty"`
	// UserLimits are the users' limits (users[].limits in the JSON), by
	// user name.
	UserLimits map[string]map[string]int `json:"-"`
	broker.Definitions
}

// Export returns the broker's topology and, when users is not nil, every
// user and permission. With durableOnly it holds what survives a restart.
func Export(b *broker.Broker, users *auth.Users, durableOnly bool) Document {
	doc := Document{ProductName: "Herald", RabbitVersion: RabbitVersion, Definitions: b.ExportDefinitions(durableOnly)}
	if users != nil {
		ud := users.ExportDefinitions()
		doc.Users, doc.Permissions, doc.TopicPermissions = &ud.Users, &ud.Permissions, &ud.TopicPermissions
	}
	exportLimits(b, &doc)
	return doc
}

// Filter keeps the parts of doc that belong to vhost, as RabbitMQ's
// GET /api/definitions/{vhost} (which omits users and vhosts).
func Filter(doc Document, vhost string) Document {
	out := Document{ProductName: doc.ProductName, ProductVersion: doc.ProductVersion, RabbitVersion: doc.RabbitVersion}
	d := &out.Definitions
	d.VHosts = []broker.VHostDef{}
	d.Policies = []broker.PolicyDef{}
	d.Queues = []broker.QueueDef{}
	d.Exchanges = []broker.ExchangeDef{}
	d.Bindings = []broker.BindingDef{}
	for _, p := range doc.Parameters {
		if p.VHost == vhost {
			out.Parameters = append(out.Parameters, p)
		}
	}
	for _, p := range doc.Policies {
		if p.VHost == vhost {
			d.Policies = append(d.Policies, p)
		}
	}
	for _, q := range doc.Queues {
		if q.VHost == vhost {
			d.Queues = append(d.Queues, q)
		}
	}
	for _, e := range doc.Exchanges {
		if e.VHost == vhost {
			d.Exchanges = append(d.Exchanges, e)
		}
	}
	for _, bd := range doc.Bindings {
		if bd.VHost == vhost {
			d.Bindings = append(d.Bindings, bd)
		}
	}
	return out
}

// Parse decodes a definitions document.
func Parse(data []byte) (Document, error) {
	var doc Document
	if err := json.Unmarshal(data, &doc); err != nil {
		return Document{}, fmt.Errorf("not a valid definitions document: %w", err)
	}
	parseUserLimits(data, &doc)
	return doc, nil
}

// Import creates what doc describes: vhosts first, then users and
// permissions (which need the vhosts), then the topology. With
// replaceUsers the users and permissions not in doc are removed (restoring
// the saved file at start); otherwise they are merged, as RabbitMQ's
// import does. It imports what it can and returns every problem joined.
func Import(b *broker.Broker, users *auth.Users, doc Document, replaceUsers bool) error {
	for _, v := range doc.VHosts {
		if v.Name != "" {
			b.AddVHost(v.Name)
		}
	}
	var errs []error
	if users != nil && doc.Users != nil {
		ud := auth.Definitions{Users: *doc.Users}
		if doc.Permissions != nil {
			ud.Permissions = *doc.Permissions
		}
		if doc.TopicPermissions != nil {
			ud.TopicPermissions = *doc.TopicPermissions
		}
		errs = append(errs, users.ImportDefinitions(ud, replaceUsers))
	} else if users != nil && (doc.Permissions != nil || doc.TopicPermissions != nil) {
		var ud auth.Definitions
		if doc.Permissions != nil {
			ud.Permissions = *doc.Permissions
		}
		if doc.TopicPermissions != nil {
			ud.TopicPermissions = *doc.TopicPermissions
		}
		errs = append(errs, users.ImportDefinitions(ud, false))
	}
	errs = append(errs, b.ImportDefinitions(doc.Definitions))
	errs = append(errs, importLimits(b, doc))
	return errors.Join(errs...)
}
