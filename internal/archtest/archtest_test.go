// Package archtest enforces the layering of docs/architecture.md: it lists each
// package's dependencies with `go list -deps` and fails on a forbidden import.
package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/heraldmq/herald"

type pkg struct {
	ImportPath string
	Deps       []string
	Imports    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Deps,Imports", module+"/...")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// rule forbids packages under from (transitively) depending on packages
// matching any of deny. The table is docs/architecture.md's "Layers" as
// code: read one beside the other.
type rule struct {
	from string
	deny []string
	why  string
	// direct checks only the package's own imports: the core may use the
	// store below it, so everything above the core reaches it indirectly.
	direct bool
}

const (
	internal = module + "/internal/"
	anyHere  = module + "/" // any package of this module
)

// adapters face clients: each protocol under internal/protocol, and the
// management API.
var adapters = []string{internal + "protocol", internal + "admin"}

var rules = []rule{
	// The core.
	{internal + "broker", []string{internal + "protocol", internal + "admin", internal + "web", internal + "server", internal + "app", "net/http"}, "the core is protocol-neutral", false},
	{internal + "broker", []string{internal + "cluster", "github.com/hashicorp/raft"}, "the core declares the Replicator seam; cluster mode implements it", false},
	// Cluster mode sits beside the adapters: it drives the core's command
	// seam and knows no protocol, listener or wiring.
	{internal + "cluster", []string{internal + "protocol", internal + "admin", internal + "web", internal + "server", internal + "app"}, "Raft replicates the core's commands; it knows no protocol and no wiring", false},
	{internal + "cluster", []string{internal + "store", internal + "streamlog"}, "cluster mode calls the core, never the message log", true},
	{internal + "admin", []string{internal + "cluster"}, "the management API reads the cluster through its own small interface", false},
	{internal + "store", []string{anyHere}, "the store sits below the core (stdlib and internal/vfs only)", false},
	{internal + "topic", []string{anyHere}, "the trie is a leaf (stdlib only)", false},
	{internal + "streamlog", []string{anyHere}, "the stream log sits below the core (stdlib and internal/vfs only)", false},
	{internal + "vfs", []string{anyHere}, "the file-system seam is a leaf (stdlib only)", false},
	// Pure codecs.
	{internal + "protocol/amqp091/frame", []string{anyHere}, "codecs are pure (stdlib only)", false},
	{internal + "protocol/mqtt/packet", []string{anyHere}, "codecs are pure (stdlib only)", false},
	{internal + "protocol/stomp/frame", []string{anyHere}, "codecs are pure (stdlib only)", false},
	// Adapters reach the core through its Go API, never the log or the
	// wiring above them.
	{internal + "protocol", []string{internal + "store", internal + "streamlog"}, "adapters call the core, never the store", true},
	{internal + "admin", []string{internal + "store", internal + "streamlog"}, "adapters call the core, never the store", true},
	{internal + "protocol", []string{internal + "server", internal + "app"}, "adapters know nothing of the wiring above them", false},
	{internal + "admin", []string{internal + "server", internal + "app"}, "adapters know nothing of the wiring above them", false},
	{internal + "protocol/amqp091", []string{internal + "web"}, "a socket protocol does not depend on the HTTP shell", false},
	{internal + "protocol/mqtt", []string{internal + "web"}, "a socket protocol does not depend on the HTTP shell", false},
	{internal + "protocol/stomp", []string{internal + "web"}, "a socket protocol does not depend on the HTTP shell", false},
	{internal + "protocol/kit", adapters, "the kit serves every adapter and knows none", false},
	{internal + "protocol/wsconn", []string{anyHere}, "the WebSocket transport serves every adapter and knows none (stdlib only)", false},
	// The HTTP shell routes and logs in; what it mounts comes from above.
	{internal + "web", []string{internal + "admin", internal + "protocol", internal + "server", internal + "app"}, "the shell knows no mounted part", false},
	{internal + "web", []string{internal + "store"}, "the shell calls the core, never the store", true},
	// Listeners only move sockets.
	{internal + "server", []string{anyHere}, "listeners know no protocol and no core (stdlib only)", false},
	// Leaves.
	{internal + "auth", []string{internal + "broker", internal + "protocol", internal + "admin", internal + "web", internal + "server", internal + "app", internal + "store"}, "auth is a leaf", false},
	{internal + "metrics", []string{internal + "protocol", internal + "admin", internal + "web", internal + "server", internal + "app"}, "metrics read the core only", false},
	// Public packages are importable by anyone, so they build on nothing
	// internal.
	{module + "/pkg", []string{internal}, "pkg/ is public, imported from outside the module, where internal/ cannot be", false},
	{module + "/examples", []string{internal}, "examples show what a user can write, with public packages only", false},
}

func matches(path, prefix string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(path, prefix)
	}
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

func TestLayering(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	for _, p := range pkgs {
		for _, r := range rules {
			if !matches(p.ImportPath, r.from) {
				continue
			}
			deps := p.Deps
			if r.direct {
				deps = p.Imports
			}
			for _, d := range deps {
				for _, deny := range r.deny {
					if matches(d, deny) && d != p.ImportPath && !matches(d, internal+"vfs") {
						t.Errorf("%s imports %s: forbidden because %s", p.ImportPath, d, r.why)
					}
				}
			}
		}
		// An adapter never imports another adapter.
		if proto := adapterOf(p.ImportPath); proto != "" {
			for _, d := range p.Deps {
				if other := adapterOf(d); other != "" && other != proto {
					t.Errorf("%s imports %s: adapters must not depend on each other", p.ImportPath, d)
				}
			}
		}
		for _, d := range p.Deps {
			// Nothing imports cmd.
			if strings.HasPrefix(d, module+"/cmd/") {
				t.Errorf("%s imports %s: nothing may depend on cmd", p.ImportPath, d)
			}
			// Only cmd (and the tests in test/) start the whole thing.
			if matches(d, internal+"app") && !strings.HasPrefix(p.ImportPath, module+"/cmd/") && !matches(p.ImportPath, module+"/test") {
				t.Errorf("%s imports %s: only cmd and test/ may use the composition root", p.ImportPath, d)
			}
		}
	}
}

// adapterOf names the adapter a package belongs to ("amqp091", "admin",
// ...), or "" for a package outside the adapters. The kit and the
// WebSocket transport (wsconn) are shared by all of them and are no adapter.
func adapterOf(path string) string {
	if matches(path, internal+"admin") {
		return "admin"
	}
	rest, ok := strings.CutPrefix(path, internal+"protocol/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	if name == "kit" || name == "wsconn" {
		return ""
	}
	return name
}

// TestNoGlobalLoggersOrRegistries keeps package-level loggers and the
// default Prometheus registry out of everything but cmd.
func TestNoGlobalLoggersOrRegistries(t *testing.T) {
	out, err := exec.Command("git", "grep", "-nE",
		`^var [A-Za-z_]+ *= *slog\.(New|Default)|slog\.SetDefault|prometheus\.(MustRegister|DefaultRegisterer)|promauto\.New`,
		"--", "*.go", ":!cmd/", ":!*_test.go").CombinedOutput()
	if err != nil && len(out) == 0 {
		return // git grep exits 1 when nothing matches
	}
	if len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("package-level logger or default registry outside cmd:\n%s", out)
	}
}
