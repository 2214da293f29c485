package web

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/heraldmq/herald/internal/auth"
)

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
		kind  auth.Kind
		name  string
		ok    bool
	}{
		{"/", auth.Read, "a.b", true},     // from "*"
		{"v9", auth.Read, "a.b", true},    // "*" is any vhost
		{"/", auth.Read, "b.a", false},    // anchored at ^
		{"/", auth.Write, "x/y", true},    // pattern keeps its '/'
		{"/", auth.Write, "zx/yz", true},  // unanchored, as RabbitMQ
		{"v1", auth.Write, "x/y", false},  // write only in "/"
		{"v1", auth.Read, "q", true},      // several patterns: any matches
		{"v1", auth.Read, "r", true},      //
		{"v1", auth.Configure, "", false}, // empty pattern matches nothing
	}
	for _, a := range allow {
		if err := g.Check("u", a.vhost, a.kind, auth.Queue, a.name); (err == nil) != a.ok {
			t.Errorf("Check(%s, %s, %q) = %v, want ok=%v", a.vhost, a.kind, a.name, err, a.ok)
		}
	}
	for vh, ok := range map[string]bool{"/": true, "v1": true, "anything": true} {
		if err := g.CheckVHost("u", vh); (err == nil) != ok {
			t.Errorf("CheckVHost(%s) = %v", vh, err)
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
	f.Add("herald.configure:%2F/.* herald.write:%2F/.* herald.read:%2F/.* herald.tag:administrator openid")
	f.Add("herald.read:*/^a\\.(b|c)$ herald.write:v%2Fx/x/y herald.configure:%2F/")
	f.Add("herald.read:%2F/[ herald.bogus:x herald.tag:")
	f.Fuzz(func(t *testing.T, s string) {
		g, _, err := parseScopes(strings.Fields(s))
		if err != nil {
			return
		}
		_ = g.CheckVHost("u", "/")
		_ = g.Check("u", "/", auth.Read, auth.Queue, s)
	})
}

func FuzzJWTVerify(f *testing.F) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	v, err := newJWTVerifier(JWTConfig{HS256Secret: secret, Audience: "herald"})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	c := jwt.MapClaims{"sub": "bob", "scope": "herald.read:%2F/.*", "aud": "herald", "exp": now.Add(time.Hour).Unix()}
	good, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	f.Add(good)
	f.Add(none)
	f.Add("eyJhbGciOiJIUzI1NiJ9.e30.")
	f.Fuzz(func(t *testing.T, tok string) {
		u, g, err := v.verify(tok)
		if err == nil && (u == nil || g == nil || u.Name == "") {
			t.Fatalf("accepted %q without a user", tok)
		}
	})
}
