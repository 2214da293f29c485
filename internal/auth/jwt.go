package auth

import (
	"bytes"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// OAuth 2.0 access tokens (JWT), as RabbitMQ's OAuth 2 backend takes
// them: on every protocol a token given as the password (the user name is
// ignored) logs in as the token's user, with the permissions its scopes
// grant (scopes.go) instead of the user database's; HTTP takes it as a
// bearer token too. A token login carries its expiry: adapters close the
// connection when it passes (AMQP's connection.update-secret renews it).

// JWTConfig enables token authentication. With neither key set, tokens
// are refused and only passwords log in.
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

// Enabled reports whether tokens can be verified at all.
func (c JWTConfig) Enabled() bool {
	return len(c.HS256Secret) > 0 || c.HS256SecretFile != "" || c.RS256PublicKeyFile != ""
}

// Validate loads the key material, so that a caller can refuse to start
// on a bad key file instead of refusing every token.
func (c JWTConfig) Validate() error {
	_, err := NewTokenVerifier(c)
	return err
}

// ErrInvalidToken matches every token refusal (a *TokenError).
var ErrInvalidToken = errors.New("invalid token")

// TokenError is a refused token. Its text is the reason in a few words
// ("token expired", "token audience not accepted"), never the token; it
// matches ErrInvalidToken and ErrInvalidCredentials, so adapters refuse
// it as they refuse a bad password.
type TokenError struct{ Reason string }

func (e *TokenError) Error() string { return e.Reason }

// Is matches ErrInvalidToken and ErrInvalidCredentials.
func (e *TokenError) Is(target error) bool {
	return target == ErrInvalidToken || target == ErrInvalidCredentials
}

// TokenVerifier checks tokens with the configured keys. It is immutable
// and safe for concurrent use.
type TokenVerifier struct {
	cfg    JWTConfig
	rsaKey *rsa.PublicKey
	parser *jwt.Parser
	err    error // a bad key file: every token is refused with this reason
}

// NewTokenVerifier loads cfg's keys. On a bad key file it returns the
// error and a verifier that refuses every token with it.
func NewTokenVerifier(cfg JWTConfig) (*TokenVerifier, error) {
	if cfg.UserClaim == "" {
		cfg.UserClaim = "sub"
	}
	v := &TokenVerifier{cfg: cfg}
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

func (v *TokenVerifier) accepts(alg string) bool {
	return (alg == jwt.SigningMethodHS256.Alg() && len(v.cfg.HS256Secret) > 0) ||
		(alg == jwt.SigningMethodRS256.Alg() && v.rsaKey != nil)
}

func (v *TokenVerifier) key(t *jwt.Token) (any, error) {
	switch t.Method.Alg() {
	case jwt.SigningMethodHS256.Alg():
		return v.cfg.HS256Secret, nil
	case jwt.SigningMethodRS256.Alg():
		return v.rsaKey, nil
	}
	return nil, fmt.Errorf("algorithm %s not accepted", t.Method.Alg())
}

// Verify checks a token and returns the user it logs in as: the token's
// user claim, tags and scopes, and its expiry. The user need not exist in
// the database. Every refusal wraps ErrInvalidToken and says why in a
// few words that never include the token (a *TokenError).
func (v *TokenVerifier) Verify(token string) (*User, error) {
	usr, err := v.verify(token)
	if err != nil {
		return nil, &TokenError{Reason: err.Error()}
	}
	return usr, nil
}

func (v *TokenVerifier) verify(token string) (*User, error) {
	if v.err != nil {
		return nil, v.err
	}
	claims := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(token, claims, v.key); err != nil {
		if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			// The parser reports an algorithm outside WithValidMethods
			// ("none" included) as a bad signature; say which it was.
			if t, _, perr := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{}); perr == nil {
				if alg, _ := t.Header["alg"].(string); alg != "" && !v.accepts(alg) {
					return nil, fmt.Errorf("token algorithm %q not accepted", alg)
				}
			}
		}
		return nil, tokenError(err)
	}
	name, _ := claims[v.cfg.UserClaim].(string)
	if name == "" {
		return nil, fmt.Errorf("token has no string claim %q naming the user", v.cfg.UserClaim)
	}
	scopes, err := scopeList(claims["scope"])
	if err != nil {
		return nil, err
	}
	g, tags, err := parseScopes(scopes)
	if err != nil {
		return nil, err
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return nil, errors.New("token is missing a required claim: exp")
	}
	usr := newUser(name, false, tags)
	usr.token = g
	usr.Expires = exp.Time
	if info, ok := claims["info"]; ok {
		usr.Info, _ = json.Marshal(info)
	}
	return usr, nil
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

// LooksLikeJWT reports whether a password has the shape of a signed JWT
// (three base64url parts, the header a JSON object): such a password is
// verified as a token when tokens are enabled, never as a password.
func LooksLikeJWT(s string) bool {
	return strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2
}

// SetTokenVerifier makes Authenticate accept tokens verified by v as
// passwords (nil: none).
func (u *Users) SetTokenVerifier(v *TokenVerifier) { u.tokens.Store(v) }

// TokenVerifier is the verifier SetTokenVerifier set, or nil.
func (u *Users) TokenVerifier() *TokenVerifier { return u.tokens.Load() }

// VerifyToken checks a token (an HTTP bearer token, a JWT given as a
// password, a new secret of AMQP's connection.update-secret). Without a
// verifier every token is refused.
func (u *Users) VerifyToken(token string) (*User, error) {
	v := u.tokens.Load()
	if v == nil {
		return nil, &TokenError{Reason: "tokens are not enabled on this server"}
	}
	return v.Verify(token)
}

// IsToken reports whether the user logged in with a token.
func (u *User) IsToken() bool { return u != nil && u.token != nil }

// ExpiresIn is how long a token login has left (never below zero); ok is
// false for a password login, which does not expire.
func (u *User) ExpiresIn(now time.Time) (d time.Duration, ok bool) {
	if u == nil || u.Expires.IsZero() {
		return 0, false
	}
	return max(u.Expires.Sub(now), 0), true
}
