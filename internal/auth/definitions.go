package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Definitions are the users and permissions sections of RabbitMQ's
// definitions export, which Herald's definitions file embeds.
type Definitions struct {
	Users       []UserDef         `json:"users"`
	Permissions []PermissionEntry `json:"permissions"`
	// TopicPermissions is RabbitMQ's topic_permissions section.
	TopicPermissions []TopicPermissionEntry `json:"topic_permissions"`
}

// UserDef is a user in RabbitMQ's definitions and management API shape.
type UserDef struct {
	Name             string         `json:"name"`
	PasswordHash     string         `json:"password_hash"`
	HashingAlgorithm string         `json:"hashing_algorithm"`
	Tags             Tags           `json:"tags"`
	Limits           map[string]any `json:"limits"`
}

// Tags is a tag list. It encodes as a JSON list (RabbitMQ 3.9+) and
// decodes from a list or from the older comma-separated string.
type Tags []string

// UnmarshalJSON accepts ["a","b"] and "a,b".
func (t *Tags) UnmarshalJSON(b []byte) error {
	var list []string
	if err := json.Unmarshal(b, &list); err == nil {
		*t = list
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("tags must be a list or a comma-separated string")
	}
	*t = ParseTags(s)
	return nil
}

// MarshalJSON always writes a list, never null.
func (t Tags) MarshalJSON() ([]byte, error) {
	if t == nil {
		return []byte("[]"), nil
	}
	return json.Marshal([]string(t))
}

// ParseTags splits RabbitMQ's comma-separated tag string.
func ParseTags(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Def returns u in definitions shape.
func (u *User) Def() UserDef {
	return UserDef{Name: u.Name, PasswordHash: u.PasswordHash(), HashingAlgorithm: u.HashingAlgorithm(),
		Tags: append(Tags{}, u.Tags...), Limits: map[string]any{}}
}

// ExportDefinitions returns every user and permission.
func (u *Users) ExportDefinitions() Definitions {
	users := u.List()
	d := Definitions{Users: make([]UserDef, 0, len(users)), Permissions: u.ListPermissions()}
	for _, usr := range users {
		d.Users = append(d.Users, usr.Def())
	}
	if d.Permissions == nil {
		d.Permissions = []PermissionEntry{}
	}
	if d.TopicPermissions = u.ListTopicPermissions(); d.TopicPermissions == nil {
		d.TopicPermissions = []TopicPermissionEntry{}
	}
	return d
}

// ImportDefinitions adds or replaces the users and permissions of d. With
// replace, users and permissions not in d are removed first: restoring a
// saved file at start makes the database exactly what was saved (a deleted
// guest stays deleted). It imports what it can and returns every problem
// joined. The change hook runs once, at the end.
func (u *Users) ImportDefinitions(d Definitions, replace bool) error {
	hook := u.swapHook(nil)
	defer func() {
		u.swapHook(hook)
		u.changed()
	}()
	if replace {
		u.mu.Lock()
		keep := make(map[string]*User)
		for _, ud := range d.Users {
			if old, ok := u.users[ud.Name]; ok {
				keep[ud.Name] = old // keeps its loopback flag through PutUserHash
			}
		}
		u.users = keep
		u.perms = make(map[string]map[string]*grant)
		u.topic = make(map[string]map[string]map[string]*topicGrant)
		u.mu.Unlock()
		u.verified.clear()
	}
	var errs []error
	for _, ud := range d.Users {
		if ud.Name == "" {
			errs = append(errs, errors.New("a user without a name"))
			continue
		}
		if err := u.PutUserHash(ud.Name, ud.PasswordHash, ud.HashingAlgorithm, ud.Tags); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range d.Permissions {
		if err := u.SetPermissions(p.User, p.VHost, p.Permissions); err != nil {
			errs = append(errs, fmt.Errorf("permissions of '%s' in vhost '%s': %w", p.User, p.VHost, err))
		}
	}
	for _, p := range d.TopicPermissions {
		if _, err := u.SetTopicPermissions(p.User, p.VHost, p.TopicPermissions); err != nil {
			errs = append(errs, fmt.Errorf("topic permissions of '%s' in vhost '%s' on exchange '%s': %w", p.User, p.VHost, p.Exchange, err))
		}
	}
	return errors.Join(errs...)
}

func (u *Users) swapHook(f func()) func() {
	u.hookMu.Lock()
	defer u.hookMu.Unlock()
	old := u.onChange
	u.onChange = f
	return old
}
