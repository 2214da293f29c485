// Package kit holds what every protocol adapter needs the same way: the
// registry of a handler's open connections, the peer's identity as the
// socket shows it (a verified client certificate, a loopback address),
// the non-blocking wake-up of a writer goroutine and the read of an idle
// plain socket from a shallow frame (RawReader). It knows no adapter
// (internal/archtest checks) and no wire format.
package kit
