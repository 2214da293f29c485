// Package kit holds what every protocol adapter needs the same way: the
// registry of a handler's open connections, the peer's identity as the
// socket shows it (a verified client certificate, a loopback address),
// the non-blocking wake-up of a writer goroutine, the read of an idle
// plain socket from a shallow frame (RawReader) and the idle poller that
// holds idle plain sockets with no goroutine at all (IdlePoller). It knows
// no adapter (internal/archtest checks) and no wire format.
//
// # Parking idle connections
//
// An adapter whose connections are mostly idle (MQTT devices, WebSocket
// browsers) lets their reader goroutines exit while nothing arrives:
//
//	poller := kit.NewIdlePoller(log)            // one per handler (or shared); Close it last
//	k := poller.NewParker(nc, c.resume)         // nil: not a plain socket (TLS, WebSocket) or not Linux
//	...
//	// in the read loop, once everything read is consumed and the socket
//	// has stayed silent a while (a read deadline of a second, say):
//	if k.Park(keepAliveDeadline) {              // zero time: no deadline
//		return // the goroutine ends; c.resume runs in a new one later
//	}
//	// false: the poller is closed or the socket is: read as usual
//
// resume runs, in a new goroutine, when the socket becomes readable (bytes
// or a hang-up), when the deadline passes (the handler then sees its own
// read deadline expired and applies its keep-alive) or when Wake is
// called. Whoever closes the socket from outside the reader (a writer on
// an error, a shutdown, a takeover) calls k.Wake() after the close: a
// closed socket leaves epoll without an event. The reader calls
// k.Release() before it closes the socket itself. Writes need nothing: a
// parked connection is written to as any other. A handler that lets its
// serve function return while the connection is parked tells the
// listeners when it really ends (server.Spec.ConnDetached).
package kit
