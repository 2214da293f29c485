package streamlog

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseMaxAge(t *testing.T) {
	day := 24 * time.Hour
	good := []struct {
		in   string
		want time.Duration
	}{
		{"7D", 7 * day},
		{"12h", 12 * time.Hour},
		{"30s", 30 * time.Second},
		{"1m", time.Minute},
		{"2M", 60 * day},
		{"1Y", 365 * day},
		{"0001s", time.Second},
		{"106751D", 106751 * day},
	}
	for _, c := range good {
		got, err := ParseMaxAge(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseMaxAge(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	bad := []string{"", "D", "7", "0D", "-1D", "+1D", "1.5h", "1 h", " 1h", "1h ", "1d", "1H", "1S", "1y", "1hm",
		"1ms", "10000000000000000000s", "300Y", "1w", "h1", "7DD", "\x001s"}
	for _, in := range bad {
		_, err := ParseMaxAge(in)
		if !errors.Is(err, ErrBadArgument) || !strings.Contains(err.Error(), "x-max-age") {
			t.Errorf("ParseMaxAge(%q) error %v, want ErrBadArgument naming x-max-age", in, err)
		}
	}
}

func TestParseOffsetSpec(t *testing.T) {
	now := epoch
	good := []struct {
		in   string
		want Position
	}{
		{"first", First()},
		{"last", Last()},
		{"next", Next()},
		{"0", AtOffset(0)},
		{"42", AtOffset(42)},
		{"18446744073709551615", AtOffset(1<<64 - 1)},
		{"1h", AtTime(now.Add(-time.Hour))},
		{"30m", AtTime(now.Add(-30 * time.Minute))},
		{"7D", AtTime(now.Add(-7 * 24 * time.Hour))},
	}
	for _, c := range good {
		got, err := ParseOffsetSpec(c.in, now)
		if err != nil || got.Kind != c.want.Kind || got.Offset != c.want.Offset || !got.Time.Equal(c.want.Time) {
			t.Errorf("ParseOffsetSpec(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "First", "-1", "+1", "1.0", "18446744073709551616", "0h", "offset=1", "1x", " next"} {
		_, err := ParseOffsetSpec(in, now)
		if !errors.Is(err, ErrBadArgument) || !strings.Contains(err.Error(), "x-stream-offset") ||
			!strings.Contains(err.Error(), "\""+in+"\"") {
			t.Errorf("ParseOffsetSpec(%q) error %v, want ErrBadArgument naming the argument and value", in, err)
		}
	}
}

func TestParseSTOMPOffset(t *testing.T) {
	good := []struct {
		in   string
		want Position
	}{
		{"first", First()},
		{"last", Last()},
		{"next", Next()},
		{"offset=0", AtOffset(0)},
		{"offset=12345", AtOffset(12345)},
		{"timestamp=1700000000", AtTime(time.Unix(1700000000, 0))},
		{"timestamp=0", AtTime(time.Unix(0, 0))},
	}
	for _, c := range good {
		got, err := ParseSTOMPOffset(c.in)
		if err != nil || got.Kind != c.want.Kind || got.Offset != c.want.Offset || !got.Time.Equal(c.want.Time) {
			t.Errorf("ParseSTOMPOffset(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "offset=", "offset=-1", "offset=x", "offset=1.5", "timestamp=", "timestamp=-5",
		"timestamp=99999999999999999999", "timestamp=9223372037", "12", "1h", "offset", "Offset=1", "offset = 1"} {
		_, err := ParseSTOMPOffset(in)
		if !errors.Is(err, ErrBadArgument) || !strings.Contains(err.Error(), "x-stream-offset") {
			t.Errorf("ParseSTOMPOffset(%q) error %v, want ErrBadArgument naming the header", in, err)
		}
	}
}

func FuzzParseMaxAge(f *testing.F) {
	for _, s := range []string{"7D", "12h", "30s", "1Y", "0D", "-1h", "1.5h", "99999999999999999999s", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseMaxAge(s)
		if err != nil {
			if !errors.Is(err, ErrBadArgument) {
				t.Fatalf("error %v does not wrap ErrBadArgument", err)
			}
			return
		}
		if d <= 0 {
			t.Fatalf("ParseMaxAge(%q) = %v", s, d)
		}
	})
}

func FuzzParseOffsetSpec(f *testing.F) {
	for _, s := range []string{"first", "last", "next", "0", "42", "1h", "30m", "-1", "18446744073709551616", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseOffsetSpec(s, epoch)
		if err != nil {
			if !errors.Is(err, ErrBadArgument) {
				t.Fatalf("error %v does not wrap ErrBadArgument", err)
			}
			return
		}
		if p.Kind == PosTime && !p.Time.Before(epoch) {
			t.Fatalf("interval %q resolves to %v, not in the past", s, p.Time)
		}
	})
}

func FuzzParseSTOMPOffset(f *testing.F) {
	for _, s := range []string{"first", "last", "next", "offset=5", "timestamp=1700000000", "offset=", "timestamp=-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseSTOMPOffset(s)
		if err != nil {
			if !errors.Is(err, ErrBadArgument) {
				t.Fatalf("error %v does not wrap ErrBadArgument", err)
			}
			return
		}
		if p.String() == "" {
			t.Fatal("empty position")
		}
	})
}
