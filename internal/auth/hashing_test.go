package auth

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	local  = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	remote = &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 1}
)

func mustLogin(t *testing.T, u *Users, name, password string) {
	t.Helper()
	if _, err := u.Authenticate(name, password, local); err != nil {
		t.Fatalf("%s/%s: %v", name, password, err)
	}
}

func mustRefuse(t *testing.T, u *Users, name, password string) {
	t.Helper()
	if _, err := u.Authenticate(name, password, local); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("%s/%s: got %v, want ErrInvalidCredentials", name, password, err)
	}
}

// TestBcryptLoginAndCache runs at the production cost, 10: the cache is
// what keeps it fast, and that is what it checks.
func TestBcryptLoginAndCache(t *testing.T) {
	u := NewUsers()
	if u.BcryptCost() != DefaultBcryptCost {
		t.Fatalf("default cost %d", u.BcryptCost())
	}
	u.PutUser("app", "s3cret", nil)
	usr, _ := u.User("app")
	if usr.HashingAlgorithm() != HashingBcrypt || !strings.HasPrefix(usr.PasswordHash(), "$2a$10$") {
		t.Fatalf("hash %s %s", usr.HashingAlgorithm(), usr.PasswordHash())
	}
	if strings.Contains(usr.PasswordHash(), "s3cret") {
		t.Fatal("password stored in clear")
	}
	checks := &u.verified.checks

	// Setting the password seeded the cache: the first login is free.
	mustLogin(t, u, "app", "s3cret")
	if n := checks.Load(); n != 0 {
		t.Fatalf("%d bcrypt checks after a seeded login", n)
	}

	// A cold cache (a restart, an imported hash) pays bcrypt once.
	u.verified.clear()
	start := time.Now()
	mustLogin(t, u, "app", "s3cret")
	cold := time.Since(start)
	start = time.Now()
	for range 100 {
		mustLogin(t, u, "app", "s3cret")
	}
	warm := time.Since(start) / 100
	if n := checks.Load(); n != 1 {
		t.Fatalf("%d bcrypt checks, want 1", n)
	}
	t.Logf("login: bcrypt %v, cached %v", cold, warm)
	if warm*20 > cold {
		t.Fatalf("cached login %v is not much faster than bcrypt %v", warm, cold)
	}

	// A wrong password is checked for real every time, even with a good
	// one cached, and does not evict it.
	mustRefuse(t, u, "app", "wrong")
	mustRefuse(t, u, "app", "wrong")
	if n := checks.Load(); n != 3 {
		t.Fatalf("%d bcrypt checks, want 3", n)
	}
	mustLogin(t, u, "app", "s3cret")
	if n := checks.Load(); n != 3 {
		t.Fatalf("good password not cached after wrong ones: %d checks", n)
	}

	// A password change invalidates the entry.
	u.SetBcryptCost(4)
	u.PutUser("app", "n3w", nil)
	mustRefuse(t, u, "app", "s3cret")
	mustLogin(t, u, "app", "n3w")
	// A tags-only change (the management API's PUT without a password)
	// keeps both the password and the cache entry.
	old, _ := u.User("app")
	must(t, u.PutUserHash("app", old.PasswordHash(), "", []string{TagMonitoring}))
	n := checks.Load()
	mustLogin(t, u, "app", "n3w")
	if checks.Load() != n {
		t.Fatal("tags-only change dropped the cache entry")
	}
	// Deleting the user drops it too.
	u.Delete("app")
	mustRefuse(t, u, "app", "n3w")
}

func TestCacheExpires(t *testing.T) {
	u := NewUsers()
	u.SetBcryptCost(4)
	now := time.Unix(1000, 0)
	u.verified.now = func() time.Time { return now }
	u.PutUser("app", "pw", nil)
	mustLogin(t, u, "app", "pw")
	now = now.Add(VerifiedTTL - time.Second)
	mustLogin(t, u, "app", "pw")
	if n := u.verified.checks.Load(); n != 0 {
		t.Fatalf("%d checks before expiry", n)
	}
	now = now.Add(2 * time.Second)
	mustLogin(t, u, "app", "pw")
	if n := u.verified.checks.Load(); n != 1 {
		t.Fatalf("%d checks after expiry, want 1", n)
	}
}

// TestLoginStorm: many connections of one user against a cold cache run
// bcrypt once between them.
func TestLoginStorm(t *testing.T) {
	u := NewUsers()
	u.SetBcryptCost(8)
	u.PutUser("app", "pw", nil)
	u.verified.clear()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			if _, err := u.Authenticate("app", "pw", local); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := u.verified.checks.Load(); n != 1 {
		t.Fatalf("%d bcrypt checks for 50 identical logins, want 1", n)
	}
}

// rabbitTestHash builds RabbitMQ's encoding independently of the code
// under test: base64(salt || H(salt || password)).
func rabbitTestHash(h hash.Hash, salt, password string) string {
	h.Write([]byte(salt + password))
	return base64.StdEncoding.EncodeToString(h.Sum([]byte(salt)))
}

func TestImportedRabbitHashes(t *testing.T) {
	u := NewUsers()
	for _, c := range []struct{ name, algo, hash string }{
		{"s256", HashingSHA256, rabbitTestHash(sha256.New(), "salt", "pw256")},
		{"s512", HashingSHA512, rabbitTestHash(sha512.New(), "SALT", "pw512")},
		{"md5", HashingMD5, rabbitTestHash(md5.New(), "sAlT", "pwmd5")},
		// Made by RabbitMQ (salt 908D C60A, password "test12").
		{"rabbit", HashingSHA256, "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"},
	} {
		must(t, u.PutUserHash(c.name, c.hash, c.algo, nil))
		// "" recognises the scheme by the length.
		must(t, u.PutUserHash(c.name+"-auto", c.hash, "", nil))
		for _, name := range []string{c.name, c.name + "-auto"} {
			usr, _ := u.User(name)
			if usr.HashingAlgorithm() != c.algo || usr.PasswordHash() != c.hash {
				t.Fatalf("%s: %s %s", name, usr.HashingAlgorithm(), usr.PasswordHash())
			}
		}
	}
	for _, name := range []string{"s256", "s512", "md5"} {
		mustLogin(t, u, name, "pw"+strings.TrimPrefix(name, "s"))
		mustLogin(t, u, name+"-auto", "pw"+strings.TrimPrefix(name, "s"))
		mustRefuse(t, u, name, "pw")
	}
	mustLogin(t, u, "rabbit", "test12")
	mustRefuse(t, u, "rabbit", "test13")
	if n := u.verified.checks.Load(); n != 0 {
		t.Fatalf("rabbit hashes went through bcrypt: %d", n)
	}

	// A hash of the wrong size for its algorithm, or an unknown one.
	if err := u.PutUserHash("x", rabbitTestHash(sha256.New(), "salt", "pw"), HashingSHA512, nil); err == nil {
		t.Fatal("SHA-256 hash accepted as SHA-512")
	}
	if err := u.PutUserHash("x", "$2a$10$short", HashingBcrypt, nil); err == nil {
		t.Fatal("truncated bcrypt accepted")
	}
	if err := u.PutUserHash("x", base64.StdEncoding.EncodeToString(make([]byte, 10)), "", nil); err == nil {
		t.Fatal("10-byte hash accepted")
	}
	// No password: nothing logs in, and it exports as "".
	must(t, u.PutUserHash("nopw", "", HashingSHA256, nil))
	mustRefuse(t, u, "nopw", "")
	if usr, _ := u.User("nopw"); usr.PasswordHash() != "" {
		t.Fatalf("no-password hash %q", usr.PasswordHash())
	}
}

func TestBcryptExportImport(t *testing.T) {
	u := NewDefaultUsers()
	u.SetBcryptCost(4)
	u.PutUser("app", "s3cret", []string{TagManagement})
	must(t, u.PutUserHash("old", rabbitTestHash(sha512.New(), "salt", "oldpw"), HashingSHA512, nil))
	data, err := json.Marshal(u.ExportDefinitions())
	must(t, err)
	var d Definitions
	must(t, json.Unmarshal(data, &d))
	algos := map[string]string{}
	for _, ud := range d.Users {
		algos[ud.Name] = ud.HashingAlgorithm
		if ud.HashingAlgorithm == HashingBcrypt && !strings.HasPrefix(ud.PasswordHash, "$2a$") {
			t.Fatalf("bcrypt export %q", ud.PasswordHash)
		}
	}
	if algos["app"] != HashingBcrypt || algos["guest"] != HashingBcrypt || algos["old"] != HashingSHA512 {
		t.Fatalf("exported algorithms %v", algos)
	}

	v := NewUsers()
	must(t, v.ImportDefinitions(d, true))
	mustLogin(t, v, "app", "s3cret")
	mustLogin(t, v, "guest", "guest")
	mustLogin(t, v, "old", "oldpw")
	mustRefuse(t, v, "app", "guest")
	// app twice (login, refusal); guest's built-in hash needs no bcrypt
	// (TestGuestHashNeedsNoBcrypt).
	if v.verified.checks.Load() != 2 {
		t.Fatalf("imported bcrypt hashes: %d checks, want 2", v.verified.checks.Load())
	}
	if again := v.ExportDefinitions(); !jsonEqual(t, again, d) {
		t.Fatal("export of the import differs")
	}

	// The bcrypt string base64-encoded (RabbitMQ's field style) is read too.
	usr, _ := u.User("app")
	w := NewUsers()
	must(t, w.PutUserHash("app", base64.StdEncoding.EncodeToString([]byte(usr.PasswordHash())), HashingBcrypt, nil))
	mustLogin(t, w, "app", "s3cret")
}

// TestGuestHashNeedsNoBcrypt: the default user's built-in hash, read back
// from a definitions file with a cold cache (a restart), is checked
// without bcrypt, whose cost under the race detector on a busy machine
// (seconds) made the first MQTT CONNECT after a restart time out.
func TestGuestHashNeedsNoBcrypt(t *testing.T) {
	d := NewDefaultUsers().ExportDefinitions()
	u := NewUsers()
	must(t, u.ImportDefinitions(d, true))
	mustLogin(t, u, "guest", "guest")
	mustRefuse(t, u, "guest", "Guest")
	mustRefuse(t, u, "guest", "")
	mustRefuse(t, u, "guest", "guest\x00guest") // bcrypt's key cycling would take it
	if n := u.verified.checks.Load(); n != 0 {
		t.Fatalf("%d bcrypt checks for the built-in guest hash, want 0", n)
	}
	// A guest whose password was changed has a hash of its own: bcrypt.
	u.SetBcryptCost(4)
	u.PutDefaultUser("guest", "other")
	u.verified.clear()
	mustRefuse(t, u, "guest", "guest")
	mustLogin(t, u, "guest", "other")
	if n := u.verified.checks.Load(); n != 2 {
		t.Fatalf("%d bcrypt checks for a changed guest password, want 2", n)
	}
}

func jsonEqual(t *testing.T, a, b any) bool {
	t.Helper()
	x, err := json.Marshal(a)
	must(t, err)
	y, err := json.Marshal(b)
	must(t, err)
	return string(x) == string(y)
}

// TestLongPassword: bcrypt reads 72 bytes; longer passwords count in full.
func TestLongPassword(t *testing.T) {
	u := NewUsers()
	u.SetBcryptCost(4)
	long := strings.Repeat("p", 72) + "-tail"
	u.PutUser("app", long, nil)
	u.verified.clear()
	mustLogin(t, u, "app", long)
	mustRefuse(t, u, "app", strings.Repeat("p", 72))
	mustRefuse(t, u, "app", strings.Repeat("p", 72)+"-tale")
}

func TestLoopbackUsersAndDefaultUser(t *testing.T) {
	u := NewDefaultUsers()
	if _, err := u.Authenticate("guest", "guest", remote); !errors.Is(err, ErrLoopbackOnly) {
		t.Fatalf("guest from remote: %v", err)
	}
	// loopback_users.guest = false.
	u.SetLoopbackUsers([]string{"none"})
	if _, err := u.Authenticate("guest", "guest", remote); err != nil {
		t.Fatalf("guest from remote with no loopback users: %v", err)
	}
	u.SetBcryptCost(4)
	u.PutUser("ops", "pw", nil)
	u.SetLoopbackUsers([]string{"ops", " guest"})
	if got := u.LoopbackUsers(); strings.Join(got, ",") != "guest,ops" {
		t.Fatalf("loopback users %v", got)
	}
	for _, name := range []string{"guest", "ops"} {
		pw := map[string]string{"guest": "guest", "ops": "pw"}[name]
		if _, err := u.Authenticate(name, pw, remote); !errors.Is(err, ErrLoopbackOnly) {
			t.Fatalf("%s from remote: %v", name, err)
		}
		if _, err := u.Authenticate(name, pw, local); err != nil {
			t.Fatal(err)
		}
	}

	// default_user / default_pass: administrator with all of "/".
	v := NewUsers()
	v.SetBcryptCost(4)
	v.SetLoopbackUsers(nil)
	v.PutDefaultUser("admin", "adminpw")
	if _, ok := v.User("guest"); ok {
		t.Fatal("guest created besides the default user")
	}
	usr, err := v.Authenticate("admin", "adminpw", remote)
	if err != nil || !usr.HasTag(TagAdministrator) {
		t.Fatalf("default user: %v %v", usr, err)
	}
	if p, _ := v.Permissions("admin", "/"); p != AllPermissions {
		t.Fatalf("default user permissions %v", p)
	}
	// The precomputed guest hash really is bcrypt("guest").
	w := NewDefaultUsers()
	w.verified.clear()
	mustLogin(t, w, "guest", "guest")
	mustRefuse(t, w, "guest", "Guest")
}
