package httpapi

import (
	_ "embed"
	"io"
	"net/http"
)

// heraldJSSource is the browser client of the /ws protocol, served as is.
//
//go:embed herald.js
var heraldJSSource string

// heraldJS serves /herald.js without authentication: it is public code,
// and the socket it opens is authenticated.
func (s *Server) heraldJS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = io.WriteString(w, heraldJSSource)
}

// heraldDTSSource is herald.js's TypeScript typings.
//
//go:embed herald.d.ts
var heraldDTSSource string

// heraldDTS serves /herald.d.ts, next to /herald.js.
func (s *Server) heraldDTS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/typescript; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = io.WriteString(w, heraldDTSSource)
}
