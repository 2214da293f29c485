// herald.js: a one-file browser client for Herald's /ws protocol.
//
//   const h = await Herald.connect("wss://broker.example.com/ws");
//   h.subscribe({exchange: "amq.topic", key: "chat.*"}, m => console.log(m.body));
//   h.subscribe({queue: "jobs", ack: "client"}, m => { work(m.body); m.ack(); });
//   await h.publish("amq.topic", "chat.room1", "hello", {confirm: true});
//   const reply = await h.request("", "rpc.add", JSON.stringify([1, 2]));
//   h.subscribe({stream: "events", offset: "first"}, m => show(m.offset, m.body));
//
// With {reconnect: true} (or a delay in ms) a dropped socket is opened
// again and every subscription made again; a stream subscription resumes
// right after the last offset it delivered, so nothing comes twice.
//
// Credentials: the browser's HTTP basic credentials for the page's origin
// are sent with the WebSocket upgrade (there is no in-band login yet).
"use strict";

class Herald {
  // connect opens the socket and resolves once it is open.
  static connect(url, options = {}) {
    return new Promise((resolve, reject) => {
      const h = new Herald(url, options);
      h.ws.addEventListener("open", () => resolve(h), { once: true });
      h.ws.addEventListener("error", (e) => reject(e), { once: true });
    });
  }

  constructor(url, options = {}) {
    if (!url) {
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      url = proto + "//" + location.host + "/ws";
    }
    // Ask for batched delivery: several frames per WebSocket message,
    // one JSON object per line.
    this.url = url + (url.includes("?") ? "&" : "?") + "batch=1";
    this.nextId = 1;
    this.subs = new Map();     // subscription id -> callback
    this.specs = new Map();    // subscription id -> what subscribe was given (to subscribe again)
    this.offsets = new Map();  // stream subscription id -> last offset delivered
    this.waiting = new Map();  // request id -> {resolve, reject}
    this.calls = new Map();    // correlation id -> {resolve, reject, timer}
    this.replyAddress = null;
    this.closing = false;
    this.reconnect = options.reconnect === true ? 1000 : (options.reconnect || 0);
    this.onerror = options.onerror || ((e) => console.error("herald:", e));
    this.onclose = options.onclose || (() => {});
    this.onreconnect = options.onreconnect || (() => {});
    this._open();
  }

  _open() {
    this.ws = new WebSocket(this.url);
    this.ws.addEventListener("message", (ev) => {
      for (const line of String(ev.data).split("\n")) {
        if (line) this._frame(JSON.parse(line));
      }
    });
    this.ws.addEventListener("close", (ev) => {
      for (const w of this.waiting.values()) w.reject(new Error("closed: " + ev.reason));
      for (const c of this.calls.values()) { clearTimeout(c.timer); c.reject(new Error("closed: " + ev.reason)); }
      this.waiting.clear();
      this.calls.clear();
      this.replyAddress = null;
      this.onclose(ev.code, ev.reason);
      if (this.reconnect && !this.closing) setTimeout(() => this._reopen(), this.reconnect);
    });
  }

  // _reopen opens a new socket and subscribes again: a stream from the
  // offset after the last one delivered, everything else as before.
  _reopen() {
    if (this.closing) return;
    this._open();
    this.ws.addEventListener("open", async () => {
      for (const [id, what] of this.specs) {
        const again = Object.assign({}, what, { op: "subscribe", id });
        if (what.stream !== undefined && this.offsets.has(id)) again.offset = this.offsets.get(id) + 1;
        try { await this._ask(again); } catch (e) { this.onerror(e); }
      }
      this.onreconnect();
    }, { once: true });
  }

  _id() { return "c" + (this.nextId++); }

  _send(frame) { this.ws.send(JSON.stringify(frame)); }

  // _ask sends a frame with an id and resolves with the answer that echoes it.
  _ask(frame) {
    frame.id = frame.id || this._id();
    return new Promise((resolve, reject) => {
      this.waiting.set(String(frame.id), { resolve, reject });
      this._send(frame);
    });
  }

  _frame(f) {
    switch (f.op) {
      case "message": {
        const cb = this.subs.get(f.sub);
        if (f.offset !== undefined) this.offsets.set(f.sub, f.offset);
        f.ack = () => this._send({ op: "ack", tag: f.tag });
        f.nack = (requeue = true) => this._send({ op: "nack", tag: f.tag, requeue });
        if (cb) cb(f);
        return;
      }
      case "error": {
        const w = f.id !== undefined && this.waiting.get(String(f.id));
        if (w) { this.waiting.delete(String(f.id)); w.reject(new Error(f.code + " " + f.message)); return; }
        this.onerror(f);
        return;
      }
      case "cancelled":
        this.subs.delete(f.sub);
        this.onerror(f);
        return;
    }
    const w = f.id !== undefined && this.waiting.get(String(f.id));
    if (w) { this.waiting.delete(String(f.id)); w.resolve(f); }
  }

  // subscribe({queue}) competes with the queue's other consumers;
  // subscribe({exchange, key}) gets every matching message (broadcast);
  // subscribe({stream, offset}) reads a stream from offset ("first",
  // "last", "next", a number, "1h"); its messages carry m.offset.
  // Options: ack "auto" (default) or "client" (call m.ack()), prefetch.
  async subscribe(what, cb) {
    const id = what.id || this._id();
    this.subs.set(id, cb);
    try {
      await this._ask(Object.assign({ op: "subscribe" }, what, { id }));
    } catch (e) {
      this.subs.delete(id);
      throw e;
    }
    this.specs.set(id, Object.assign({}, what));
    return id;
  }

  unsubscribe(id) {
    this.subs.delete(id);
    this.specs.delete(id);
    this.offsets.delete(id);
    return this._ask({ op: "unsubscribe", id });
  }

  // publish sends body (a string) to exchange with routing key; with
  // {confirm: true} it resolves once the broker has routed it (and, for a
  // persistent message, properties {delivery_mode: 2}, that a durable
  // queue took, once it is on disk).
  publish(exchange, key, body, opts = {}) {
    const frame = { op: "publish", exchange, key, body: String(body),
      properties: opts.properties || {}, headers: opts.headers, reply_to: opts.reply_to };
    if (opts.confirm) { frame.confirm = true; return this._ask(frame); }
    this._send(frame);
    return Promise.resolve();
  }

  // request publishes with a reply address and a correlation id and
  // resolves with the reply message (or rejects after timeout ms).
  async request(exchange, key, body, opts = {}) {
    if (!this.replyAddress) {
      const r = await this._ask({ op: "reply_address" });
      this.replyAddress = r.address;
      this.subs.set(r.sub, (m) => {
        const c = this.calls.get(m.properties.correlation_id);
        if (!c) return;
        this.calls.delete(m.properties.correlation_id);
        clearTimeout(c.timer);
        c.resolve(m);
      });
    }
    const cid = this._id() + "-" + Date.now();
    const p = new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.calls.delete(cid); reject(new Error("request timed out")); }, opts.timeout || 30000);
      this.calls.set(cid, { resolve, reject, timer });
    });
    const properties = Object.assign({}, opts.properties, { correlation_id: cid, reply_to: this.replyAddress });
    await this.publish(exchange, key, body, { properties, headers: opts.headers, confirm: true });
    return p;
  }

  close() { this.closing = true; this.ws.close(1000, "bye"); }
}

if (typeof window !== "undefined") window.Herald = Herald;
if (typeof module !== "undefined") module.exports = { Herald };
