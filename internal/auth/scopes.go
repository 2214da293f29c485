package auth

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Checker is what adapters check a connection's operations against: the
// user database for a password login, the token's scopes for a token
// login (Users.CheckerFor picks). The texts of the refusals are the same.
type Checker interface {
	CheckVHost(user, vhost string) error
	Check(user, vhost string, kind Kind, res Resource, name string) error
	CheckTopic(user, vhost string, kind Kind, exchange, key string, vars TopicVars) error
}

// CheckerFor returns the permissions usr (as Authenticate or VerifyToken
// returned it) is checked against.
func (u *Users) CheckerFor(usr *User) Checker {
	if usr.IsToken() {
		return tokenChecker{g: usr.token, users: u}
	}
	return u
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

// ScopePrefix marks the scopes Herald reads (RabbitMQ's resource server
// id, "rabbitmq." there); others (openid, profile, other services'
// scopes) are ignored, as RabbitMQ ignores them.
const ScopePrefix = "herald."

// anyVHost in a scope's vhost position grants in every vhost.
const anyVHost = "*"

// tokenGrant is a token's permissions: per vhost (or anyVHost) and kind,
// the regexps of its scopes (any one matching allows).
type tokenGrant struct {
	perms map[string]*[3][]*regexp.Regexp
}

// ParseScopes reads herald.configure|write|read:<vhost>/<regex> and
// herald.tag:<tag>, and returns the tags. It is exported for the fuzz
// target and for tools that check a token's scopes.
func ParseScopes(scopes []string) (tags []string, err error) {
	_, tags, err = parseScopes(scopes)
	return tags, err
}

// parseScopes reads herald.configure|write|read:<vhost>/<regex> and
// herald.tag:<tag>. The vhost is URL-encoded ("%2F" is "/"); the regexp
// is unanchored, as RabbitMQ's permissions, and may itself contain '/'.
// An empty regexp matches nothing, as RabbitMQ's "". A pattern that is
// not a regexp but holds '*' is RabbitMQ's wildcard syntax (wildcardPattern).
func parseScopes(scopes []string) (*tokenGrant, []string, error) {
	g := &tokenGrant{perms: map[string]*[3][]*regexp.Regexp{}}
	var tags []string
	for _, sc := range scopes {
		rest, ok := strings.CutPrefix(sc, ScopePrefix)
		if !ok {
			continue
		}
		what, arg, ok := strings.Cut(rest, ":")
		if !ok {
			return nil, nil, fmt.Errorf("scope %q: want %s<permission>:<vhost>/<pattern> or %stag:<tag>", sc, ScopePrefix, ScopePrefix)
		}
		var kind Kind
		switch what {
		case "tag":
			if arg != "" {
				tags = append(tags, arg)
			}
			continue
		case "configure":
			kind = Configure
		case "write":
			kind = Write
		case "read":
			kind = Read
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
		if err != nil && strings.Contains(pattern, "*") {
			// Not a regexp but RabbitMQ's default scope syntax, where
			// '*' is the only wildcard ("*", "*.log", "amq.*x"): read
			// it as that, so tokens minted for RabbitMQ keep working.
			re, err = wildcardPattern(pattern)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("scope %q: bad pattern: %v", sc, err)
		}
		p[kind] = append(p[kind], re)
	}
	return g, tags, nil
}

// wildcardPattern compiles RabbitMQ's wildcard scope syntax: the whole
// name must match, '*' matches any run of characters, the rest is
// literal (URL-decoded, as RabbitMQ decodes it).
func wildcardPattern(p string) (*regexp.Regexp, error) {
	parts := strings.Split(p, "*")
	for i, part := range parts {
		lit, err := url.PathUnescape(part)
		if err != nil {
			return nil, fmt.Errorf("wildcard pattern %q: %v", p, err)
		}
		parts[i] = regexp.QuoteMeta(lit)
	}
	return regexp.Compile("^" + strings.Join(parts, ".*") + "$")
}

// CheckVHost allows a vhost named by any permission scope (or "*").
func (g *tokenGrant) CheckVHost(user, vhost string) error {
	if g.perms[vhost] != nil || g.perms[anyVHost] != nil {
		return nil
	}
	return &AccessError{Text: fmt.Sprintf("access to vhost '%s' refused for user '%s'", vhost, user)}
}

// Check allows when a scope of kind for the vhost or "*" matches name;
// the text is the user database's, so clients see the same refusal.
func (g *tokenGrant) Check(user, vhost string, kind Kind, res Resource, name string) error {
	for _, vh := range [2]string{vhost, anyVHost} {
		if p := g.perms[vh]; p != nil {
			for _, re := range p[kind] {
				if re.MatchString(name) {
					return nil
				}
			}
		}
	}
	return &AccessError{Text: fmt.Sprintf("%s access to %s '%s' in vhost '%s' refused for user '%s'", kind, res, name, vhost, user)}
}

// tokenChecker checks a token login: resources by its scopes, topics by
// the topic permissions stored for its user name (an administrator can
// restrict a token user's routing keys as any other user's).
type tokenChecker struct {
	g     *tokenGrant
	users *Users
}

func (t tokenChecker) CheckVHost(user, vhost string) error { return t.g.CheckVHost(user, vhost) }

func (t tokenChecker) Check(user, vhost string, kind Kind, res Resource, name string) error {
	return t.g.Check(user, vhost, kind, res, name)
}

func (t tokenChecker) CheckTopic(user, vhost string, kind Kind, exchange, key string, vars TopicVars) error {
	return t.users.CheckTopic(user, vhost, kind, exchange, key, vars)
}
