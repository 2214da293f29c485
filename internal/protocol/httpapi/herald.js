// herald.js: a one-file browser client for Herald's /ws protocol.
//
//   const h = await Herald.connect("wss://broker.example.com/ws", {getToken: () => fetchMyJWT()});
//   h.subscribe({exchange: "amq.topic", key: "chat.*"}, m => console.log(m.body));
//   h.subscribe({queue: "jobs", ack: "client"}, m => { work(m.body); m.ack(); });
//   await h.publish("amq.topic", "chat.room1", "hello", {confirm: true});
//   const reply = await h.request("", "rpc.add", JSON.stringify([1, 2]));
//   h.subscribe({stream: "events", offset: "first"}, m => show(m.offset, m.body));
//   h.onUser(m => notify(m.body));            // what is sent to this user
//   await h.send("bob", "hi Bob");             // to every socket of user bob
//
// The client survives the network: when the socket drops it reconnects
// with exponential backoff and jitter, logs in again and resubscribes
// every subscription under the same id. A queue subscription gets its
// unacknowledged deliveries back, as the broker redelivers them
// (m.redelivered); an exchange subscription gets what is published from
// the moment it is subscribed again; a stream subscription resumes right
// after the last offset it delivered (nothing twice), and the answer
// handed to events.onsubscribed says recovered: true when nothing in the
// gap was lost, false when retention dropped part of it. Publishes made
// while disconnected are held (up to options.bufferLimit frames) and sent
// once reconnected.
//
// Credentials: a token (options.token, or options.getToken, called before
// every connect and to refresh the token before it expires) is sent in the
// first frame, {"op":"connect","token":...}; without one, the browser's
// HTTP basic credentials for Herald's origin go with the upgrade.
//
// TypeScript typings: /herald.d.ts.
"use strict";

class Herald {
  // connect resolves once the socket is open and logged in.
  static connect(url, options = {}) {
    return new Promise((resolve, reject) => {
      const h = new Herald(url, Object.assign({}, options, {
        _first: { resolve: () => resolve(h), reject },
      }));
    });
  }

  // channel names the presence channel of an exchange subscription.
  static channel(exchange, key) { return exchange + "/" + key; }

  constructor(url, options = {}) {
    if (!url) {
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      url = proto + "//" + location.host + "/ws";
    }
    // Ask for batched delivery: several frames per WebSocket message,
    // one JSON object per line.
    this.url = url + (url.includes("?") ? "&" : "?") + "batch=1";
    this.options = Object.assign({ reconnect: true, minDelay: 500, maxDelay: 20000, bufferLimit: 1000, refreshMargin: 30000, pingInterval: 25000 }, options);
    this.nextId = 1;
    this.subs = new Map();     // subscription id -> {what, cb, events, lastOffset}
    this.waiting = new Map();  // request id -> {resolve, reject}
    this.calls = new Map();    // correlation id -> {resolve, reject, timer}
    this.userHandlers = new Set();
    this.rtcHandlers = new Set();
    this.rtcSessions = new Map(); // rtc session id -> HeraldRTC
    this.buffer = [];          // frames held while disconnected
    this.replyAddress = null;
    this.client = null;        // this socket's client id (presence)
    this.user = null;
    this.state = "connecting"; // connecting | connected | disconnected | closed
    this.epoch = 0;            // one per socket: acks of an old socket are dropped
    this.attempt = 0;
    this.onerror = options.onerror || ((e) => console.error("herald:", e));
    this.onclose = options.onclose || (() => {});
    this.onstate = options.onstate || (() => {});
    this.onconnect = options.onconnect || (() => {});
    this._first = options._first || null;
    this._open();
  }

  _setState(s) { if (this.state !== s) { this.state = s; this.onstate(s); } }

  async _token() {
    if (this.options.getToken) return await this.options.getToken();
    return this.options.token || null;
  }

  async _open() {
    this._setState("connecting");
    let token;
    try { token = await this._token(); } catch (e) { this.onerror(e); this._retry(); return; }
    if (this.state === "closed") return;
    const ws = new WebSocket(this.url);
    const epoch = ++this.epoch;
    this.ws = ws;
    ws.addEventListener("open", () => {
      const f = { op: "connect", id: this._id() };
      if (token) f.token = token;
      this._ask(f, true).then((c) => this._connected(c, epoch), (e) => this.onerror(e));
    });
    ws.addEventListener("message", (ev) => {
      if (epoch !== this.epoch) return;
      this.lastSeen = Date.now();
      for (const line of String(ev.data).split("\n")) {
        if (line) this._frame(JSON.parse(line), epoch);
      }
    });
    ws.addEventListener("close", (ev) => {
      if (epoch !== this.epoch) return;
      this._closed(ev.code, ev.reason);
    });
  }

  async _connected(c, epoch) {
    if (epoch !== this.epoch) return;
    this._startPing(epoch);
    this.client = c.client;
    this.user = c.user;
    this.attempt = 0;
    this._scheduleRefresh(c.expires);
    // Resubscribe in the order of the first subscribes, then release
    // what was held meanwhile.
    for (const [id, s] of this.subs) {
      try { await this._subscribeFrame(id, s); } catch (e) { this.onerror(e); }
    }
    if (epoch !== this.epoch) return;
    this._setState("connected");
    const held = this.buffer;
    this.buffer = [];
    for (const b of held) this._sendNow(b.frame);
    this.onconnect({ client: c.client, user: c.user });
    if (this._first) { this._first.resolve(); this._first = null; }
  }

  // _startPing notices a server that vanished without closing (no FIN:
  // the browser would wait minutes): a ping every pingInterval, and the
  // socket is given up when nothing came for two intervals.
  _startPing(epoch) {
    clearInterval(this.pingTimer);
    const iv = this.options.pingInterval;
    if (!iv) return;
    this.lastSeen = Date.now();
    this.pingTimer = setInterval(() => {
      if (epoch !== this.epoch) return;
      if (Date.now() - this.lastSeen > 2 * iv) {
        const ws = this.ws;
        this.epoch++; // the old socket's late events are ignored
        try { ws.close(4000, "no answer from the server"); } catch (e) { /* closing anyway */ }
        this._closed(4000, "no answer from the server");
        return;
      }
      try { this.ws.send('{"op":"ping"}'); } catch (e) { /* the close event follows */ }
    }, iv);
  }

  _closed(code, reason) {
    clearTimeout(this.refreshTimer);
    clearInterval(this.pingTimer);
    const err = new Error("closed: " + code + " " + reason);
    // Frames still held for the next socket keep their waiters.
    const held = new Set(this.buffer.map((b) => String(b.frame.id)));
    for (const [id, w] of this.waiting) {
      if (!held.has(id)) { w.reject(err); this.waiting.delete(id); }
    }
    for (const c of this.calls.values()) { clearTimeout(c.timer); c.reject(err); }
    this.calls.clear();
    this.replyAddress = null;
    for (const s of this.rtcSessions.values()) s._lost();
    this.onclose(code, reason);
    if (this.state === "closed") return;
    if (this._first && this.attempt >= 2) {
      // The first connect keeps failing: tell the caller, keep trying.
      this._first.reject(err);
      this._first = null;
    }
    this._retry();
  }

  _retry() {
    if (this.state === "closed" || !this.options.reconnect) { this._setState("closed"); return; }
    this._setState("disconnected");
    // Exponential backoff with jitter: [d/2, d), d doubling up to maxDelay.
    const d = Math.min(this.options.maxDelay, this.options.minDelay * 2 ** this.attempt);
    this.attempt++;
    this.retryTimer = setTimeout(() => this._open(), d / 2 + Math.random() * d / 2);
  }

  _scheduleRefresh(expires) {
    clearTimeout(this.refreshTimer);
    if (!expires || !this.options.getToken) return;
    const left = expires * 1000 - Date.now();
    const wait = Math.max(0, left - Math.min(this.options.refreshMargin, left / 2));
    this.refreshTimer = setTimeout(async () => {
      try {
        const token = await this.options.getToken();
        const r = await this._ask({ op: "refresh", token }, true);
        this._scheduleRefresh(r.expires);
      } catch (e) { this.onerror(e); }
    }, wait);
  }

  _id() { return "c" + (this.nextId++); }

  _live() { return this.ws && this.ws.readyState === WebSocket.OPEN; }

  _sendNow(frame) { this.ws.send(JSON.stringify(frame)); }

  // _send sends a frame now, or holds it until reconnected.
  _send(frame, ask) {
    if (this.state === "connected" && this._live()) { this._sendNow(frame); return; }
    if (this.state === "closed") throw new Error("herald: closed");
    if (this.buffer.length >= this.options.bufferLimit) throw new Error("herald: disconnected and " + this.options.bufferLimit + " frames held already");
    this.buffer.push({ frame, ask });
  }

  // _ask sends a frame with an id and resolves with the answer that echoes
  // it; now sends it on the socket being logged in (connect, resubscribe).
  _ask(frame, now) {
    frame.id = frame.id || this._id();
    return new Promise((resolve, reject) => {
      this.waiting.set(String(frame.id), { resolve, reject });
      try {
        if (now) this.ws.send(JSON.stringify(frame)); else this._send(frame, true);
      } catch (e) { this.waiting.delete(String(frame.id)); reject(e); }
    });
  }

  _frame(f, epoch) {
    switch (f.op) {
      case "message": {
        f.ack = () => { if (epoch === this.epoch) this.ws.send(JSON.stringify({ op: "ack", tag: f.tag })); };
        f.nack = (requeue = true) => { if (epoch === this.epoch) this.ws.send(JSON.stringify({ op: "nack", tag: f.tag, requeue })); };
        if (f.sub === "$user") { this._userMessage(f); return; }
        const s = this.subs.get(f.sub);
        if (s && typeof f.offset === "number") s.lastOffset = f.offset;
        if (s) s.cb(f); else if (f.sub === "$reply" && this.replyHandler) this.replyHandler(f);
        return;
      }
      case "join": case "leave":
        for (const s of this.subs.values()) {
          const h = s.events[f.op === "join" ? "onjoin" : "onleave"];
          if (h && s.channel === f.channel) h(f);
        }
        return;
      case "error": {
        const w = f.id !== undefined && this.waiting.get(String(f.id));
        if (w) { this.waiting.delete(String(f.id)); w.reject(Object.assign(new Error(f.code + " " + f.message), { code: f.code })); return; }
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

  async _subscribeFrame(id, s) {
    const frame = Object.assign({ op: "subscribe" }, s.what, { id });
    // A stream subscription resumes after the last offset it saw.
    if (s.what.stream !== undefined && s.lastOffset !== undefined) frame.offset = s.lastOffset + 1;
    const r = await this._ask(frame, true);
    if (s.events.onsubscribed) s.events.onsubscribed(r);
    if (s.events.onpresence && s.channel) {
      // Joins and leaves missed while disconnected: start from the set.
      const p = await this._ask({ op: "presence", channel: s.channel }, true);
      s.events.onpresence(p.clients);
    }
    return r;
  }

  // subscribe({queue}) competes with the queue's other consumers;
  // subscribe({exchange, key}) gets every matching message (broadcast);
  // subscribe({stream, offset}) reads a stream from offset ("first",
  // "last", "next", a number, an interval such as "1h"); its messages
  // carry m.offset. Options: ack "auto" (default) or "client" (call
  // m.ack()), prefetch; presence: true joins the channel's presence set
  // (the channel: "<exchange>/<key>", or a stream's name) (info: a JSON
  // value shown with it), join_leave: true gets
  // events.onjoin / events.onleave; events.onpresence gets the set after
  // every (re)subscribe; events.onsubscribed the server's answer.
  async subscribe(what, cb, events = {}) {
    const id = what.id || this._id();
    const s = { what: Object.assign({}, what, { id }), cb, events,
      channel: what.exchange !== undefined ? Herald.channel(what.exchange, what.key || "")
        : what.stream !== undefined ? what.stream : null };
    this.subs.set(id, s);
    if (this.state !== "connected") return id; // subscribed on (re)connect
    try {
      await this._subscribeFrame(id, s);
    } catch (e) {
      this.subs.delete(id);
      throw e;
    }
    return id;
  }

  unsubscribe(id) {
    this.subs.delete(id);
    if (this.state !== "connected") return Promise.resolve();
    return this._ask({ op: "unsubscribe", id });
  }

  // presence lists a channel's clients [{client, user, info}].
  async presence(channel) {
    const r = await this._ask({ op: "presence", channel });
    return r.clients;
  }

  _publishFrame(op, fields, body, opts) {
    const frame = Object.assign({ op }, fields, { body: String(body),
      properties: opts.properties || {}, headers: opts.headers, reply_to: opts.reply_to, encoding: opts.encoding });
    if (opts.confirm) { frame.confirm = true; return this._ask(frame); }
    try { this._send(frame); } catch (e) { return Promise.reject(e); }
    return Promise.resolve();
  }

  // publish sends body (a string) to exchange with routing key; with
  // {confirm: true} it resolves once the broker has routed it (and, for a
  // persistent message, properties {delivery_mode: 2}, that a durable
  // queue took, once it is on disk).
  publish(exchange, key, body, opts = {}) {
    return this._publishFrame("publish", { exchange, key }, body, opts);
  }

  // send sends body to every socket of user `to` (a "message" with sub
  // "$user" there, properties.user_id this user). With {confirm: true} it
  // resolves once Herald has it; it never says whether anyone got it.
  send(to, body, opts = {}) {
    return this._publishFrame("send", { to }, body, opts);
  }

  // onUser calls cb with every message sent to this user; it returns a
  // function that removes cb.
  onUser(cb) {
    this.userHandlers.add(cb);
    return () => this.userHandlers.delete(cb);
  }

  _userMessage(m) {
    if (m.properties && m.properties.type === HeraldRTC.type) { this._rtcSignal(m); return; }
    for (const cb of this.userHandlers) cb(m);
  }

  // request publishes with a reply address and a correlation id and
  // resolves with the reply message (or rejects after timeout ms).
  async request(exchange, key, body, opts = {}) {
    if (!this.replyAddress) {
      const r = await this._ask({ op: "reply_address" });
      this.replyAddress = r.address;
      this.replyHandler = (m) => {
        const c = this.calls.get(m.properties.correlation_id);
        if (!c) return;
        this.calls.delete(m.properties.correlation_id);
        clearTimeout(c.timer);
        c.resolve(m);
      };
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

  // rtc opens a WebRTC session with user peerId, signalled through
  // per-user messages: const call = h.rtc("bob"); const dc =
  // call.pc.createDataChannel("chat"); await call.start().
  rtc(peerId, config = {}) {
    const s = new HeraldRTC(this, peerId, HeraldRTC.newId(), config);
    this.rtcSessions.set(s.id, s);
    return s;
  }

  // onRtc calls cb(session) for every incoming offer; cb calls
  // session.accept() (after setting session.pc.ondatachannel) or
  // session.reject().
  onRtc(cb, config = {}) {
    this.rtcConfig = config;
    this.rtcHandlers.add(cb);
    return () => this.rtcHandlers.delete(cb);
  }

  _rtcSignal(m) {
    let sig;
    try { sig = JSON.parse(m.body); } catch (e) { return; }
    const from = m.properties.user_id;
    let s = this.rtcSessions.get(sig.session);
    if (!s && sig.kind === "offer") {
      s = new HeraldRTC(this, from, sig.session, this.rtcConfig || {});
      s.offer = sig;
      s.peerClient = sig.client;
      this.rtcSessions.set(s.id, s);
      for (const cb of this.rtcHandlers) cb(s);
      return;
    }
    if (s && s.peer === from) s._signal(sig);
  }

  close() {
    this._setState("closed");
    clearTimeout(this.retryTimer);
    clearTimeout(this.refreshTimer);
    clearInterval(this.pingTimer);
    if (this.ws) this.ws.close(1000, "bye");
  }
}

// HeraldRTC is one WebRTC session: an RTCPeerConnection whose offer,
// answer and ICE candidates travel as per-user messages (properties.type
// "herald.rtc", JSON bodies {session, client, kind, sdp | candidate}).
class HeraldRTC {
  static get type() { return "herald.rtc"; }
  static newId() { return Math.random().toString(36).slice(2) + Date.now().toString(36); }

  constructor(h, peer, id, config) {
    this.h = h;
    this.peer = peer;
    this.id = id;
    this.peerClient = null; // the peer socket that answered: others are ignored
    this.pending = [];      // ICE candidates that came before the remote description
    this.pc = new RTCPeerConnection(config);
    this.pc.addEventListener("icecandidate", (e) => {
      if (e.candidate) this._out({ kind: "ice", candidate: e.candidate.toJSON() });
    });
  }

  _out(sig) {
    sig.session = this.id;
    sig.client = this.h.client;
    return this.h.send(this.peer, JSON.stringify(sig), { properties: { type: HeraldRTC.type } })
      .catch((e) => this.h.onerror(e));
  }

  // start sends the offer (create the data channels or tracks first).
  async start() {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await this._out({ kind: "offer", sdp: this.pc.localDescription.toJSON() });
  }

  // accept answers an incoming offer.
  async accept() {
    await this.pc.setRemoteDescription(this.offer.sdp);
    await this._flush();
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    await this._out({ kind: "answer", sdp: this.pc.localDescription.toJSON() });
  }

  reject() { this._out({ kind: "bye" }); this._end(); }

  close() { this._out({ kind: "bye" }); this._end(); }

  _end() { this.pc.close(); this.h.rtcSessions.delete(this.id); }

  _lost() {} // the socket dropped: the peer connection carries on alone

  async _flush() {
    const p = this.pending;
    this.pending = [];
    for (const c of p) await this.pc.addIceCandidate(c);
  }

  async _signal(sig) {
    if (this.peerClient && sig.client !== this.peerClient) return;
    try {
      switch (sig.kind) {
        case "answer":
          this.peerClient = sig.client;
          await this.pc.setRemoteDescription(sig.sdp);
          await this._flush();
          return;
        case "ice":
          if (this.pc.remoteDescription) await this.pc.addIceCandidate(sig.candidate);
          else this.pending.push(sig.candidate);
          return;
        case "bye":
          this._end();
      }
    } catch (e) { this.h.onerror(e); }
  }
}

if (typeof window !== "undefined") { window.Herald = Herald; window.HeraldRTC = HeraldRTC; }
if (typeof module !== "undefined") module.exports = { Herald, HeraldRTC };
