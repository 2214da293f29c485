// Run by console_test.go with node: unit tests of the console's pure
// modules, and its API client driven against the real server.
//   node console_test.mjs <dir holding js/ with package.json type module> <base URL>
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import path from "node:path";

const [dir, base] = process.argv.slice(2);
const mod = (p) => import(pathToFileURL(path.join(dir, p)).href);

const { fmtInt, fmtRate, fmtBytes, niceMax, parseArgs, features, exchangeLabel } = await mod("js/format.js");
const { RateTracker, applyRates, Series } = await mod("js/rates.js");
const { api, apiPath, basicAuth, exchangeSeg, ApiError } = await mod("js/api.js");
// app.js links every page module: importing it checks that each import
// names an export that exists. It starts nothing without a document.
const { route, navFor } = await mod("js/app.js");
const { uptimeText } = await mod("js/pages/node.js");
const { limitRows } = await mod("js/pages/admin.js");
const { errorRateText, repliesText } = await mod("js/pages/services.js");
const { offsetsText, streamHref } = await mod("js/pages/streams.js");

let passed = 0, failed = 0;
async function test(name, fn) {
  try {
    await fn();
    passed++;
  } catch (e) {
    failed++;
    console.error(`FAIL ${name}: ${e.stack || e}`);
    process.exitCode = 1;
  }
}

await test("format", () => {
  assert.equal(fmtInt(1234567), "1,234,567");
  assert.equal(fmtInt(undefined), "–");
  assert.equal(fmtRate(0), "0.0/s");
  assert.equal(fmtRate(2.345), "2.3/s");
  assert.equal(fmtRate(1234.4), "1,234/s");
  assert.equal(fmtRate(null), "–");
  assert.equal(fmtBytes(512), "512 B");
  assert.equal(fmtBytes(1536), "1.5 KiB");
  assert.equal(niceMax(0), 1);
  assert.equal(niceMax(3), 5);
  assert.equal(niceMax(120), 200);
  assert.equal(exchangeLabel(""), "(AMQP default)");
  assert.deepEqual(features({ durable: true, auto_delete: false, arguments: { "x-max-length": 5 } }).map((f) => f[0]), ["D", "Args"]);
});

await test("parseArgs", () => {
  assert.deepEqual(parseArgs("x-message-ttl = 60000\n\n# comment\nx-dead-letter-exchange = dlx\nflag=true\nq = \"42\"\nratio = 0.5"),
    { "x-message-ttl": 60000, "x-dead-letter-exchange": "dlx", flag: true, q: "42", ratio: 0.5 });
  assert.deepEqual(parseArgs(""), {});
  assert.throws(() => parseArgs("novalue"), /line 1/);
});

await test("rates", () => {
  const tr = new RateTracker();
  assert.equal(tr.update("q", 1000, { publish: 10, deliver_get: 0, ack: 0 }), null);
  assert.deepEqual(tr.update("q", 3000, { publish: 30, deliver_get: 4, ack: 2 }), { publish: 10, deliver_get: 2, ack: 1 });
  // Redeclared queue: the counter restarted.
  assert.deepEqual(tr.update("q", 5000, { publish: 6, deliver_get: 0, ack: 0 }), { publish: 3, deliver_get: 0, ack: 0 });
  // Same time twice: no division by zero.
  assert.equal(tr.update("q", 5000, { publish: 6 }), null);

  const t2 = new RateTracker();
  const qs = (a, b) => [
    { vhost: "/", name: "a", message_stats: { publish: a, deliver_get: 0, ack: 0 } },
    { vhost: "/", name: "b", message_stats: { publish: b, deliver_get: 0, ack: 0 } },
  ];
  assert.equal(applyRates(t2, qs(0, 0), 0), null);
  const list = qs(10, 4);
  assert.deepEqual(applyRates(t2, list, 2000), { publish: 7, deliver_get: 0, ack: 0 });
  assert.equal(list[0].rates.publish, 5);
  // A deleted queue is forgotten, and does not make the total negative.
  assert.deepEqual(applyRates(t2, qs(10, 4).slice(0, 1), 4000), { publish: 0, deliver_get: 0, ack: 0 });
  assert.equal(t2.prev.size, 1);
  assert.deepEqual(applyRates(t2, [], 6000), { publish: 0, deliver_get: 0, ack: 0 });

  const s = new Series(3);
  for (let i = 0; i < 5; i++) s.push(i, { x: i });
  assert.deepEqual(s.points.map((p) => p.t), [2, 3, 4]);
});

await test("route", () => {
  assert.equal(route("").page.nav, "overview");
  assert.equal(route("#/queues").page.nav, "queues");
  const q = route("#/queues/%2F/a%2Fb%20c");
  assert.deepEqual(q.params, { vhost: "/", name: "a/b c" });
  assert.equal(q.page.title(q.params), "Queue a/b c");
  const e = route("#/exchanges/%2F/amq.default");
  assert.deepEqual(e.params, { vhost: "/", name: "" });
  assert.equal(route("#/queues/%E0%A4%A/x").page.nav, "overview"); // malformed escape
  assert.deepEqual(route("#/presence/%2F/amq.topic%2Froom1").params, { vhost: "/", channel: "amq.topic/room1" });
  const st = route("#/streams/%2F/ev%2Fents");
  assert.equal(st.page.nav, "streams");
  assert.deepEqual(st.params, { vhost: "/", name: "ev/ents" });
  assert.equal(st.page.title(st.params), "Stream ev/ents");
  for (const p of ["streams", "connections", "channels", "node", "services", "presence", "users", "vhosts", "permissions", "limits", "policies", "definitions"]) {
    assert.equal(route("#/" + p).page.nav, p);
  }
});

await test("nav by tags", () => {
  const keys = (tags) => navFor(tags).map((n) => n[0]);
  assert.deepEqual(keys(["management"]), ["overview", "connections", "channels", "exchanges", "queues", "streams", "services", "node", "presence"]);
  assert.ok(keys(["policymaker"]).includes("policies"));
  assert.ok(!keys(["policymaker"]).includes("users"));
  assert.deepEqual(keys(["administrator"]).slice(-6), ["users", "vhosts", "permissions", "limits", "policies", "definitions"]);
  assert.ok(!keys(["policymaker"]).includes("limits"));
  assert.equal(uptimeText(0), "0m");
  assert.equal(uptimeText((26 * 60 + 5) * 60000), "1d 2h 5m");
});

await test("services text", () => {
  assert.equal(repliesText({ NOT_FOUND: 2, OK: 1000, INTERNAL: 1 }), "OK 1,000 · INTERNAL 1 · NOT_FOUND 2");
  assert.equal(repliesText({}), "–");
  assert.equal(errorRateText({ replies: {}, error_rate: 0 }), "–");
  assert.equal(errorRateText({ replies: { OK: 3, INTERNAL: 1 }, error_rate: 0.25 }), "25.0%");
});

await test("streams text", () => {
  assert.equal(offsetsText({ first_offset: 0, last_offset: 41 }), "0 – 41");
  assert.equal(offsetsText({ first_offset: 1500, last_offset: 1234567 }), "1,500 – 1,234,567");
  assert.equal(offsetsText({ first_offset: 0, last_offset: -1 }), "empty");
  assert.equal(streamHref("/", "a/b"), "#/streams/%2F/a%2Fb");
});

await test("limitRows", () => {
  assert.deepEqual(limitRows([{ vhost: "/", value: { "max-connections": 10, "max-queues": 0 } }], [{ user: "bob", value: { "max-connections": -1 } }]), [
    { kind: "vhost", target: "/", name: "max-connections", value: 10 },
    { kind: "vhost", target: "/", name: "max-queues", value: 0 },
    { kind: "user", target: "bob", name: "max-connections", value: -1 },
  ]);
  assert.deepEqual(limitRows([], undefined), []);
});

await test("paths", () => {
  assert.equal(apiPath("queues", "/", "a b"), "/api/queues/%2F/a%20b");
  assert.equal(exchangeSeg(""), "amq.default");
  assert.equal(basicAuth("guest", "guest"), "Basic Z3Vlc3Q6Z3Vlc3Q=");
  assert.equal(basicAuth("jürgen", "p"), "Basic " + Buffer.from("jürgen:p").toString("base64"));
});

// The API client against the real server: the console's own requests.
if (base) {
  const realFetch = globalThis.fetch;
  globalThis.fetch = (p, init) => realFetch(base + p, init);
  const guest = basicAuth("guest", "guest");
  const call = (m, p, b) => api(m, p, b, guest);

  await test("api login", async () => {
    await assert.rejects(api("GET", "/api/overview", undefined, basicAuth("guest", "wrong")), (e) => e instanceof ApiError && e.status === 401);
    const ov = await call("GET", "/api/overview");
    assert.equal(typeof ov.queue_totals.messages_ready, "number");
    assert.equal(typeof ov.object_totals.queues, "number");
  });

  await test("api queue lifecycle", async () => {
    const q = "console test/q";
    assert.equal(await call("PUT", apiPath("queues", "/", q), { durable: false, auto_delete: false, arguments: parseArgs("x-max-length = 100") }), null);
    const tracker = new RateTracker();
    applyRates(tracker, await call("GET", "/api/queues"), 0);
    for (let i = 0; i < 3; i++) {
      const r = await call("POST", apiPath("exchanges", "/", exchangeSeg(""), "publish"),
        { routing_key: q, payload: `m${i}`, payload_encoding: "string", properties: { delivery_mode: 2, headers: { n: i } } });
      assert.deepEqual(r, { routed: true });
    }
    const qs = await call("GET", "/api/queues");
    const total = applyRates(tracker, qs, 1000);
    assert.equal(total.publish, 3);
    const mine = qs.find((x) => x.name === q);
    assert.equal(mine.messages_ready, 3);
    assert.deepEqual(mine.arguments, { "x-max-length": 100 });

    const got = await call("POST", apiPath("queues", "/", q) + "/get", { count: 2, ackmode: "ack_requeue_false", encoding: "auto", truncate: 50000 });
    assert.deepEqual(got.map((m) => m.payload), ["m0", "m1"]);
    assert.equal(got[0].properties.headers.n, 0);
    assert.equal(got[1].message_count, 1);

    await call("POST", apiPath("bindings", "/", "e", "amq.topic", "q", q), { routing_key: "a.*", arguments: {} });
    const bs = await call("GET", apiPath("bindings", "/"));
    assert.ok(bs.some((b) => b.source === "amq.topic" && b.destination === q && b.routing_key === "a.*"));

    assert.equal(await call("DELETE", apiPath("queues", "/", q) + "/contents"), null);
    assert.equal((await call("GET", apiPath("queues", "/", q))).messages, 0);
    assert.equal(await call("DELETE", apiPath("queues", "/", q)), null);
    await assert.rejects(call("GET", apiPath("queues", "/", q)), (e) => e.status === 404);
  });

  await test("api exchange lifecycle", async () => {
    await call("PUT", apiPath("exchanges", "/", "console-x"), { type: "fanout", durable: true, auto_delete: false, internal: false, arguments: {} });
    const r = await call("POST", apiPath("exchanges", "/", "console-x", "publish"), { routing_key: "", payload: "x", payload_encoding: "string", properties: { delivery_mode: 1 } });
    assert.deepEqual(r, { routed: false });
    await assert.rejects(call("PUT", apiPath("exchanges", "/", "bad"), { type: "nope" }), (e) => e.status >= 400 && e.message.length > 0);
    await call("DELETE", apiPath("exchanges", "/", "console-x"));
    const alarms = await call("GET", "/api/health/checks/alarms");
    assert.equal(alarms.status, "ok");
  });
}

// The whole app in a fake DOM (no browser here): log in, then mount
// every page on the real server's data and use its forms.
if (base) {
  const { install } = await import("./fakedom.mjs");
  const { Element } = install();
  globalThis.location = { hash: "" };
  const { App } = await mod("js/app.js");
  const { session } = await mod("js/api.js");
  const call = (m, p, b) => api(m, p, b, basicAuth("guest", "guest"));
  const root = new Element("div");
  const app = new App(root);
  const flashes = [];
  const flash = app.flash.bind(app);
  app.flash = (msg, bad) => {
    flashes.push([msg, !!bad]);
    flash(msg, bad);
  };
  const noErrors = () => assert.deepEqual(flashes.filter((f) => f[1]), []);
  const until = async (cond, what) => {
    for (let i = 0; i < 300 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(cond(), "timed out waiting for " + what);
  };
  const show = async (hash) => {
    location.hash = hash;
    app.mountPage();
    await app.updatePage();
    return root.textContent;
  };
  const byName = (form, n) => form.elements.namedItem(n);
  const formWith = (name) => root.querySelectorAll("form").find((f) => byName(f, name));

  await test("app login", async () => {
    app.start();
    assert.match(root.textContent, /Log in/);
    const form = root.querySelector("form");
    byName(form, "user").value = "guest";
    byName(form, "pass").value = "wrong";
    await form.dispatch("submit");
    assert.match(root.textContent, /Login failed/);
    byName(form, "pass").value = "guest";
    await form.dispatch("submit");
    assert.equal(session().user, "guest");
    await until(() => app.state.updated > 0 && !app.busy, "first poll");
    assert.match(root.textContent, /Queued messages/);
    assert.match(root.textContent, /updated/);
  });

  await test("app pages", async () => {
    await call("PUT", apiPath("queues", "/", "pages-q"), {});
    await call("POST", apiPath("exchanges", "/", "amq.default", "publish"), { routing_key: "pages-q", payload: "hello", payload_encoding: "string", properties: {} });
    await app.tick();
    let text = await show("#/");
    assert.match(text, /Virtual hosts/);
    text = await show("#/queues");
    assert.match(text, /pages-q/);
    assert.match(text, /of \d+ queues/);

    text = await show("#/queues/%2F/pages-q");
    assert.match(text, /Get messages/);
    const getForm = formWith("ackmode");
    byName(getForm, "ackmode").value = "ack_requeue_false";
    await getForm.dispatch("submit");
    assert.match(root.textContent, /hello/);
    assert.equal((await call("GET", apiPath("queues", "/", "pages-q"))).messages, 0);

    const pub = formWith("payload");
    byName(pub, "payload").value = "from the console";
    byName(pub, "props").value = "correlation_id = 7";
    byName(pub, "headers").value = "tenant = acme";
    await pub.dispatch("submit");
    const [m] = await call("POST", apiPath("queues", "/", "pages-q") + "/get", { count: 1, ackmode: "ack_requeue_false" });
    assert.equal(m.payload, "from the console");
    assert.equal(m.properties.correlation_id, "7");
    assert.equal(m.properties.headers.tenant, "acme");

    text = await show("#/exchanges");
    assert.match(text, /amq\.topic/);
    assert.match(text, /\(AMQP default\)/);
    const decl = formWith("type");
    byName(decl, "name").value = "pages-x";
    byName(decl, "type").value = "topic";
    await decl.dispatch("submit");
    assert.equal((await call("GET", apiPath("exchanges", "/", "pages-x"))).type, "topic");

    text = await show("#/exchanges/%2F/pages-x");
    assert.match(text, /Bindings from this exchange/);
    const bind = formWith("other");
    byName(bind, "other").value = "pages-q";
    byName(bind, "key").value = "a.#";
    await bind.dispatch("submit");
    await app.updatePage();
    assert.match(root.textContent, /a\.#/);
    text = await show("#/exchanges/%2F/amq.default");
    assert.match(text, /default exchange routes/);

    await show("#/queues/%2F/pages-q");
    await root.querySelectorAll("button").find((b) => b.textContent === "Purge messages").dispatch("click");
    await formWith("if_unused").dispatch("submit");
    assert.equal(location.hash, "#/queues");
    await assert.rejects(call("GET", apiPath("queues", "/", "pages-q")), (e) => e.status === 404);
    await show("#/exchanges/%2F/pages-x");
    await root.querySelectorAll("button").find((b) => b.textContent === "Delete exchange").dispatch("click");
    await assert.rejects(call("GET", apiPath("exchanges", "/", "pages-x")), (e) => e.status === 404);
    noErrors();
    assert.ok(flashes.some(([m]) => m === "Queue pages-q purged."), JSON.stringify(flashes));
    assert.ok(flashes.some(([m]) => m === "Message published."), JSON.stringify(flashes));
    text = await show("#/queues/%2F/no-such-queue");
    assert.match(text, /does not exist/);
  });

  await test("app operator pages", async () => {
    await until(() => app.state.tags.includes("administrator"), "whoami tags");
    app.renderNav(app.state.tags);
    assert.match(root.textContent, /Definitions/);
    assert.match(root.textContent, /Virtual hosts/);

    let text = await show("#/channels");
    assert.match(text, /console-test-conn \(1\)/);
    assert.match(text, /confirm/);

    // Connections: the fake one the Go test registered; closing sends the reason.
    // Services: the instance the Go test registered, with its statistics.
    text = await show("#/services");
    assert.match(text, /calc/);
    assert.match(text, /calc-1/);
    assert.match(text, /1 of 1 services/);
    assert.match(text, /OK 1 · NOT_FOUND 1/);
    assert.match(text, /errors 50\.0%/);

    text = await show("#/connections");
    assert.match(text, /console-test-conn/);
    assert.match(text, /of 1 connections/);
    const reason = root.querySelectorAll("input").find((i) => i.getAttribute("name") === "reason");
    reason.value = "maintenance window";
    await root.querySelectorAll("button").find((b) => b.textContent === "Close").dispatch("click");
    const closed = await (await fetch("/test/closed")).text();
    assert.equal(closed, "maintenance window");
    assert.ok(flashes.some(([m]) => m === "Connection console-test-conn closed."), JSON.stringify(flashes));

    text = await show("#/node");
    assert.match(text, /Memory/);
    assert.match(text, /Goroutines/);
    assert.match(text, /herald@/);

    // Users: add with password and tags, log in as them, delete.
    await show("#/users");
    let f = formWith("tags");
    byName(f, "user").value = "console-user";
    byName(f, "password").value = "pw1";
    byName(f, "tags").value = "management, policymaker";
    await f.dispatch("submit");
    const u = await call("GET", apiPath("users", "console-user"));
    assert.deepEqual([...u.tags].sort(), ["management", "policymaker"]);
    const me = await api("GET", "/api/whoami", undefined, basicAuth("console-user", "pw1")).catch((e) => e);
    // guest-only loopback rules do not apply to other users.
    assert.equal(me.name, "console-user");
    await app.updatePage();
    assert.match(root.textContent, /console-user/);

    // Virtual hosts: add one.
    await show("#/vhosts");
    f = formWith("name");
    byName(f, "name").value = "console-vh";
    await f.dispatch("submit");
    for (let i = 0; i < 300 && !app.state.vhosts.includes("console-vh"); i++) await app.tick().then(() => new Promise((r) => setTimeout(r, 10)));
    assert.ok(app.state.vhosts.includes("console-vh"));

    // Permissions: set and clear.
    await show("#/permissions");
    f = formWith("configure");
    byName(f, "user").value = "console-user";
    byName(f, "vhost").value = "console-vh";
    byName(f, "configure").value = "^c";
    await f.dispatch("submit");
    const perm = await call("GET", apiPath("permissions", "console-vh", "console-user"));
    assert.equal(perm.configure, "^c");
    await app.updatePage();
    assert.match(root.textContent, /console-vh/);
    await root.querySelectorAll("button").find((b) => b.textContent === "Clear").dispatch("click");
    await assert.rejects(call("GET", apiPath("permissions", "console-vh", "console-user")), (e) => e.status === 404);

    // Limits: a vhost limit and a user limit, set and cleared.
    let text2 = await show("#/limits");
    assert.match(text2, /No limits/);
    f = formWith("kind");
    byName(f, "kind").value = "vhost";
    await byName(f, "kind").dispatch("change");
    byName(f, "vhost").value = "console-vh";
    byName(f, "name").value = "max-queues";
    byName(f, "value").value = "7";
    await f.dispatch("submit");
    assert.deepEqual(await call("GET", "/api/vhost-limits/console-vh"), [{ vhost: "console-vh", value: { "max-queues": 7 } }]);
    byName(f, "kind").value = "user";
    await byName(f, "kind").dispatch("change");
    assert.deepEqual(byName(f, "name").options.map((o) => o.value), ["max-connections"]);
    byName(f, "user").value = "console-user";
    byName(f, "value").value = "0";
    await f.dispatch("submit");
    assert.deepEqual(await call("GET", "/api/user-limits/console-user"), [{ user: "console-user", value: { "max-connections": 0 } }]);
    await app.updatePage();
    assert.match(root.textContent, /max-queues/);
    assert.match(root.textContent, /0 \(forbidden\)/);
    for (const b of root.querySelectorAll("button").filter((b) => b.textContent === "Clear")) await b.dispatch("click");
    assert.deepEqual(await call("GET", "/api/vhost-limits"), []);
    assert.deepEqual(await call("GET", "/api/user-limits"), []);

    // Virtual hosts: delete the one added above.
    await show("#/vhosts");
    await root.querySelectorAll("button").filter((b) => b.textContent === "Delete").find((b) => b.parentNode.parentNode.textContent.startsWith("console-vh")).dispatch("click");
    await assert.rejects(call("GET", apiPath("vhosts", "console-vh")), (e) => e.status === 404);
    assert.ok(flashes.some(([m]) => m === "Virtual host console-vh deleted."), JSON.stringify(flashes));

    // Policies: add, edit, delete.
    await show("#/policies");
    f = formWith("pattern");
    byName(f, "name").value = "cap";
    byName(f, "pattern").value = "^orders";
    byName(f, "apply-to").value = "queues";
    byName(f, "definition").value = "max-length = 10";
    await f.dispatch("submit");
    let pol = await call("GET", apiPath("policies", "/", "cap"));
    assert.equal(pol.definition["max-length"], 10);
    await app.updatePage();
    await root.querySelectorAll("button").find((b) => b.textContent === "Edit").dispatch("click");
    assert.equal(byName(f, "definition").value, "max-length = 10");
    byName(f, "definition").value = "max-length = 20";
    await f.dispatch("submit");
    pol = await call("GET", apiPath("policies", "/", "cap"));
    assert.equal(pol.definition["max-length"], 20);
    await app.updatePage();
    await root.querySelectorAll("button").find((b) => b.textContent === "Delete").dispatch("click");
    await assert.rejects(call("GET", apiPath("policies", "/", "cap")), (e) => e.status === 404);

    // Definitions: export, then import a file that adds a queue.
    await show("#/definitions");
    f = formWith("file");
    await assert.doesNotReject(root.querySelectorAll("form")[0].dispatch("submit"));
    assert.ok(flashes.some(([m]) => m === "Definitions exported."), JSON.stringify(flashes));
    const doc = { queues: [{ name: "imported-q", vhost: "/", durable: true, auto_delete: false, arguments: {} }] };
    f.elements.file.files = [new Blob([JSON.stringify(doc)])];
    await f.dispatch("submit");
    assert.equal((await call("GET", apiPath("queues", "/", "imported-q"))).name, "imported-q");
    f.elements.file.files = [Object.assign(new Blob(["{nope"]), { name: "bad.json" })];
    await f.dispatch("submit");
    assert.ok(flashes.some(([m, bad]) => bad && /bad\.json is not JSON/.test(m)), JSON.stringify(flashes));
    flashes.splice(0, flashes.length, ...flashes.filter(([m]) => !/bad\.json/.test(m)));

    await call("DELETE", apiPath("users", "console-user"));
    await call("DELETE", apiPath("queues", "/", "imported-q"));
    noErrors();
  });

  await test("app logout", async () => {
    root.querySelectorAll("button").find((b) => b.textContent === "Log out").dispatch("click");
    assert.equal(session(), null);
    assert.match(root.textContent, /Log in/);
    assert.equal(app.timer, 0);
  });
}

console.log(`node: ${passed} passed, ${failed} failed`);
// Flash messages hold timers; do not wait for them.
process.exit(process.exitCode || 0);
