package wsconn

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// Options are a server endpoint's handshake and connection settings.
type Options struct {
	// Subprotocols the endpoint speaks, preferred first; the first the
	// client offers is chosen. A client that offers none of them gets
	// none (the endpoint decides whether to serve it).
	Subprotocols []string
	// OriginPatterns are the host patterns (path.Match, or
	// "scheme://host" patterns) of cross-origin pages allowed to connect;
	// same-origin requests and requests without Origin always may.
	OriginPatterns []string
	// AnyOrigin skips the Origin check.
	AnyOrigin bool
	// ReadLimit bounds a message (0: DefaultReadLimit; negative: none).
	ReadLimit int64
	// WriteTimeout bounds each write (0: none).
	WriteTimeout time.Duration
	// Pool lends buffers; share one per server (nil: a private one).
	Pool *Pool
}

// handshakeGUID is RFC 6455's key suffix (section 1.3).
const handshakeGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AcceptKey is the Sec-WebSocket-Accept answer to key.
func AcceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte(handshakeGUID))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// Accept completes the opening handshake of r (RFC 6455 4.2) and takes
// the connection over from the HTTP server. A request that is no valid
// upgrade, or from an origin not allowed, is answered with an HTTP error
// (426, 400, 403, 405) and Accept returns the reason.
func Accept(w http.ResponseWriter, r *http.Request, o *Options) (*Conn, error) {
	if o == nil {
		o = &Options{}
	}
	if code, err := checkUpgrade(w, r); err != nil {
		http.Error(w, err.Error(), code)
		return nil, err
	}
	if !o.AnyOrigin {
		if err := checkOrigin(r, o.OriginPatterns); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return nil, err
		}
	}
	if !canHijack(w) {
		http.Error(w, "connection cannot be upgraded", http.StatusNotImplemented)
		return nil, errors.New("websocket: the ResponseWriter cannot hijack")
	}
	sub := selectSubprotocol(r, o.Subprotocols)
	h := w.Header()
	h.Set("Upgrade", "websocket")
	h.Set("Connection", "Upgrade")
	h.Set("Sec-WebSocket-Accept", AcceptKey(strings.TrimSpace(r.Header.Get("Sec-WebSocket-Key"))))
	if sub != "" {
		h.Set("Sec-WebSocket-Protocol", sub)
	}
	// net/http sends a 101's headers when the connection is hijacked.
	w.WriteHeader(http.StatusSwitchingProtocols)
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, fmt.Errorf("websocket: hijack: %w", err)
	}
	buffered, _ := rw.Reader.Peek(rw.Reader.Buffered())
	// The HTTP server's deadlines (read header timeout) must not end the
	// WebSocket.
	_ = conn.SetDeadline(time.Time{})
	return newConn(conn, o, sub, buffered), nil
}

// canHijack reports whether w, or a ResponseWriter it wraps (Unwrap),
// can hand the connection over.
func canHijack(w http.ResponseWriter) bool {
	for {
		if _, ok := w.(http.Hijacker); ok {
			return true
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return false
		}
		w = u.Unwrap()
	}
}

// checkUpgrade validates an upgrade request as RFC 6455 4.2.1 asks.
func checkUpgrade(w http.ResponseWriter, r *http.Request) (int, error) {
	if !r.ProtoAtLeast(1, 1) {
		return http.StatusUpgradeRequired, fmt.Errorf("websocket: handshake needs HTTP/1.1, not %s", r.Proto)
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		return http.StatusUpgradeRequired, errors.New("websocket: not a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)")
	}
	if r.Method != http.MethodGet {
		return http.StatusMethodNotAllowed, fmt.Errorf("websocket: handshake method must be GET, not %s", r.Method)
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		return http.StatusBadRequest, fmt.Errorf("websocket: unsupported version %q (13 only)", r.Header.Get("Sec-WebSocket-Version"))
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return http.StatusBadRequest, errors.New("websocket: one Sec-WebSocket-Key header needed")
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(keys[0])); err != nil || len(k) != 16 {
		return http.StatusBadRequest, fmt.Errorf("websocket: invalid Sec-WebSocket-Key %q", keys[0])
	}
	return 0, nil
}

// checkOrigin lets a request without Origin, from its own host, or from a
// host the patterns match.
func checkOrigin(r *http.Request, patterns []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil {
		return fmt.Errorf("websocket: invalid Origin %q", origin)
	}
	if strings.EqualFold(r.Host, u.Host) {
		return nil
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, err := path.Match(strings.ToLower(p), strings.ToLower(target)); err == nil && ok {
			return nil
		}
	}
	return fmt.Errorf("websocket: origin %q is not allowed for host %q", origin, r.Host)
}

// selectSubprotocol picks the first of ours the client offers.
func selectSubprotocol(r *http.Request, ours []string) string {
	offered := headerTokens(r.Header, "Sec-WebSocket-Protocol")
	for _, s := range ours {
		for _, o := range offered {
			if strings.EqualFold(s, o) {
				return o
			}
		}
	}
	return ""
}

func headerTokens(h http.Header, name string) []string {
	var out []string
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, t := range headerTokens(h, name) {
		if strings.EqualFold(t, token) {
			return true
		}
	}
	return false
}
