package auth

import (
	"errors"
	"net"
	"testing"
)

func TestAuthenticate(t *testing.T) {
	u := NewDefaultUsers()
	u.Put("app", "s3cret", false)
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	remote := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 1}

	if _, err := u.Authenticate("guest", "guest", local); err != nil {
		t.Fatalf("guest from loopback: %v", err)
	}
	if _, err := u.Authenticate("guest", "guest", remote); !errors.Is(err, ErrLoopbackOnly) {
		t.Fatalf("guest from remote: got %v, want ErrLoopbackOnly", err)
	}
	if _, err := u.Authenticate("guest", "wrong", local); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("wrong password: got %v", err)
	}
	if _, err := u.Authenticate("nobody", "x", local); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("unknown user: got %v", err)
	}
	if _, err := u.Authenticate("app", "s3cret", remote); err != nil {
		t.Fatalf("app from remote: %v", err)
	}
	u.Delete("app")
	if _, err := u.Authenticate("app", "s3cret", remote); err == nil {
		t.Fatal("deleted user still authenticates")
	}
}
