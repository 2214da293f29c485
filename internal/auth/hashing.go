package auth

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"hash"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Password hashing schemes, by their definitions-file names.
//
// New passwords are hashed with bcrypt. Its password_hash is the bcrypt
// string itself ("$2a$10$..."), not base64 of it: the string is already
// ASCII in bcrypt's own alphabet, shows its cost at a glance and is what
// every other bcrypt tool reads; the import also accepts it base64-encoded.
//
// The rabbit_* schemes are RabbitMQ's, kept so that users imported from a
// RabbitMQ definitions export still log in: base64(salt(4) || H(salt ||
// password)) with H = SHA-256, SHA-512 or MD5. Herald never creates them.
const (
	HashingBcrypt = "herald_password_hashing_bcrypt"
	HashingSHA256 = "rabbit_password_hashing_sha256"
	HashingSHA512 = "rabbit_password_hashing_sha512"
	HashingMD5    = "rabbit_password_hashing_md5"
)

// HashingAlgorithm is the scheme new passwords are hashed with.
const HashingAlgorithm = HashingBcrypt

// DefaultBcryptCost is bcrypt's work factor for new passwords: about 50 ms
// per hash on a current core. Logins are not paid at this price every time
// (see verifiedCache).
const DefaultBcryptCost = 10

// bcryptMaxPassword is the longest password bcrypt uses in full. Longer
// ones are reduced to base64(SHA-256(password)) first, at hashing and at
// login alike, so that every byte of them counts instead of bcrypt's
// silent truncation (golang.org/x/crypto refuses to hash them at all).
const bcryptMaxPassword = 72

// credential is a user's password hash. It is immutable once built: User
// snapshots share it.
type credential struct {
	algo string  // a Hashing* name; "" when the user has no password
	salt [4]byte // rabbit_* schemes
	sum  []byte  // rabbit_*: the digest; bcrypt: the "$2a$..." string
	cost int     // bcrypt only
}

// encode returns the password_hash of c in the definitions format.
func (c credential) encode() string {
	switch c.algo {
	case "":
		return ""
	case HashingBcrypt:
		return string(c.sum)
	}
	b := make([]byte, 0, len(c.salt)+len(c.sum))
	b = append(b, c.salt[:]...)
	b = append(b, c.sum...)
	return base64.StdEncoding.EncodeToString(b)
}

// algorithm is the hashing_algorithm exported with c. A user without a
// password exports the current scheme with an empty hash, as RabbitMQ.
func (c credential) algorithm() string {
	if c.algo == "" {
		return HashingAlgorithm
	}
	return c.algo
}

func bcryptInput(password string) []byte {
	if len(password) <= bcryptMaxPassword {
		return []byte(password)
	}
	sum := sha256.Sum256([]byte(password))
	return []byte(base64.StdEncoding.EncodeToString(sum[:]))
}

// newBcrypt hashes password with bcrypt at cost.
func newBcrypt(password string, cost int) credential {
	h, err := bcrypt.GenerateFromPassword(bcryptInput(password), cost)
	if err != nil {
		// Only a cost outside bcrypt's range or a too long input fail,
		// and SetBcryptCost and bcryptInput rule both out.
		panic(fmt.Sprintf("auth: bcrypt: %v", err))
	}
	return credential{algo: HashingBcrypt, sum: h, cost: cost}
}

// noPassword is the credential of a user that cannot log in with a
// password (an empty password_hash, as RabbitMQ).
func noPassword() credential { return credential{} }

func rabbitHash(algo string) func() hash.Hash {
	switch algo {
	case HashingSHA256:
		return sha256.New
	case HashingSHA512:
		return sha512.New
	case HashingMD5:
		return md5.New
	}
	return nil
}

func rabbitDigest(newHash func() hash.Hash, salt [4]byte, password string) []byte {
	h := newHash()
	h.Write(salt[:])
	h.Write([]byte(password))
	return h.Sum(nil)
}

// verifyRabbit checks password against a rabbit_* credential in constant
// time; it costs a microsecond, so it needs no cache.
func (c credential) verifyRabbit(password string) bool {
	newHash := rabbitHash(c.algo)
	if newHash == nil {
		return false
	}
	return subtle.ConstantTimeCompare(rabbitDigest(newHash, c.salt, password), c.sum) == 1
}

// parseHash decodes a definitions-file password_hash. algorithm "" means
// "recognise it": a bcrypt string, or RabbitMQ's base64 told apart by its
// length (4-byte salt + 32 SHA-256, 64 SHA-512 or 16 MD5 bytes). RabbitMQ
// itself reads a missing algorithm as its default, SHA-256, which this
// recognises too.
func parseHash(hash, algorithm string) (credential, error) {
	switch algorithm {
	case "", HashingBcrypt, HashingSHA256, HashingSHA512, HashingMD5:
	default:
		return credential{}, fmt.Errorf("hashing algorithm %q is not supported (%s, %s, %s or %s)",
			algorithm, HashingBcrypt, HashingSHA256, HashingSHA512, HashingMD5)
	}
	if hash == "" {
		return noPassword(), nil
	}
	switch algorithm {
	case "":
		if c, ok := parseBcrypt(hash); ok {
			return c, nil
		}
		raw, err := base64.StdEncoding.DecodeString(hash)
		if err != nil {
			return credential{}, fmt.Errorf("password_hash is neither bcrypt nor base64")
		}
		switch len(raw) - 4 {
		case sha256.Size:
			algorithm = HashingSHA256
		case sha512.Size:
			algorithm = HashingSHA512
		case md5.Size:
			algorithm = HashingMD5
		default:
			return credential{}, fmt.Errorf("password_hash has %d bytes, which matches no known hashing algorithm", len(raw))
		}
		return parseRabbit(raw, algorithm)
	case HashingBcrypt:
		if c, ok := parseBcrypt(hash); ok {
			return c, nil
		}
		return credential{}, fmt.Errorf("password_hash is not a bcrypt hash ($2a$...)")
	default: // the rabbit_* schemes
		raw, err := base64.StdEncoding.DecodeString(hash)
		if err != nil {
			return credential{}, fmt.Errorf("password_hash must be base64 for %s", algorithm)
		}
		return parseRabbit(raw, algorithm)
	}
}

func parseRabbit(raw []byte, algorithm string) (credential, error) {
	size := rabbitHash(algorithm)().Size()
	if len(raw) != 4+size {
		return credential{}, fmt.Errorf("password_hash must be base64 of %d bytes (4 salt + %d digest) for %s", 4+size, size, algorithm)
	}
	c := credential{algo: algorithm, sum: append([]byte(nil), raw[4:]...)}
	copy(c.salt[:], raw[:4])
	return c, nil
}

// parseBcrypt accepts a bcrypt string as is or base64-encoded.
func parseBcrypt(hash string) (credential, bool) {
	if !strings.HasPrefix(hash, "$2") {
		raw, err := base64.StdEncoding.DecodeString(hash)
		if err != nil || !strings.HasPrefix(string(raw), "$2") {
			return credential{}, false
		}
		hash = string(raw)
	}
	// A bcrypt string is always 60 characters: "$2a$" cost(2) "$"
	// salt(22) hash(31). bcrypt.Cost checks the version and cost fields.
	if len(hash) != 60 {
		return credential{}, false
	}
	cost, err := bcrypt.Cost([]byte(hash))
	if err != nil {
		return credential{}, false
	}
	return credential{algo: HashingBcrypt, sum: []byte(hash), cost: cost}, true
}
