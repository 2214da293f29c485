// Package console is Herald's web console: a static single-page app
// (plain HTML, CSS and JavaScript modules, no build step and nothing
// loaded from elsewhere: it works offline) embedded in the binary.
//
// The console talks only to the management API of internal/admin (/api/...)
// with the HTTP basic credentials typed on its login form, kept in the
// tab's sessionStorage. It polls /api/overview, /api/queues, /api/vhosts
// and /api/health/checks/alarms every 2 seconds and computes message
// rates from successive readings of the queues' counters.
//
// Mount Handler at "/" and "/console/" (web.Config.Console does that):
// "/" answers index.html and "/console/..." the assets. The files are
// public; the data is behind the API's authentication.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS // read-only: not mutable state

// csp allows nothing but this origin: no inline script or style, no
// framing (clickjacking of the delete buttons).
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// contentTypes is fixed here rather than taken from mime.TypeByExtension,
// which reads the host's /etc/mime.types and so varies between machines.
var contentTypes = map[string]string{ // read-only
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

type file struct {
	body  []byte
	ctype string
	etag  string
}

// Handler serves the console: index.html for "/", the assets under
// "/console/". Anything else is 404.
func Handler() http.Handler {
	files := map[string]file{}
	// The embedded tree is fixed at build time: read it once, with a
	// content hash as ETag so browsers revalidate cheaply.
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ctype, ok := contentTypes[path.Ext(p)]
		if !ok {
			ctype = "application/octet-stream"
		}
		files[strings.TrimPrefix(p, "assets/")] = file{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic("console: embedded assets unreadable: " + err.Error()) // cannot happen with embed
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var name string
		switch p := r.URL.Path; {
		case p == "/":
			name = "index.html"
		case strings.HasPrefix(p, "/console/"):
			name = strings.TrimPrefix(p, "/console/")
		}
		f, ok := files[name]
		if !ok || name == "" {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.ctype)
		h.Set("ETag", f.etag)
		// Revalidate every time: a new Herald binary brings new assets
		// under the same names.
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if name == "index.html" {
			h.Set("Content-Security-Policy", csp)
			h.Set("X-Frame-Options", "DENY")
		}
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.body))
	})
}
