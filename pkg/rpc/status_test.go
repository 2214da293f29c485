package rpc

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestCodeNames(t *testing.T) {
	for c := OK; c <= Unauthenticated; c++ {
		got, ok := ParseCode(c.String())
		if !ok || got != c {
			t.Errorf("%d: %q parses as %v %v", c, c.String(), got, ok)
		}
	}
	if c, ok := ParseCode("CANCELED"); !ok || c != Canceled {
		t.Error("American spelling of CANCELLED")
	}
	if c, ok := ParseCode(""); !ok || c != OK {
		t.Error("a reply without a status is OK")
	}
	if c, ok := ParseCode("WHATEVER"); ok || c != Unknown {
		t.Error("an unknown name is UNKNOWN")
	}
	if s := Code(99).String(); s != "CODE(99)" {
		t.Error(s)
	}
}

func TestErrorMatching(t *testing.T) {
	dl := newError(DeadlineExceeded, context.DeadlineExceeded, "late")
	if !errors.Is(dl, ErrDeadlineExceeded) || !errors.Is(dl, context.DeadlineExceeded) {
		t.Fatal("deadline error does not match")
	}
	// A service's own DEADLINE_EXCEEDED reply matches too.
	if !errors.Is(Errorf(DeadlineExceeded, "slow db"), ErrDeadlineExceeded) {
		t.Fatal("replied DEADLINE_EXCEEDED does not match")
	}
	nr := fmt.Errorf("wrapped: %w", newError(Unavailable, ErrNoResponders, "none"))
	if !errors.Is(nr, ErrNoResponders) || errors.Is(nr, ErrDeadlineExceeded) || CodeOf(nr) != Unavailable {
		t.Fatal("no responders matching")
	}
	var e *Error
	if !errors.As(nr, &e) || e.Message != "none" || e.Error() != "rpc: UNAVAILABLE: none" {
		t.Fatalf("as: %v", e)
	}
	for err, want := range map[error]Code{
		nil: OK, context.Canceled: Canceled, context.DeadlineExceeded: DeadlineExceeded,
		errors.New("x"): Unknown, Errorf(NotFound, "x"): NotFound,
	} {
		if got := CodeOf(err); got != want {
			t.Errorf("CodeOf(%v) = %v, want %v", err, got, want)
		}
	}
}
