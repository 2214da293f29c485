// Package web is Herald's HTTP front, one http.Handler for RabbitMQ's
// management port: REST publish and pull, WebSocket and Server-Sent Events
// push, a browser client (/herald.js) and the basics of RabbitMQ's
// management API. It drives the broker core like any protocol adapter:
// a message published here reaches AMQP, MQTT and STOMP consumers, and
// the reverse.
//
// # Authentication
//
// Every endpoint except /herald.js (and the mounted /mqtt and /stomp
// handlers, which authenticate in-band) needs HTTP basic credentials of a
// Herald user, or a bearer token (below); failures answer 401 with
// WWW-Authenticate. guest is loopback-only, as in RabbitMQ. Browsers from the origins in Config.CORSOrigins may call the API
// and open /ws (CORS preflights are answered without credentials).
// Errors are JSON: {"error": "...", "reason": "..."}.
//
// # Bearer tokens (JWT)
//
// With Config.JWT set (herald serve --jwt-hs256-secret-file,
// --jwt-rs256-public-key, --jwt-audience, --jwt-issuer), "Authorization:
// Bearer <jwt>" logs in as the token's user without a password; /ws, /sse
// and /v1/fetch also take the token as ?access_token=<jwt>, since browsers
// cannot set headers on WebSocket or EventSource. Only the configured
// algorithms (HS256, RS256) are accepted ("none" never); exp is required,
// nbf and iat are honoured, aud and iss are checked when configured. The
// user is the claim Config.JWT.UserClaim (default "sub") and need not
// exist in Herald. The scope claim (a space-separated string or an array
// of strings) gives the permissions, RabbitMQ-OAuth2 style, and replaces
// the user database's for that request:
//
//	herald.configure:<vhost>/<pattern>
//	herald.write:<vhost>/<pattern>
//	herald.read:<vhost>/<pattern>
//	herald.tag:<tag>               administrator, management, monitoring, policymaker
//
// <vhost> is URL-encoded ("%2F" is "/") or "*" for every vhost; <pattern>
// is an unanchored regular expression as in RabbitMQ's permissions (it may
// contain '/'; empty matches nothing); several scopes of one kind add up.
// A token reaches a vhost only if a permission scope names it (or "*").
// Scopes without the "herald." prefix are ignored. Refused tokens get 401
// {"error":"not_authorized","reason":"token expired"} (or "token not valid
// yet", "token signature invalid", "token algorithm \"none\" not
// accepted", "token audience not accepted", ...). A WebSocket opened with
// a token is closed (1008 "token expired") when the token expires, an SSE
// stream ended (a last comment ": token expired"). The same tokens log in
// on every protocol as the password (internal/auth, docs/access.md).
//
// # REST
//
//	POST /api/exchanges/{vhost}/{exchange}/publish   RabbitMQ's body -> {"routed": bool}
//	POST /v1/publish/{exchange}/{routing-key}?vhost=/  raw body; properties from headers
//	POST /api/queues/{vhost}/{queue}/get             RabbitMQ's body (count, ackmode, encoding, truncate)
//	GET  /v1/fetch/{queue}?vhost=/&max=10&timeout=30s  long poll; acks what it returns
//
// A publish is answered as a publisher confirm would be: a persistent
// message (delivery_mode 2) that a durable queue took once the message
// log has fsynced it (500 if the disk failed), anything else once routed.
//
// {vhost} is URL-encoded ("%2F" is "/"); the exchange "amq.default" is the
// default exchange. /v1/publish takes Content-Type and Content-Encoding as
// those properties, X-Herald-Delivery-Mode (1, 2 or "persistent"),
// X-Herald-Priority, X-Herald-Correlation-Id, X-Herald-Reply-To,
// X-Herald-Expiration, X-Herald-Message-Id, X-Herald-Timestamp (epoch
// seconds), X-Herald-Type, X-Herald-User-Id and X-Herald-App-Id as
// properties, and X-Herald-Header-<Name>: value as the string header
// <name>, lower-cased. /v1/fetch answers a JSON array of messages in the
// shape of the /ws "message" frame (without op, sub and tag): [] when the
// timeout passes first.
//
// With Config.MaxPublishRate (--max-publish-rate) each user has one token
// bucket for both publish endpoints (rate a second, a burst of one
// second's worth); past it they answer 429 Too Many Requests with
// Retry-After and {"error":"too_many_requests","reason":...}. A /ws socket
// has a bucket of its own and is slowed down instead (ratelimit.go).
// These requests count in herald_published/delivered/acked_total under
// protocol "http" (a get with ackmode ack_requeue_false and a fetch also
// acknowledge), SSE deliveries under "sse", /ws under "websocket".
//
// # WebSocket: /ws?vhost=/
//
// JSON text frames. Client to server:
//
//	{"op":"subscribe","id":"s1","queue":"q"}                      compete with the queue's other consumers
//	{"op":"subscribe","id":"s1","exchange":"amq.topic","key":"a.*"}  own queue, bound: broadcast
//	   options: "ack":"auto" (default; settled once written) or "client", "prefetch":N
//	   -> {"op":"subscribed","id":"s1","queue":"<queue name>"}
//	{"op":"unsubscribe","id":"s1"}                                 -> {"op":"unsubscribed","id":"s1"}
//	{"op":"ack","tag":N}
//	{"op":"nack","tag":N,"requeue":true}                           requeue defaults to true
//	{"op":"touch","tag":N}                                         -> {"op":"touched","tag":N}
//	{"op":"publish","exchange":"","key":"q","body":"...","encoding":"base64"?,
//	   "properties":{...},"headers":{...},"reply_to":"...","confirm":true,"id":...}
//	   -> with confirm: {"op":"confirmed","id":...,"routed":bool}, for a persistent
//	      message in a durable queue once it is on disk; answers to publishes
//	      ("confirmed", "error") keep the order of the publishes
//	{"op":"reply_address","id":...}  -> {"op":"reply_address","id":...,"address":"...","sub":"$reply"}
//	{"op":"ping","id":...}           -> {"op":"pong","id":...}
//	{"op":"connect","token":"<JWT>"?,"id":...}  -> {"op":"connected","id":...,"client":"...","user":"...","expires":unix?}
//	{"op":"refresh","token":"<JWT>","id":...}   -> {"op":"refreshed",...}  (same user; new exp)
//	subscribe with "presence":true, "join_leave":true, "info":{...}   (exchange subscriptions; protocol/httpapi/realtime.go)
//	{"op":"presence","channel":"amq.topic/room1","id":...}  -> {"op":"presence","channel":...,"clients":[{"client","user","info"}]}
//	{"op":"send","to":"U","body":"...", publish's fields}   -> with confirm: {"op":"confirmed","id":...} (no "routed")
//
// Server to client:
//
//	{"op":"message","sub":"s1","tag":N,"exchange":"...","key":"...","body":"...",
//	   "encoding":"base64" (binary bodies only),"headers":{...},"properties":{...},"redelivered":bool}
//	{"op":"cancelled","sub":"s1"}    the queue was deleted
//	{"op":"join"|"leave","channel":"...","client":"...","user":"...","info":...}   join_leave
//	{"op":"message","sub":"$user",...}   sent to this socket's user (protocol/httpapi/usermessages.go)
//	{"op":"error","code":404,"message":"...","id":...}   HTTP-style codes; the socket stays open
//
// Properties use the names of RabbitMQ's management API (content_type,
// delivery_mode, correlation_id, reply_to, message_id, expiration,
// priority, timestamp, type, user_id, app_id). A subscription's
// exchange+key queue is exclusive and auto-delete and lives as long as the
// socket. A reply address is RabbitMQ's direct reply-to: replies published
// to it through the default exchange (from any protocol) arrive as
// messages of the subscription "$reply". Deliveries not acknowledged when
// the socket closes are requeued.
//
// "touch" renews the lease of an unacknowledged delivery under a consumer
// timeout (the queue's x-consumer-timeout or herald serve --consumer-timeout):
// a delivery that is neither acked nor touched within the timeout goes back
// to the queue.
//
// Each socket buffers at most Config.Outbox deliveries; beyond that the
// queues keep the messages until the socket drains. A socket whose own
// (exchange+key) queue grows beyond Config.SlowSubscriberDepth is closed
// with 1008 (policy violation) "too slow". Close and server shutdown close
// sockets with 1001 "server shutting down".
//
// # Server-Sent Events: /sse?queue=q or /sse?exchange=e&key=k (&vhost=)
//
// text/event-stream, one "event: message" per delivery with "id: N" and
// the message JSON as "data:", a ": heartbeat" comment every
// Config.SSEHeartbeat; deliveries are acknowledged once written.
//
// # /herald.js
//
// A dependency-free browser client of the /ws protocol (connect with
// reconnect and resubscribe, subscribe, publish, ack, request with
// correlation ids, presence, per-user send, WebRTC signaling); its
// TypeScript typings are at /herald.d.ts. See docs/web.md.
//
// # Batching
//
// A client that connects to /ws?batch=1 may receive several frames in one
// WebSocket message, one JSON object per line: with thousands of sockets a
// broadcast costs one write per socket per batch, not per message.
//
// # Management
//
// In RabbitMQ's paths and JSON shapes (docs/web.md lists them all):
// /api/overview, /api/whoami, /api/vhosts (DELETE /api/vhosts/{vhost}
// closes its connections and deletes everything in it), /api/users, /api/permissions,
// /api/policies, /api/definitions (GET exports, POST imports a RabbitMQ
// definitions file), /api/exchanges, /api/queues (with .../contents to
// purge, .../get, and Herald's repair tools .../messages to peek,
// .../messages/{id} to delete one, .../move to shovel N messages to another
// queue), /api/bindings (RabbitMQ's paths, see bindings.go), /api/connections (DELETE closes one),
// /api/consumers, /api/channels (AMQP), /api/nodes,
// /api/aliveness-test/{vhost}, /api/health/checks/alarms (503 while a
// resource alarm is raised). Every list pages, sorts and filters as
// RabbitMQ's (?page=&page_size=&name=&use_regex=&sort=&sort_reverse=;
// list.go). The message_stats of /api/overview and /api/queues carry
// RabbitMQ's publish_details, deliver_get_details and ack_details
// {"rate": messages a second}, sampled every Config.StatsInterval
// (stats.go). Reading needs a management tag;
// users, permissions, vhosts and definitions need administrator; policies
// need policymaker or administrator.
package web
