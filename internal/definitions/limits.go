package definitions

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/heraldmq/herald/internal/broker"
)

// Limits travel as RabbitMQ exports them: vhost limits as runtime
// parameters of component "vhost-limits" (name "limits", value
// {"max-connections": N, "max-queues": N}), user limits as a "limits"
// object in the user's entry.

// Parameter is a RabbitMQ runtime parameter; only component
// "vhost-limits" is interpreted, the others are kept as they are.
type Parameter struct {
	VHost     string          `json:"vhost"`
	Component string          `json:"component"`
	Name      string          `json:"name"`
	Value     json.RawMessage `json:"value"`
}

const vhostLimitsComponent = "vhost-limits"

// exportLimits fills doc's parameters and user limits from b.
func exportLimits(b *broker.Broker, doc *Document) {
	for _, e := range b.VHostLimits() {
		v, _ := json.Marshal(e.Limits)
		doc.Parameters = append(doc.Parameters, Parameter{VHost: e.Name, Component: vhostLimitsComponent, Name: "limits", Value: v})
	}
	if doc.Users == nil {
		return
	}
	for _, e := range b.UserLimits() {
		if doc.UserLimits == nil {
			doc.UserLimits = make(map[string]map[string]int)
		}
		doc.UserLimits[e.Name] = e.Limits
	}
}

// importLimits sets the limits doc carries.
func importLimits(b *broker.Broker, doc Document) error {
	var errs []error
	for _, p := range doc.Parameters {
		if p.Component != vhostLimitsComponent {
			continue
		}
		var m map[string]int
		if err := json.Unmarshal(p.Value, &m); err != nil {
			errs = append(errs, fmt.Errorf("vhost-limits of '%s': %w", p.VHost, err))
			continue
		}
		for name, n := range m {
			errs = append(errs, b.SetVHostLimit(p.VHost, name, n))
		}
	}
	for user, m := range doc.UserLimits {
		for name, n := range m {
			errs = append(errs, b.SetUserLimit(user, name, n))
		}
	}
	return errors.Join(errs...)
}

// userLimitsJSON is the part of a users entry that auth.UserDef lacks.
type userLimitsJSON struct {
	Users []struct {
		Name   string         `json:"name"`
		Limits map[string]int `json:"limits"`
	} `json:"users"`
}

// parseUserLimits reads users[].limits from a document's JSON.
func parseUserLimits(data []byte, doc *Document) {
	var ul userLimitsJSON
	if json.Unmarshal(data, &ul) != nil {
		return
	}
	for _, u := range ul.Users {
		if len(u.Limits) > 0 {
			if doc.UserLimits == nil {
				doc.UserLimits = make(map[string]map[string]int)
			}
			doc.UserLimits[u.Name] = u.Limits
		}
	}
}

// MarshalJSON writes the document, adding users[].limits, which
// auth.UserDef does not carry.
func (d Document) MarshalJSON() ([]byte, error) {
	type plain Document // no MarshalJSON: no recursion
	data, err := json.Marshal(plain(d))
	if err != nil || len(d.UserLimits) == 0 {
		return data, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	var users []map[string]any
	if err := json.Unmarshal(m["users"], &users); err != nil {
		return nil, err
	}
	for _, u := range users {
		if name, _ := u["name"].(string); d.UserLimits[name] != nil {
			u["limits"] = d.UserLimits[name]
		}
	}
	if m["users"], err = json.Marshal(users); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}
