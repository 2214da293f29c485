package bench

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// FormatCount formats n with thousands separators: 1,040,000.
func FormatCount(n uint64) string {
	s := strconv.FormatUint(n, 10)
	if len(s) <= 3 {
		return s
	}
	var b strings.Builder
	pre := len(s) % 3
	if pre > 0 {
		b.WriteString(s[:pre])
	}
	for i := pre; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}

// formatRate formats a per-second figure, rounded, with separators.
func formatRate(f float64) string {
	if f <= 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return "0"
	}
	return FormatCount(uint64(f + 0.5))
}

// FormatLatency formats a latency compactly in the unit that suits it:
// 42µs, 0.41ms, 1.9ms, 120ms, 2.5s.
func FormatLatency(d time.Duration) string {
	us := float64(d) / 1e3
	ms := float64(d) / 1e6
	switch {
	case d <= 0:
		return "0"
	case d < 10*time.Microsecond:
		return fmt.Sprintf("%.1fµs", us)
	case d < 100*time.Microsecond:
		return fmt.Sprintf("%.0fµs", us)
	case d < time.Millisecond:
		return fmt.Sprintf("%.2fms", ms)
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1fms", ms)
	case d < 10*time.Second:
		return fmt.Sprintf("%.0fms", ms)
	default:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// Describe summarises a normalized configuration in one line, e.g.
// "1 producer -> 1 consumer, 128 B, prefetch 1000, manual ack".
func Describe(c Config) string {
	if isRef(c.Scenario) {
		return describeRef(c)
	}
	switch c.Scenario {
	case ScenarioMQTTFanout:
		s := fmt.Sprintf("%s -> 1 topic -> %s, QoS %d", plural(c.Producers, "publisher"), plural(c.Subscribers, "subscriber"), c.QoS)
		if c.Rate > 0 {
			s += " at " + FormatCount(uint64(c.Rate)) + " msg/s"
		}
		return s + ", " + strconv.Itoa(c.Size) + " B"
	case ScenarioWSFanout:
		return describeWS(c)
	case ScenarioWSIdle:
		return describeWSIdle(c)
	case ScenarioStream:
		return describeStream(c)
	case ScenarioRPCGateway:
		return describeGateway(c)
	case ScenarioMQTTIdle:
		return fmt.Sprintf("%s idle MQTT connections, keep-alive %v, held %v", FormatCount(uint64(c.Connections)), MQTTIdleKeepAlive, c.Duration)
	}
	var parts []string
	switch c.Scenario {
	case ScenarioFanout:
		parts = append(parts, fmt.Sprintf("%s -> fanout -> %s x 1 consumer", plural(c.Producers, "producer"), plural(c.Queues, "queue")))
	case ScenarioRPC:
		reply := "exclusive reply queues"
		if c.DirectReplyTo {
			reply = "direct reply-to"
		}
		parts = append(parts, fmt.Sprintf("%s -> %s, %s", plural(c.Callers, "caller"), plural(c.Consumers, "server"), reply))
	default:
		s := plural(c.Producers, "producer") + " -> "
		if c.Queues > 1 {
			s += plural(c.Queues, "queue") + " -> "
		}
		s += plural(c.Consumers, "consumer")
		parts = append(parts, s)
	}
	if c.Rate > 0 {
		unit := "msg/s"
		if c.Scenario == ScenarioRPC {
			unit = "req/s"
		}
		parts[0] += " at " + FormatCount(uint64(c.Rate)) + " " + unit
	}
	parts = append(parts, strconv.Itoa(c.Size)+" B")
	if !c.AutoAck {
		if c.Prefetch == 0 {
			parts = append(parts, "prefetch unlimited")
		} else {
			parts = append(parts, "prefetch "+strconv.Itoa(c.Prefetch))
		}
	}
	switch {
	case c.AutoAck:
		parts = append(parts, "auto-ack")
	case c.AckEvery > 1 && c.Scenario != ScenarioRPC:
		parts = append(parts, fmt.Sprintf("manual ack every %d", c.AckEvery))
	default:
		parts = append(parts, "manual ack")
	}
	if c.Confirm && c.Scenario != ScenarioRPC {
		parts = append(parts, fmt.Sprintf("confirms (window %d)", c.ConfirmWindow))
	}
	if c.Persistent {
		parts = append(parts, "persistent")
	}
	return strings.Join(parts, ", ")
}

func latencyLine(s LatencySummary) string {
	if s.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p99 %s  p99.9 %s  max %s",
		FormatLatency(s.P50), FormatLatency(s.P99), FormatLatency(s.P999), FormatLatency(s.Max))
}

// WriteTable prints res as the human-readable summary table.
func WriteTable(w io.Writer, res Result) error {
	var b strings.Builder
	row := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-10s %s\n", label, fmt.Sprintf(format, args...))
	}
	c := res.Config
	row("scenario", "%s  (%s)", res.Scenario, res.Description)
	if res.Idle != nil {
		writeIdleRows(row, res)
		_, err := io.WriteString(w, b.String())
		return err
	}

	counts := func(pairs ...any) string {
		var parts []string
		for i := 0; i < len(pairs); i += 2 {
			parts = append(parts, fmt.Sprintf("%s %s", pairs[i], FormatCount(pairs[i+1].(uint64))))
		}
		return strings.Join(parts, "   ")
	}
	if res.Scenario == ScenarioRPC {
		line := FormatCount(res.Sent) + "   " + counts("answered", res.Received, "lost", res.Lost, "duplicated", res.Duplicated)
		if res.Timeouts > 0 {
			line += "   " + counts("timed out", res.Timeouts)
		}
		row("sent", "%s", line)
	} else {
		label := "received"
		if res.Scenario == ScenarioFanout || res.Scenario == ScenarioMQTTFanout || res.Scenario == ScenarioWSFanout {
			label = "delivered"
		}
		row("sent", "%s", FormatCount(res.Sent)+"   "+counts(label, res.Received, "lost", res.Lost, "duplicated", res.Duplicated, "out-of-order", res.OutOfOrder))
	}
	var extra []any
	if res.Redelivered > 0 {
		extra = append(extra, "redelivered", res.Redelivered)
	}
	if res.Malformed > 0 {
		extra = append(extra, "malformed", res.Malformed)
	}
	if res.Backlog > 0 {
		extra = append(extra, "left in queues", res.Backlog)
	}
	if len(extra) > 0 {
		row("", "%s", counts(extra...))
	}
	if len(res.PerSubscriber) > 0 {
		row("per sub", "%s", subscriberLine(res.PerSubscriber))
	}
	writeLastDeliveryRow(row, res.LastDelivery)
	if res.WS != nil {
		writeWSRows(row, res)
	}
	if res.Stream != nil {
		writeStreamRows(row, res)
	}
	if c.QoS > 0 && res.Scenario == ScenarioMQTTFanout {
		line := counts("acked", res.Confirmed, "failed", res.Nacked)
		if res.ConfirmLatency != nil {
			line += "   latency " + latencyLine(*res.ConfirmLatency)
		}
		row("pubacks", "%s", line)
	}
	if c.Confirm && res.Scenario != ScenarioRPC {
		line := counts("acked", res.Confirmed, "nacked", res.Nacked)
		if res.Unconfirmed > 0 {
			line += "   " + counts("unconfirmed", res.Unconfirmed)
		}
		if res.ConfirmLatency != nil {
			line += "   latency " + latencyLine(*res.ConfirmLatency)
		}
		row("confirms", "%s", line)
	}

	window := fmt.Sprintf("(over %.1fs", res.Elapsed.Seconds())
	if res.Warmup != nil {
		window += fmt.Sprintf(", after %.1fs warmup", res.Warmup.Elapsed.Seconds())
	}
	window += ")"
	switch res.Scenario {
	case ScenarioFanout, ScenarioMQTTFanout:
		row("rate", "%s deliveries/s   %s publishes/s   %.1f MB/s   %s",
			formatRate(res.MsgsPerSec), formatRate(res.SentPerSec), res.MBPerSec, window)
	case ScenarioRPC:
		row("rate", "%s round trips/s   %s", formatRate(res.MsgsPerSec), window)
	case ScenarioRPCGateway:
		row("rate", "%s calls/s   %s", formatRate(res.MsgsPerSec), window)
	default:
		row("rate", "%s msg/s   %.1f MB/s   %s", formatRate(res.MsgsPerSec), res.MBPerSec, window)
	}
	row("latency", "%s", latencyLine(res.LatencySummary))
	if res.ScheduleLatency != nil {
		row("schedule", "%s  (from intended send time)", latencyLine(*res.ScheduleLatency))
	}
	if res.Warmup != nil {
		row("warmup", "%.1fs   %s msg/s   p99 %s   (excluded from the figures above)",
			res.Warmup.Elapsed.Seconds(), formatRate(res.Warmup.MsgsPerSec), FormatLatency(res.Warmup.Latency.P99))
	}
	secs := res.Elapsed.Seconds()
	if c.BrokerPID > 0 {
		line := fmt.Sprintf("pid %d   cpu %.2fs", c.BrokerPID, res.BrokerCPU)
		if secs > 0 {
			line += fmt.Sprintf(" (%.0f%% of a core)", 100*res.BrokerCPU/secs)
		}
		if res.MsgsPerBrokerCPUSec > 0 {
			line += fmt.Sprintf("   %s msgs per broker CPU-second", formatRate(res.MsgsPerBrokerCPUSec))
		}
		row("broker", "%s", line)
	}
	if secs > 0 {
		row("bench", "cpu %.2fs (%.0f%% of a core)", res.BenchCPU, 100*res.BenchCPU/secs)
	}
	drain := fmt.Sprintf("%.2fs", res.DrainTime.Seconds())
	if res.DrainTimedOut {
		drain += fmt.Sprintf(" (gave up after --drain %v)", c.Drain)
	}
	row("drain", "%s", drain)
	for _, wmsg := range res.Warnings {
		row("warning", "%s", wmsg)
	}
	if res.Interrupted {
		row("note", "interrupted: the window was cut short to %.1fs", secs)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// subscriberLine summarises the per-subscriber accounting of mqtt-fanout:
// the spread of deliveries and how many subscribers lost or got duplicates.
func subscriberLine(per []SubscriberTally) string {
	minR, maxR := per[0].Received, per[0].Received
	var lossy, duped int
	var maxLost, maxDup uint64
	for _, s := range per {
		minR, maxR = min(minR, s.Received), max(maxR, s.Received)
		if s.Lost > 0 {
			lossy++
			maxLost = max(maxLost, s.Lost)
		}
		if s.Duplicated > 0 {
			duped++
			maxDup = max(maxDup, s.Duplicated)
		}
	}
	return fmt.Sprintf("%s: received %s..%s each   %d lost some (max %s)   %d got duplicates (max %s)",
		plural(len(per), "subscriber"), FormatCount(minR), FormatCount(maxR), lossy, FormatCount(maxLost), duped, FormatCount(maxDup))
}

// formatBytes formats a byte count in binary units: 512 B, 3.4 KiB, 12.0 MiB.
func formatBytes(f float64) string {
	neg := ""
	if f < 0 {
		neg, f = "-", -f
	}
	switch {
	case f < 1024:
		return fmt.Sprintf("%s%.0f B", neg, f)
	case f < 1<<20:
		return fmt.Sprintf("%s%.1f KiB", neg, f/1024)
	case f < 1<<30:
		return fmt.Sprintf("%s%.1f MiB", neg, f/(1<<20))
	default:
		return fmt.Sprintf("%s%.2f GiB", neg, f/(1<<30))
	}
}

// writeIdleRows prints the mqtt-idle figures.
func writeIdleRows(row func(label, format string, args ...any), res Result) {
	id := res.Idle
	row("conns", "%s requested   %s connected   %s failed   %s still connected after %.1fs",
		FormatCount(uint64(id.Requested)), FormatCount(uint64(id.Connected)), FormatCount(uint64(id.Failed)),
		FormatCount(uint64(id.StillConnected)), id.Hold.Seconds())
	from := ""
	if n := len(res.Config.SourceAddrs); n > 0 {
		from = fmt.Sprintf(", from %d source addresses", n)
	}
	row("connect", "%s connects/s   (%s in %.2fs, %d at a time%s)", formatRate(id.ConnectsPerSec),
		FormatCount(uint64(id.Connected)), id.ConnectTime.Seconds(), idleConnectWorkers, from)
	if res.Config.BrokerPID > 0 {
		line := fmt.Sprintf("pid %d   cpu %.2fs while idle", res.Config.BrokerPID, res.BrokerCPU)
		if s := id.Hold.Seconds(); s > 0 {
			line += fmt.Sprintf(" (%.1f%% of a core)", 100*res.BrokerCPU/s)
		}
		row("broker", "%s", line)
		if id.ConnectCPU > 0 && id.Connected > 0 {
			row("", "cpu %.2fs for the connects = %.0f us per connect", id.ConnectCPU, 1e6*id.ConnectCPU/float64(id.Connected))
		}
		if id.RSSAfter > 0 {
			row("rss", "%s before -> %s with %s connections = %s per connection",
				formatBytes(float64(id.RSSBefore)), formatBytes(float64(id.RSSAfter)),
				FormatCount(uint64(id.Connected)), formatBytes(id.RSSPerConn))
		}
	}
	if s := id.Hold.Seconds(); s > 0 {
		row("bench", "cpu %.2fs while idle   open-file limit %d", res.BenchCPU, id.NoFileLimit)
	}
	for _, wmsg := range res.Warnings {
		row("warning", "%s", wmsg)
	}
	if res.Interrupted {
		row("note", "interrupted: the hold was cut short to %.1fs", id.Hold.Seconds())
	}
}
