package web

import (
	"net/http"
	"net/url"
	"strings"
)

// router matches escaped path segments and unescapes each one, so that
// a vhost segment "%2F" is the vhost "/". (net/http's ServeMux unescapes
// the segment "%2F" to "/" before matching and then takes it for a
// trailing slash, so /api/queues/%2F/q matches nothing.)
type router struct {
	routes []route
}

type route struct {
	method  string
	pattern string   // as registered, for Request.Pattern
	segs    []string // literal, "{name}" or "{name...}" (last only)
	h       http.Handler
}

// handle registers "METHOD /a/{b}/{c...}" (the method is optional).
func (rt *router) handle(pattern string, h http.Handler) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "", pattern
	}
	rt.routes = append(rt.routes, route{method: method, pattern: pattern, segs: strings.Split(strings.TrimPrefix(path, "/"), "/"), h: h})
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	allowed, served := rt.serve(w, r, segs)
	if !served && len(segs) > 1 && segs[len(segs)-1] == "" {
		// A trailing slash names the same resource, as in RabbitMQ
		// (GET /api/connections/ is GET /api/connections). Tried second,
		// so that a route whose last wildcard may end in "/" (a routing
		// key) still gets the path as sent.
		var again []string
		if again, served = rt.serve(w, r, segs[:len(segs)-1]); !served && len(again) > 0 {
			allowed = again
		}
	}
	if served {
		return
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Method Not Allowed")
		return
	}
	WriteError(w, http.StatusNotFound, "Object Not Found", "Not Found")
}

// serve runs the first route matching segs and r's method; when none
// does, it returns the methods of the routes matching segs alone.
func (rt *router) serve(w http.ResponseWriter, r *http.Request, segs []string) (allowed []string, served bool) {
	for i := range rt.routes {
		rr := &rt.routes[i]
		vals, ok := rr.match(segs)
		if !ok {
			continue
		}
		if rr.method != "" && rr.method != r.Method && !(rr.method == http.MethodGet && r.Method == http.MethodHead) {
			allowed = append(allowed, rr.method)
			continue
		}
		for j := 0; j+1 < len(vals); j += 2 {
			r.SetPathValue(vals[j], vals[j+1])
		}
		r.Pattern = rr.pattern
		rr.h.ServeHTTP(w, r)
		return nil, true
	}
	return allowed, false
}

// match returns the wildcard names and values of a matching path.
func (rr *route) match(segs []string) ([]string, bool) {
	var vals []string
	for i, p := range rr.segs {
		if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "...}") {
			rest, err := url.PathUnescape(strings.Join(segs[min(i, len(segs)):], "/"))
			if err != nil || i > len(segs) {
				return nil, false
			}
			return append(vals, p[1:len(p)-4], rest), true
		}
		if i >= len(segs) {
			return nil, false
		}
		s, err := url.PathUnescape(segs[i])
		if err != nil {
			return nil, false
		}
		if strings.HasPrefix(p, "{") {
			if s == "" {
				return nil, false
			}
			vals = append(vals, p[1:len(p)-1], s)
		} else if s != p {
			return nil, false
		}
	}
	return vals, len(segs) == len(rr.segs)
}
