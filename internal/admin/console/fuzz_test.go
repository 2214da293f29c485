package console_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/heraldmq/herald/internal/admin/console"
)

// FuzzPath: any request path answers 200 (an embedded asset), 304, 404 or
// 405, and never panics.
func FuzzPath(f *testing.F) {
	for _, s := range []string{"/", "/console/js/app.js", "/console/", "/console/../console.go", "/console/js/../console.css", "//console/x", "/console/%00"} {
		f.Add("GET", s)
	}
	f.Add("HEAD", "/console/favicon.svg")
	f.Add("POST", "/")
	h := console.Handler()
	f.Fuzz(func(t *testing.T, method, path string) {
		u, err := url.Parse(path)
		if err != nil || !validMethod(method) {
			return
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Method, r.URL = method, u
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK, http.StatusNotFound, http.StatusMethodNotAllowed:
		default:
			t.Fatalf("%s %q = %d", method, path, w.Code)
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}
