package web

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/heraldmq/herald/internal/auth"
)

// Bearer tokens (JWT): the verification, the scopes and the expiry live in
// internal/auth (jwt.go, scopes.go), shared with every protocol, where a
// token is given as the password. This file only finds the token in a
// request and answers a refusal.

// JWTConfig enables bearer-token (JWT) authentication; see auth.JWTConfig.
type JWTConfig = auth.JWTConfig

// jwtVerifier is the token verifier the server uses: the user database's
// (so HTTP and the other protocols check tokens with the same keys), or
// one built from Config.JWT.
type jwtVerifier = auth.TokenVerifier

func newJWTVerifier(cfg JWTConfig) (*jwtVerifier, error) { return auth.NewTokenVerifier(cfg) }

// Checker is what the permission checks of access.go go through: the user
// database for basic logins, a token's scopes for bearer logins.
type Checker = auth.Checker

// CheckerFor returns the permissions u is checked against.
func (s *Server) CheckerFor(u *auth.User) Checker { return s.users.CheckerFor(u) }

// bearerToken finds a request's token: the Authorization header, or, on
// the endpoints browsers open without custom headers (WebSocket,
// EventSource, fetch), the access_token query parameter. The parameter is
// removed from the URL so that it reaches no log.
func bearerToken(r *http.Request) (token string, ok bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok), true
		}
		return "", false
	}
	if !r.URL.Query().Has("access_token") || !queryTokenPath(r.URL.Path) {
		return "", false
	}
	q := r.URL.Query()
	token = q.Get("access_token")
	q.Del("access_token")
	r.URL.RawQuery = q.Encode()
	return token, true
}

func queryTokenPath(p string) bool {
	return p == "/ws" || p == "/sse" || strings.HasPrefix(p, "/v1/fetch/")
}

// bearerLogin authenticates r by its token and runs h with the token's
// user and permissions, or answers 401 with the reason.
func (s *Server) bearerLogin(w http.ResponseWriter, r *http.Request, token string, h http.HandlerFunc) {
	if s.jwt == nil {
		s.loginFailed(r)
		bearerUnauthorized(w, "bearer tokens are not enabled on this server")
		return
	}
	u, err := s.jwt.Verify(token)
	if err != nil {
		s.loginFailed(r)
		s.log.Info("http token refused", "remote", r.RemoteAddr, "err", err)
		bearerUnauthorized(w, err.Error())
		return
	}
	h(w, withUser(r, u))
}

func withUser(r *http.Request, u *auth.User) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), userKey{}, u))
}

func bearerUnauthorized(w http.ResponseWriter, reason string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="Herald", error="invalid_token"`)
	WriteError(w, http.StatusUnauthorized, "not_authorized", reason)
}

// TokenExpiry fires when u's token expires (a /ws socket is then closed
// with 1008 "token expired"); for a password login it never fires. stop
// releases the timer.
func TokenExpiry(u *auth.User) (expired <-chan time.Time, stop func() bool) {
	d, ok := u.ExpiresIn(time.Now())
	if !ok {
		return nil, func() bool { return false }
	}
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// AuthenticatedInBand registers h as Authenticated does, except that,
// when tokens are enabled, a request that carries no credentials at all
// goes to inBand, which logs in over the connection itself: a page that
// cannot put a token on a WebSocket upgrade (browsers set no headers
// there, and a token in the URL ends up in proxies' logs) sends it in its
// first frame (/ws's connect op). Without tokens such a request is
// refused with 401 as by Authenticated.
func (s *Server) AuthenticatedInBand(pattern string, h, inBand http.HandlerFunc) {
	authed := s.authenticated(h)
	s.mux.handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.jwt == nil || hasCredentials(r) {
			authed.ServeHTTP(w, r)
			return
		}
		inBand(w, r)
	}))
}

// hasCredentials reports whether a request carries any login.
func hasCredentials(r *http.Request) bool {
	return r.Header.Get("Authorization") != "" || r.URL.Query().Has("access_token")
}

// TokensEnabled reports whether bearer tokens are accepted.
func (s *Server) TokensEnabled() bool { return s.jwt != nil }

// VerifyToken checks a token with the keys bearer logins are checked
// with (the in-band login and the token refresh of /ws).
func (s *Server) VerifyToken(token string) (*auth.User, error) {
	if s.jwt == nil {
		return nil, &auth.TokenError{Reason: "bearer tokens are not enabled on this server"}
	}
	return s.jwt.Verify(token)
}
