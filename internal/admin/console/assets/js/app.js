// The Herald console: login, navigation, and a 2-second poll of the
// management API that every page renders from.

import { api, ApiError, basicAuth, clearSession, saveSession, session } from "./api.js";
import { h, replace, setText } from "./dom.js";
import { applyRates, RateTracker, Series } from "./rates.js";
import overview from "./pages/overview.js";
import queues from "./pages/queues.js";
import queue from "./pages/queue.js";
import { stream, streams } from "./pages/streams.js";
import exchanges from "./pages/exchanges.js";
import exchange from "./pages/exchange.js";
import { channels, connections } from "./pages/connections.js";
import node from "./pages/node.js";
import { presence, presenceChannel } from "./pages/presence.js";
import services from "./pages/services.js";
import { definitions, limits, permissions, policies, users, vhosts } from "./pages/admin.js";

const POLL_MS = 2000;
const HISTORY = 150; // samples: five minutes at one per POLL_MS

// NAV lists the nav entries; tags, when set, are the user tags (any
// one) that may see the entry: the API refuses the others anyway.
const ADMIN = ["administrator"];
export const NAV = [
  ["overview", "#/", "Overview"],
  ["connections", "#/connections", "Connections"],
  ["channels", "#/channels", "Channels"],
  ["exchanges", "#/exchanges", "Exchanges"],
  ["queues", "#/queues", "Queues"],
  ["streams", "#/streams", "Streams"],
  ["services", "#/services", "Services"],
  ["node", "#/node", "Node"],
  ["presence", "#/presence", "Presence"],
  ["users", "#/users", "Users", ADMIN],
  ["vhosts", "#/vhosts", "Virtual hosts", ADMIN],
  ["permissions", "#/permissions", "Permissions", ADMIN],
  ["limits", "#/limits", "Limits", ADMIN],
  ["policies", "#/policies", "Policies", ["administrator", "policymaker"]],
  ["definitions", "#/definitions", "Definitions", ADMIN],
];

// navFor returns the nav entries a user with tags sees.
export function navFor(tags) {
  return NAV.filter(([, , , need]) => !need || need.some((t) => tags.includes(t)));
}

// route maps a location hash to a page and its parameters.
export function route(hash) {
  let segs;
  try {
    segs = hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  } catch {
    segs = [];
  }
  switch (segs[0]) {
    case "queues":
      return segs.length === 3 ? { page: queue, params: { vhost: segs[1], name: segs[2] } } : { page: queues, params: {} };
    case "streams":
      return segs.length === 3 ? { page: stream, params: { vhost: segs[1], name: segs[2] } } : { page: streams, params: {} };
    case "exchanges":
      return segs.length === 3
        ? { page: exchange, params: { vhost: segs[1], name: segs[2] === "amq.default" ? "" : segs[2] } }
        : { page: exchanges, params: {} };
    case "connections":
      return { page: connections, params: {} };
    case "channels":
      return { page: channels, params: {} };
    case "node":
      return { page: node, params: {} };
    case "presence":
      return segs.length === 3 ? { page: presenceChannel, params: { vhost: segs[1], channel: segs[2] } } : { page: presence, params: {} };
    case "services":
      return { page: services, params: {} };
    case "users":
      return { page: users, params: {} };
    case "vhosts":
      return { page: vhosts, params: {} };
    case "permissions":
      return { page: permissions, params: {} };
    case "limits":
      return { page: limits, params: {} };
    case "policies":
      return { page: policies, params: {} };
    case "definitions":
      return { page: definitions, params: {} };
    default:
      return { page: overview, params: {} };
  }
}

export class App {
  constructor(root) {
    this.root = root;
    this.tracker = new RateTracker();
    this.state = {
      overview: null,
      queues: [],
      vhosts: [],
      totalRates: null,
      rateHistory: new Series(HISTORY),
      depthHistory: new Series(HISTORY),
      tags: [], // the user's tags, from /api/whoami
      alarm: null, // text of an active alarm
      error: null, // text of the last polling error
      updated: 0,
    };
    this.page = null;
    this.timer = 0;
    this.busy = false;
    // A click elsewhere closes the Admin menu.
    document.addEventListener("click", (e) => {
      const m = this.navEl?.querySelector(".navmenu");
      if (m && !m.contains(e.target)) m.open = false;
    });
    this.ctx = {
      state: this.state,
      navigate: (hash) => (location.hash = hash),
      flash: (msg, bad) => this.flash(msg, bad),
      refresh: () => this.tick(),
    };
    window.addEventListener("hashchange", () => this.mountPage());
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && session()) this.tick();
    });
  }

  start() {
    if (session()) this.shell();
    else this.login();
  }

  login(message) {
    this.stop();
    this.main = null; // no page until the next login
    const err = h("p", { class: "error-text", text: message || "" });
    const form = h(
      "form",
      { onsubmit: (e) => this.submitLogin(e, form, err) },
      h("label", { for: "user" }, "Username"),
      h("input", { type: "text", id: "user", name: "user", autocomplete: "username", required: true, autofocus: true }),
      h("label", { for: "pass" }, "Password"),
      h("input", { type: "password", id: "pass", name: "pass", autocomplete: "current-password" }),
      h("button", { class: "primary", type: "submit" }, "Log in"),
      err,
    );
    replace(
      this.root,
      h("div", { class: "login" }, h("div", { class: "panel" },
        h("h1", {}, h("img", { src: "/console/favicon.svg", alt: "" }), "Herald"), form)),
    );
    form.elements.user.focus();
  }

  async submitLogin(e, form, err) {
    e.preventDefault();
    const user = form.elements.user.value;
    const header = basicAuth(user, form.elements.pass.value);
    const button = form.querySelector("button");
    button.disabled = true;
    setText(err, "");
    try {
      await api("GET", "/api/overview", undefined, header);
      saveSession(user, header);
      this.shell();
    } catch (ex) {
      setText(err, ex.status === 401 ? "Login failed: wrong username or password (guest works from localhost only)." : ex.message);
      button.disabled = false;
    }
  }

  logout() {
    clearSession();
    this.login();
  }

  shell() {
    this.nav = {};
    this.navEl = h("nav", { class: "nav" });
    this.renderNav([]);
    // The admin entries appear once the tags are known.
    api("GET", "/api/whoami").then((me) => {
      const tags = Array.isArray(me?.tags) ? me.tags : String(me?.tags || "").split(",").filter(Boolean);
      this.state.tags = tags;
      if (this.navEl) this.renderNav(tags);
    }, () => {});
    this.status = h("span", {}, h("span", { class: "dot" }), "connecting…");
    this.banner = h("div", {});
    this.main = h("main", {});
    this.flashes = h("div", { class: "flash", role: "status" });
    replace(
      this.root,
      h("header", { class: "topbar" },
        h("div", { class: "brand" }, h("img", { src: "/console/favicon.svg", alt: "" }), "Herald"),
        this.navEl,
        h("div", { class: "session" }, this.status, h("span", { text: session()?.user || "" }),
          h("button", { type: "button", onclick: () => this.logout() }, "Log out"))),
      this.banner, this.main, this.flashes,
    );
    this.mountPage();
    this.tick();
    this.timer = setInterval(() => this.tick(), POLL_MS);
  }

  // renderNav puts the everyday pages in the bar and the pages only some
  // tags see (administration) in an "Admin" menu, so that the bar fits a
  // 1280-px window.
  renderNav(tags) {
    this.nav = {};
    this.navGroup = null;
    const link = ([k, href, label]) => (this.nav[k] = h("a", { href }, label));
    const entries = navFor(tags);
    const main = entries.filter(([, , , need]) => !need).map(link);
    const admin = entries.filter(([, , , need]) => need);
    let menu = null;
    if (admin.length) {
      this.groupKeys = admin.map(([k]) => k);
      const summary = h("summary", {}, "Admin");
      menu = h("details", { class: "navmenu" }, summary, h("div", { class: "menu" }, admin.map(link)));
      // A choice closes the menu.
      menu.addEventListener("click", (e) => { if (e.target.tagName === "A") menu.open = false; });
      this.navGroup = summary;
    }
    replace(this.navEl, main, menu);
    this.markActive(route(location.hash).page.nav);
  }

  markActive(nav) {
    for (const [k, a] of Object.entries(this.nav)) a.classList.toggle("active", k === nav);
    this.navGroup?.classList.toggle("active", (this.groupKeys || []).includes(nav));
  }

  stop() {
    clearInterval(this.timer);
    this.timer = 0;
    this.page?.view.dispose?.();
    this.page = null;
  }

  mountPage() {
    if (!this.main) return;
    this.page?.view.dispose?.();
    const { page, params } = route(location.hash);
    this.markActive(page.nav);
    this.main.textContent = "";
    document.title = page.title(params) + " · Herald";
    this.page = { view: page.mount(this.main, this.ctx, params) };
    if (this.state.updated) this.updatePage();
  }

  // updatePage renders the current page from the state; pages may fetch
  // more (bindings, exchanges) and so fail on their own.
  async updatePage() {
    const page = this.page;
    try {
      await page?.view.update(this.state);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return this.login("Your credentials were refused; please log in again.");
      // Unreachable server: the banner already says so every tick.
      if (!(e instanceof ApiError && e.status === 0) && page === this.page) this.flash(e.message, true);
    }
  }

  // tick polls the API once; a slow answer makes the next tick skip
  // rather than pile requests up.
  async tick() {
    if (this.busy || document.hidden || !session() || !this.main) return;
    this.busy = true;
    try {
      const [ov, qs, vhosts, alarms] = await Promise.all([
        api("GET", "/api/overview"),
        api("GET", "/api/queues"),
        api("GET", "/api/vhosts"),
        api("GET", "/api/health/checks/alarms").catch((e) => (e.status === 503 ? { status: "failed", reason: e.message, ...e.body } : Promise.reject(e))),
      ]);
      const t = Date.now();
      const s = this.state;
      s.overview = ov;
      s.queues = qs;
      s.vhosts = vhosts.map((v) => v.name);
      s.totalRates = applyRates(this.tracker, qs, t);
      if (s.totalRates) s.rateHistory.push(t, s.totalRates);
      s.depthHistory.push(t, { ready: ov.queue_totals?.messages_ready || 0, unacked: ov.queue_totals?.messages_unacknowledged || 0 });
      s.alarm = alarms.status === "ok" ? null : alarmText(alarms);
      s.error = null;
      s.updated = t;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        clearSession();
        this.busy = false;
        this.login("Your credentials were refused; please log in again.");
        return;
      }
      this.state.error = e.message;
    }
    this.renderStatus();
    if (this.state.updated) await this.updatePage();
    this.busy = false;
  }

  renderStatus() {
    const s = this.state;
    const stale = !!s.error;
    replace(this.status, h("span", { class: stale ? "dot stale" : "dot" }),
      stale ? "disconnected" : "updated " + new Date(s.updated).toLocaleTimeString());
    const banners = [];
    if (s.error) banners.push(h("div", { class: "banner bad" }, `Cannot read the broker: ${s.error}. Retrying every ${POLL_MS / 1000}s.`));
    if (s.alarm) banners.push(h("div", { class: "banner bad" }, `Alarm: ${s.alarm}. Publishers may be blocked.`));
    replace(this.banner, banners);
  }

  flash(msg, bad) {
    const el = h("div", { class: bad ? "bad" : "" }, msg);
    this.flashes.append(el);
    setTimeout(() => el.remove(), bad ? 8000 : 3500);
  }
}

// alarmText describes RabbitMQ's failed alarms check: {"status":"failed",
// "reason":"...","alarms":[{"node":..,"resource":"memory"|"disk_free"}]}.
function alarmText(a) {
  const resources = (a.alarms || []).map((x) => x.resource).filter(Boolean);
  return resources.length ? `resource alarm (${resources.join(", ")})` : a.reason || "resource alarm in effect";
}

if (typeof document !== "undefined" && document.getElementById("app")) {
  new App(document.getElementById("app")).start();
}
