// Package bench is the load generator behind `herald bench`.
//
// It speaks plain AMQP 0-9-1 through github.com/rabbitmq/amqp091-go, so the
// same run can be pointed at Herald or at RabbitMQ and the figures compared
// side by side (the mqtt-* scenarios speak MQTT; see below). Run executes one scenario described by a Config and returns a
// Result; the command-line front end only parses flags and prints.
//
// # Scenarios
//
//   - throughput: P producers publish to one queue (or --queues N, spread
//     round-robin) consumed by C competing consumers with manual acks and a
//     prefetch window. Reports deliveries per second.
//   - fanout: producers publish to a fanout exchange bound to N queues, one
//     consumer per queue. Reports deliveries per second (all consumers) and
//     publishes per second.
//   - rpc: one or more servers consume a request queue and reply to reply_to
//     with the request's correlation_id; each of --callers callers sends one
//     request, waits for its reply, and repeats. Callers use their own
//     exclusive server-named reply queue, or amq.rabbitmq.reply-to with
//     DirectReplyTo. Reports round trips per second and round-trip latency.
//   - latency: one producer publishes at a fixed rate (default 1000 msg/s) to
//     one consumer. Reports end-to-end latency percentiles.
//
// The mqtt-* scenarios speak MQTT 3.1.1 through
// github.com/eclipse/paho.mqtt.golang instead (--url mqtt://user:pass@host:port),
// so Herald can be compared with mosquitto:
//
//   - mqtt-fanout: one publisher publishes to one topic to which N
//     subscribers (default 100) are subscribed, at QoS 0 or 1 (with QoS 1 up
//     to ConfirmWindow publishes await their PUBACK). Reports deliveries per
//     second (all subscribers), publishes per second, latency, and loss and
//     duplicates per subscriber: each subscriber must see every publish once.
//     Loss at QoS 0 is reported but is not a failure (MQTT allows it).
//   - mqtt-idle: opens N connections (default 10,000; keep-alive 60s) from a
//     few concurrent dialers, holds them idle for Duration, and reports the
//     connect rate, how many stayed connected, and with BrokerPID the broker's
//     RSS (VmRSS) before and after and its growth per connection. It raises
//     RLIMIT_NOFILE to the hard limit first.
//
// # Messages and accounting
//
// Every body starts with a HeaderSize-byte header (see EncodeHeader): producer
// id, per-producer sequence number, actual send time and scheduled send time
// (unix nanoseconds), padded to the configured size. Each consumer feeds the
// headers it receives to a Tracker, which detects duplicates (the same
// producer and sequence seen twice; redeliveries are also counted
// separately) and out-of-order arrivals per producer. At the end the trackers
// of the consumers that share a queue are combined by Tally: any expected
// sequence number (every one published, or with publisher confirms every one
// the broker acked) that never arrived is lost.
//
// # Latency
//
// Latency is receive time minus the actual send timestamp written in the body
// just before the publish call (wall clock, so producer and consumer clocks
// must agree; they do when both run in this process). Paced runs (--rate) send
// on an absolute schedule: a producer that falls behind publishes
// back-to-back to catch up instead of skipping sends, and ScheduleLatency
// additionally reports receive time minus the intended send time, which
// includes any time the producer itself was held up (the coordinated-omission
// corrected figure). Values go into Histogram, a log-linear histogram with 1
// ns resolution below 512 ns and ≤0.4% relative error up to ~68 s.
//
// # Phases
//
// A run is: set up topology and connections; warm up (figures reported
// separately); measure for Duration; stop the producers; drain until every
// expected message has arrived, nothing arrived for a second, or Drain has
// passed; delete the topology. Rates cover the measured window only (by
// receive time); latency percentiles cover messages sent during the window;
// loss, duplicate and order accounting covers the whole run.
//
// Every run declares its own uniquely named, auto-delete queues and exchange
// (prefix "herald-bench-") and deletes them at the end. Each producer and
// consumer has its own connection.
package bench
