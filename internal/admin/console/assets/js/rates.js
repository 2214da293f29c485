// Message rates, computed client-side from successive readings of the
// per-queue counters (/api/queues message_stats publish, deliver_get,
// ack): the API returns totals, not rates. Pure: tested with node.

export const RATE_KEYS = ["publish", "deliver_get", "ack"];

// RateTracker keeps the last reading of each queue and turns the next one
// into per-second rates.
export class RateTracker {
  constructor() {
    this.prev = new Map(); // key -> {t, c}
  }

  // update records counters c read at time t (ms) for key and returns the
  // rates since the previous reading, or null for the first one. A
  // counter that went down means the queue was deleted and declared
  // again: its new value all happened since the previous reading.
  update(key, t, c) {
    const p = this.prev.get(key);
    this.prev.set(key, { t, c });
    if (!p || t <= p.t) return null;
    const dt = (t - p.t) / 1000;
    const out = {};
    for (const k of RATE_KEYS) {
      const now = c[k] || 0;
      const before = p.c[k] || 0;
      out[k] = (now >= before ? now - before : now) / dt;
    }
    return out;
  }

  // forget drops the queues not in keep, so deleted queues do not leak.
  forget(keep) {
    for (const k of this.prev.keys()) if (!keep.has(k)) this.prev.delete(k);
  }
}

export function queueKey(q) {
  return q.vhost + "\u0000" + q.name;
}

// applyRates sets q.rates on every queue of a /api/queues answer read at t
// and returns the sums over all queues (null before the second reading).
export function applyRates(tracker, queues, t) {
  const keep = new Set();
  let total = null;
  for (const q of queues) {
    const key = queueKey(q);
    keep.add(key);
    q.rates = tracker.update(key, t, q.message_stats || {});
    if (q.rates) {
      total = total || { publish: 0, deliver_get: 0, ack: 0 };
      for (const k of RATE_KEYS) total[k] += q.rates[k];
    }
  }
  // With queues but no rate yet (first reading) the total is unknown;
  // with no queue at all it is zero.
  if (queues.length === 0) total = { publish: 0, deliver_get: 0, ack: 0 };
  tracker.forget(keep);
  return total;
}

// Series is a bounded history of samples {t, v: {name: number}} for charts.
export class Series {
  constructor(capacity) {
    this.capacity = capacity;
    this.points = [];
  }

  push(t, v) {
    this.points.push({ t, v });
    if (this.points.length > this.capacity) this.points.splice(0, this.points.length - this.capacity);
  }
}
