package web

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldmq/herald/internal/auth"
)

// JWTConfig enables bearer-token (JWT) authentication. With neither key
// set, bearer tokens are refused and only basic credentials log in.
type JWTConfig struct {
	// HS256Secret verifies HS256 tokens (shared secret).
	HS256Secret []byte
	// HS256SecretFile, when HS256Secret is empty, holds the secret (one
	// trailing newline is dropped, as editors add one).
	HS256SecretFile string
	// RS256PublicKeyFile is a PEM file ("PUBLIC KEY", "RSA PUBLIC KEY" or a
	// certificate) verifying RS256 tokens.
	RS256PublicKeyFile string
	// Audience and Issuer, when set, must match the token's aud (one of
	// them) and iss.
	Audience string
	Issuer   string
	// UserClaim names the claim holding the user name; default "sub".
	UserClaim string
}

// Enabled reports whether bearer tokens can be verified at all.
func (c JWTConfig) Enabled() bool {
	return len(c.HS256Secret) > 0 || c.HS256SecretFile != "" || c.RS256PublicKeyFile != ""
}

// Validate loads the key material, so that a caller can refuse to start
// on a bad key file instead of answering every token with 401.
func (c JWTConfig) Validate() error {
	_, err := newJWTVerifier(c)
	return err
}

// Checker is what the permission checks of access.go go through: the user
// database (*auth.Users) for basic logins, a token's scopes for bearer
// logins.
// Checker answers whether a user may use a vhost and a resource in it.
type Checker interface {
	CheckVHost(user, vhost string) error
	Check(user, vhost string, kind auth.Kind, res auth.Resource, name string) error
}

// jwtVerifier holds the parsed keys and the permissions of the token
// requests in flight.
type jwtVerifier struct {
	cfg    JWTConfig
	rsaKey *rsa.PublicKey
	parser *jwt.Parser
	err    error // a bad key file: every token gets 401 with this reason

	// grants maps the per-request *auth.User of a token login to its
	// scopes for the life of the handler (WebSocket and SSE included).
	// The checks receive only the *auth.User (handlers keep it, ws.go
	// across goroutines), so keying on that pointer lets them find the
	// token's permissions without changing every call site.
	grants sync.Map // *auth.User -> *tokenGrant
}

func newJWTVerifier(cfg JWTConfig) (*jwtVerifier, error) {
	if cfg.UserClaim == "" {
		cfg.UserClaim = "sub"
	}
	v := &jwtVerifier{cfg: cfg}
	if len(cfg.HS256Secret) == 0 && cfg.HS256SecretFile != "" {
		b, err := os.ReadFile(cfg.HS256SecretFile)
		if err == nil && len(b) == 0 {
			err = errors.New("empty")
		}
		if err != nil {
			v.err = fmt.Errorf("jwt: HS256 secret file %s: %w", cfg.HS256SecretFile, err)
			return v, v.err
		}
		b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
		v.cfg.HS256Secret = b
	}
	var methods []string
	if len(v.cfg.HS256Secret) > 0 {
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	if cfg.RS256PublicKeyFile != "" {
		pem, err := os.ReadFile(cfg.RS256PublicKeyFile)
		if err == nil {
			v.rsaKey, err = jwt.ParseRSAPublicKeyFromPEM(pem)
		}
		if err != nil {
			v.err = fmt.Errorf("jwt: RS256 public key %s: %w", cfg.RS256PublicKeyFile, err)
			return v, v.err
		}
		methods = append(methods, jwt.SigningMethodRS256.Alg())
	}
	// WithValidMethods is what refuses "none" and algorithm confusion
	// (an HS256 token signed with the RSA public key as secret).
	opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithExpirationRequired(), jwt.WithIssuedAt()}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

func (v *jwtVerifier) accepts(alg string) bool {
	return (alg == jwt.SigningMethodHS256.Alg() && len(v.cfg.HS256Secret) > 0) ||
		(alg == jwt.SigningMethodRS256.Alg() && v.rsaKey != nil)
}

func (v *jwtVerifier) key(t *jwt.Token) (any, error) {
	switch t.Method.Alg() {
	case jwt.SigningMethodHS256.Alg():
		return v.cfg.HS256Secret, nil
	case jwt.SigningMethodRS256.Alg():
		return v.rsaKey, nil
	}
	return nil, fmt.Errorf("algorithm %s not accepted", t.Method.Alg())
}

// verify checks a token and returns the user it logs in as, with the
// token's tags, and the token's permissions.
func (v *jwtVerifier) verify(token string) (*auth.User, *tokenGrant, error) {
	if v.err != nil {
		return nil, nil, v.err
	}
	claims := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(token, claims, v.key); err != nil {
		if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			// The parser reports an algorithm outside WithValidMethods
			// ("none" included) as a bad signature; say which it was.
			if t, _, perr := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{}); perr == nil {
				if alg, _ := t.Header["alg"].(string); alg != "" && !v.accepts(alg) {
					return nil, nil, fmt.Errorf("token algorithm %q not accepted", alg)
				}
			}
		}
		return nil, nil, tokenError(err)
	}
	name, _ := claims[v.cfg.UserClaim].(string)
	if name == "" {
		return nil, nil, fmt.Errorf("token has no string claim %q naming the user", v.cfg.UserClaim)
	}
	scopes, err := scopeList(claims["scope"])
	if err != nil {
		return nil, nil, err
	}
	g, tags, err := parseScopes(scopes)
	if err != nil {
		return nil, nil, err
	}
	return &auth.User{Name: name, Tags: tags}, g, nil
}

// tokenError turns the library's joined errors into a short reason.
func tokenError(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return errors.New("token expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return errors.New("token not valid yet")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return errors.New("token signature invalid")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return errors.New("token algorithm not accepted")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return errors.New("token audience not accepted")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return errors.New("token issuer not accepted")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// The library's text ends with which: "exp claim is required".
		msg := err.Error()
		return errors.New("token is missing a required claim: " + msg[strings.LastIndex(msg, ": ")+2:])
	case errors.Is(err, jwt.ErrTokenMalformed):
		return errors.New("token malformed")
	}
	return fmt.Errorf("token invalid: %w", err)
}

// scopeList accepts the scope claim as a space-separated string (RFC 8693)
// or an array of strings (as some identity providers send it).
func scopeList(c any) ([]string, error) {
	switch s := c.(type) {
	case nil:
		return nil, nil
	case string:
		return strings.Fields(s), nil
	case []any:
		out := make([]string, 0, len(s))
		for _, e := range s {
			str, ok := e.(string)
			if !ok {
				return nil, errors.New("token scope array holds a non-string")
			}
			out = append(out, strings.Fields(str)...)
		}
		return out, nil
	}
	return nil, errors.New("token scope is neither a string nor an array")
}

// scopePrefix marks the scopes Herald reads; others (openid, profile, other
// services' scopes) are ignored, as RabbitMQ ignores scopes without its
// resource server id.
const scopePrefix = "herald."

// anyVHost in a scope's vhost position grants in every vhost.
const anyVHost = "*"

// tokenGrant is a token's permissions: per vhost (or anyVHost) and kind,
// the regexps of its scopes (any one matching allows).
type tokenGrant struct {
	perms map[string]*[3][]*regexp.Regexp
}

// parseScopes reads herald.configure|write|read:<vhost>/<regex> and
// herald.tag:<tag>. The vhost is URL-encoded ("%2F" is "/"); the regexp
// is unanchored, as RabbitMQ's permissions, and may itself contain '/'.
// An empty regexp matches nothing, as RabbitMQ's "".
func parseScopes(scopes []string) (*tokenGrant, []string, error) {
	g := &tokenGrant{perms: map[string]*[3][]*regexp.Regexp{}}
	var tags []string
	for _, sc := range scopes {
		rest, ok := strings.CutPrefix(sc, scopePrefix)
		if !ok {
			continue
		}
		what, arg, ok := strings.Cut(rest, ":")
		if !ok {
			return nil, nil, fmt.Errorf("scope %q: want %s<permission>:<vhost>/<pattern> or %stag:<tag>", sc, scopePrefix, scopePrefix)
		}
		var kind auth.Kind
		switch what {
		case "tag":
			if arg != "" {
				tags = append(tags, arg)
			}
			continue
		case "configure":
			kind = auth.Configure
		case "write":
			kind = auth.Write
		case "read":
			kind = auth.Read
		default:
			return nil, nil, fmt.Errorf("scope %q: unknown permission %q", sc, what)
		}
		vh, pattern, ok := strings.Cut(arg, "/")
		if !ok {
			return nil, nil, fmt.Errorf("scope %q: want <vhost>/<pattern>", sc)
		}
		vhost, err := url.PathUnescape(vh)
		if err != nil || vhost == "" {
			return nil, nil, fmt.Errorf("scope %q: bad vhost %q", sc, vh)
		}
		p := g.perms[vhost]
		if p == nil {
			p = new([3][]*regexp.Regexp)
			g.perms[vhost] = p
		}
		if pattern == "" || pattern == "^$" {
			continue // grants the vhost, matches no resource
		}
		re, err := regexp.Compile(pattern)
		if err != nil {
			return nil, nil, fmt.Errorf("scope %q: bad pattern: %v", sc, err)
		}
		p[kind] = append(p[kind], re)
	}
	return g, tags, nil
}

// CheckVHost allows a vhost named by any permission scope (or "*").
func (g *tokenGrant) CheckVHost(user, vhost string) error {
	if g.perms[vhost] != nil || g.perms[anyVHost] != nil {
		return nil
	}
	return &auth.AccessError{Text: fmt.Sprintf("access to vhost '%s' refused for user '%s'", vhost, user)}
}

// Check allows when a scope of kind for the vhost or "*" matches name;
// the text is the user database's, so clients see the same refusal.
func (g *tokenGrant) Check(user, vhost string, kind auth.Kind, res auth.Resource, name string) error {
	for _, vh := range [2]string{vhost, anyVHost} {
		if p := g.perms[vh]; p != nil {
			for _, re := range p[kind] {
				if re.MatchString(name) {
					return nil
				}
			}
		}
	}
	return &auth.AccessError{Text: fmt.Sprintf("%s access to %s '%s' in vhost '%s' refused for user '%s'", kind, res, name, vhost, user)}
}

// CheckerFor returns the permissions u is checked against: its token's
// for a bearer login, else the user database.
func (s *Server) CheckerFor(u *auth.User) Checker {
	if s.jwt != nil {
		if g, ok := s.jwt.grants.Load(u); ok {
			return g.(*tokenGrant)
		}
	}
	return s.users
}

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
		bearerUnauthorized(w, "bearer tokens are not enabled on this server")
		return
	}
	u, g, err := s.jwt.verify(token)
	if err != nil {
		s.log.Info("http token refused", "remote", r.RemoteAddr, "err", err)
		bearerUnauthorized(w, err.Error())
		return
	}
	s.jwt.grants.Store(u, g)
	defer s.jwt.grants.Delete(u)
	h(w, withUser(r, u))
}

func withUser(r *http.Request, u *auth.User) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), userKey{}, u))
}

func bearerUnauthorized(w http.ResponseWriter, reason string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="Herald", error="invalid_token"`)
	WriteError(w, http.StatusUnauthorized, "not_authorized", reason)
}
