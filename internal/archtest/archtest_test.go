// Package archtest enforces the layering of ARCHITECTURE.md: it lists each
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

// rule forbids packages under from (transitively) depending on packages matching any of deny.
type rule struct {
	from string
	deny []string
	why  string
}

var rules = []rule{
	{module + "/internal/broker", []string{module + "/internal/protocol", module + "/internal/web", module + "/internal/server", "net/http"}, "the core is protocol-neutral"},
	{module + "/internal/topic", []string{module + "/"}, "the trie is a leaf (stdlib only)"},
	{module + "/internal/store", []string{module + "/internal/broker"}, "the store sits below the core"},
	{module + "/internal/protocol/amqp091/frame", []string{module + "/"}, "codecs are pure (stdlib only)"},
	{module + "/internal/auth", []string{module + "/internal/broker", module + "/internal/protocol", module + "/internal/server"}, "auth is a leaf"},
	{module + "/pkg", []string{module + "/internal"}, "pkg/ is public, imported from outside the module, where internal/ cannot be"},
	{module + "/examples", []string{module + "/internal"}, "examples show what a user can write, with public packages only"},
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
			for _, d := range p.Deps {
				for _, deny := range r.deny {
					if matches(d, deny) && d != p.ImportPath {
						t.Errorf("%s imports %s: forbidden because %s", p.ImportPath, d, r.why)
					}
				}
			}
		}
		// A protocol adapter never imports another protocol adapter.
		if proto := protocolOf(p.ImportPath); proto != "" {
			for _, d := range p.Deps {
				if other := protocolOf(d); other != "" && other != proto {
					t.Errorf("%s imports %s: protocol adapters must not depend on each other", p.ImportPath, d)
				}
			}
		}
		// Nothing imports cmd.
		for _, d := range p.Deps {
			if strings.HasPrefix(d, module+"/cmd/") {
				t.Errorf("%s imports %s: nothing may depend on cmd", p.ImportPath, d)
			}
		}
	}
}

func protocolOf(path string) string {
	rest, ok := strings.CutPrefix(path, module+"/internal/protocol/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
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
