//go:build !linux

package browser

import "time"

// Elsewhere chromium's helpers are left to the system (see reap_linux_test.go).
func adoptOrphans()                         {}
func reapChildren(d time.Duration) []string { return nil }
