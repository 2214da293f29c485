package auth

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

const fullScope = "herald.configure:%2F/.* herald.write:%2F/.* herald.read:%2F/.*"

func testClaims(user string, scope any) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"sub": user, "scope": scope, "aud": []string{"herald", "other"},
		"iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

func signHS(t testing.TB, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseScopes(t *testing.T) {
	list, err := scopeList([]any{"herald.read:*/^a\\. herald.tag:monitoring", "herald.write:%2F/x/y"})
	if err != nil || len(list) != 3 {
		t.Fatalf("scopeList: %v %v", list, err)
	}
	g, tags, err := parseScopes(append(list, "openid", "herald.configure:v1/", "herald.read:v1/^q$", "herald.read:v1/^r$", "herald.tag:administrator"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tags, []string{"monitoring", "administrator"}) {
		t.Fatalf("tags %v", tags)
	}
	allow := []struct {
		vhost string
		kind  Kind
		name  string
		ok    bool
	}{
		{"/", Read, "a.b", true},     // from "*"
		{"v9", Read, "a.b", true},    // "*" is any vhost
		{"/", Read, "b.a", false},    // anchored at ^
		{"/", Write, "x/y", true},    // pattern keeps its '/'
		{"/", Write, "zx/yz", true},  // unanchored, as RabbitMQ
		{"v1", Write, "x/y", false},  // write only in "/"
		{"v1", Read, "q", true},      // several patterns: any matches
		{"v1", Read, "r", true},      //
		{"v1", Configure, "", false}, // empty pattern matches nothing
	}
	for _, a := range allow {
		if err := g.Check("u", a.vhost, a.kind, Queue, a.name); (err == nil) != a.ok {
			t.Errorf("Check(%s, %s, %q) = %v, want ok=%v", a.vhost, a.kind, a.name, err, a.ok)
		}
	}
	for vh, ok := range map[string]bool{"/": true, "v1": true, "anything": true} {
		if err := g.CheckVHost("u", vh); (err == nil) != ok {
			t.Errorf("CheckVHost(%s) = %v", vh, err)
		}
	}
	// RabbitMQ's wildcard syntax where the pattern is no regexp.
	gw, _, err := parseScopes([]string{"herald.read:*/*", "herald.write:*/*.log", "herald.configure:%2F/*%2Fapp"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		kind Kind
		name string
		ok   bool
	}{{Read, "anything", true}, {Write, "x.log", true}, {Write, "x.logs", false}, {Configure, "q/app", true}, {Configure, "q/app/x", false}} {
		if err := gw.Check("u", "/", c.kind, Queue, c.name); (err == nil) != c.ok {
			t.Errorf("wildcard %s %q: %v", c.kind, c.name, err)
		}
	}
	g2, _, _ := parseScopes([]string{"herald.read:v1/.*"})
	if g2.CheckVHost("u", "/") == nil || g2.CheckVHost("u", "v1") != nil {
		t.Error("vhost access must follow the scopes' vhosts")
	}
	for _, bad := range []string{"herald.read", "herald.read:novhost", "herald.delete:%2F/.*", "herald.read:/.*", "herald.read:%zz/.*", "herald.read:%2F/[a"} {
		if _, _, err := parseScopes([]string{bad}); err == nil {
			t.Errorf("parseScopes(%q) accepted", bad)
		}
	}
}

func FuzzJWTScopes(f *testing.F) {
	f.Add(fullScope + " herald.tag:administrator openid")
	f.Add("herald.read:*/^a\\.(b|c)$ herald.write:v%2Fx/x/y herald.configure:%2F/")
	f.Add("herald.read:%2F/[ herald.bogus:x herald.tag:")
	f.Fuzz(func(t *testing.T, s string) {
		g, _, err := parseScopes(strings.Fields(s))
		if err != nil {
			return
		}
		_, _ = ParseScopes(strings.Fields(s))
		_ = g.CheckVHost("u", "/")
		_ = g.Check("u", "/", Read, Queue, s)
	})
}

func FuzzJWTVerify(f *testing.F) {
	v, err := NewTokenVerifier(JWTConfig{HS256Secret: testSecret, Audience: "herald"})
	if err != nil {
		f.Fatal(err)
	}
	c := testClaims("bob", fullScope)
	good, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testSecret)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	f.Add(good)
	f.Add(none)
	f.Add("eyJhbGciOiJIUzI1NiJ9.e30.")
	f.Fuzz(func(t *testing.T, tok string) {
		u, err := v.Verify(tok)
		if err == nil && (u == nil || u.token == nil || u.Name == "" || u.Expires.IsZero()) {
			t.Fatalf("accepted %q without a user", tok)
		}
	})
}

// A JWT given as the password logs in as the token's user, whatever the
// name; its scopes, not the database, decide; a bad token is a bad
// password.
func TestAuthenticateToken(t *testing.T) {
	u := NewDefaultUsers()
	tok := signHS(t, testClaims("bob", "herald.write:%2F/^x$ herald.tag:monitoring"))
	if _, err := u.Authenticate("anyone", tok, nil); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("token without a verifier: %v", err)
	}
	v, err := NewTokenVerifier(JWTConfig{HS256Secret: testSecret, Audience: "herald"})
	if err != nil {
		t.Fatal(err)
	}
	u.SetTokenVerifier(v)
	usr, err := u.Authenticate("ignored", tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	if usr.Name != "bob" || !usr.IsToken() || !usr.HasTag(TagMonitoring) {
		t.Fatalf("token user %+v", usr)
	}
	if d, ok := usr.ExpiresIn(time.Now()); !ok || d <= 50*time.Minute || d > time.Hour {
		t.Fatalf("expires in %v %v", d, ok)
	}
	c := u.CheckerFor(usr)
	if c.Check("bob", "/", Write, Exchange, "x") != nil || c.Check("bob", "/", Write, Exchange, "y") == nil {
		t.Fatal("scopes not applied")
	}
	if c.CheckVHost("bob", "/") != nil || c.CheckVHost("bob", "v") == nil {
		t.Fatal("vhost from scopes")
	}
	// Passwords still work; guest's checker is the database.
	g, err := u.Authenticate("guest", "guest", &net.TCPAddr{IP: net.IPv6loopback})
	if err != nil || g.IsToken() {
		t.Fatalf("password login: %v", err)
	}
	if _, ok := g.ExpiresIn(time.Now()); ok {
		t.Fatal("a password login expires")
	}
	if u.CheckerFor(g).Check("guest", "/", Write, Exchange, "y") != nil {
		t.Fatal("guest checked against the token")
	}
	// Another audience, an expired token, garbage: refused as credentials.
	other := testClaims("bob", fullScope)
	other["aud"] = "someone-else"
	expired := testClaims("bob", fullScope)
	expired["exp"] = time.Now().Add(-time.Minute).Unix()
	for want, tk := range map[string]string{"token audience not accepted": signHS(t, other), "token expired": signHS(t, expired), "token malformed": "eyJhbGciOi.x.y"} {
		_, err := u.Authenticate("bob", tk, nil)
		var te *TokenError
		if !errors.Is(err, ErrInvalidCredentials) || !errors.As(err, &te) || te.Reason != want {
			t.Errorf("want %q, got %v", want, err)
		}
		if strings.Contains(err.Error(), tk) {
			t.Error("the error repeats the token")
		}
	}
}
