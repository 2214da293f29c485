package auth

import (
	"encoding/json"
	"testing"
)

// FuzzImportDefinitions feeds arbitrary definitions files (users,
// permissions and topic_permissions sections) to the importer: it must never panic, and a user
// it accepted must round-trip through export.
func FuzzImportDefinitions(f *testing.F) {
	f.Add([]byte(`{"users":[{"name":"r","password_hash":"kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR","hashing_algorithm":"rabbit_password_hashing_sha256","tags":["administrator"]}],"permissions":[{"user":"r","vhost":"/","configure":".*","write":"^amq\\.","read":""}]}`))
	f.Add([]byte(`{"users":[{"name":"a","password_hash":"","tags":"management, monitoring"}],"permissions":[{"user":"a","vhost":"v","configure":"(","write":"","read":""}]}`))
	f.Add([]byte(`{"users":[{"name":"","tags":7}]}`))
	f.Add([]byte(`{"users":[{"name":"d","password_hash":"","tags":[]}],"topic_permissions":[{"user":"d","vhost":"/","exchange":"amq.topic","write":"^{client_id}\\.","read":"("},{"user":"x","vhost":"/","exchange":"e","write":"","read":""}]}`))
	f.Add([]byte(`{"users":[{"name":"b","password_hash":"$2a$10$FcEWiw2EbG/1fARkHE2YSeor9og0WNuttje5tFNMk.PJKCJXQMlQq","hashing_algorithm":"herald_password_hashing_bcrypt","tags":[]},{"name":"c","password_hash":"JDJhJDA0JHh4eHh4eHh4eHh4eHh4eHh4eHh4eHV4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eA==","tags":[]}]}`))
	f.Add([]byte(`{"users":[{"name":"s","password_hash":"c2FsdHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eA==","hashing_algorithm":"rabbit_password_hashing_sha512"},{"name":"m","password_hash":"c2FsdHh4eHh4eHh4eHh4eHh4eHg=","hashing_algorithm":""}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var d Definitions
		if json.Unmarshal(data, &d) != nil {
			return
		}
		u := NewUsers()
		_ = u.ImportDefinitions(d, true)
		for _, p := range u.ListPermissions() {
			_ = u.Check(p.User, p.VHost, Read, Queue, "q")
		}
		for _, p := range u.ListTopicPermissions() {
			_ = u.CheckTopic(p.User, p.VHost, Write, p.Exchange, "a.b", TopicVars{ClientID: "c"})
		}
		exp := u.ExportDefinitions()
		v := NewUsers()
		if err := v.ImportDefinitions(exp, true); err != nil {
			t.Fatalf("re-import of an export failed: %v", err)
		}
	})
}
