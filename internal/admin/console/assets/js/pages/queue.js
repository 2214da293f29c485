// One queue: its figures and depth over time, bindings, get messages,
// peek at messages (and delete one), move messages to another queue,
// publish to it, bind it, purge and delete it.

import { api, apiPath } from "../api.js";
import { color, LineChart } from "../chart.js";
import { h, replace, val } from "../dom.js";
import { exchangeLabel, fmtBytes, fmtInt, fmtRate } from "../format.js";
import { argsText, bindForm, detailsList, exchangeHref, featureTags, publishForm, SortTable, submitting, unbindButton } from "./common.js";
import { Series } from "../rates.js";

const ACK_MODES = [
  ["ack_requeue_true", "Nack message, requeue true"],
  ["ack_requeue_false", "Automatic ack (removes the messages)"],
  ["reject_requeue_true", "Reject, requeue true"],
  ["reject_requeue_false", "Reject, requeue false (dead-letters them)"],
];

export default {
  nav: "queues",
  title: (p) => `Queue ${p.name}`,
  mount(root, ctx, { vhost, name }) {
    const base = apiPath("queues", vhost, name);
    const info = h("div", {});
    const figures = h("div", {});
    const history = new Series(150);
    const depth = new LineChart({ lines: [
      { key: "ready", label: "Ready", color: color("ready") },
      { key: "unacked", label: "Unacked", color: color("unacked") },
    ] });
    const bindings = new SortTable([
      { label: "From exchange", value: (b) => b.source, cell: (b) => h("a", { href: exchangeHref(b.vhost, b.source) }, exchangeLabel(b.source)) },
      { label: "Routing key", value: (b) => b.routing_key, cell: (b) => h("code", {}, b.routing_key) },
      { label: "Arguments", cell: (b) => argsText(b.arguments) },
      { label: "", cell: (b) => unbindButton(ctx, b) },
    ], { empty: "No bindings." });
    const exchangeNames = h("datalist", { id: "exchange-names" });
    const missing = h("div", {});

    // Get messages.
    const results = h("div", {});
    const getForm = h("form", { class: "grid" },
      h("label", {}, "Ack mode"), h("select", { name: "ackmode" }, ACK_MODES.map(([v, l]) => h("option", { value: v }, l))),
      h("label", {}, "Encoding"), h("select", { name: "encoding" }, h("option", { value: "auto" }, "Auto string / base64"), h("option", { value: "base64" }, "Base64")),
      h("label", {}, "Messages"), h("input", { type: "number", name: "count", value: "1", min: "1", max: "10000" }),
      h("label", {}, "Truncate (bytes)"), h("input", { type: "number", name: "truncate", value: "50000", min: "0" }),
      h("span", {}), h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, "Get messages")));
    getForm.addEventListener("submit", submitting(ctx, getForm, async () => {
      const msgs = await api("POST", base + "/get", {
        count: Number(val(getForm, "count")) || 1, ackmode: val(getForm, "ackmode"),
        encoding: val(getForm, "encoding"), truncate: Number(val(getForm, "truncate")) || 0,
      });
      replace(results, msgs.length ? msgs.map((m, i) => messageView(m, i + 1)) : h("p", { class: "muted" }, "Queue is empty."));
      return null;
    }));

    // Peek (non-destructive), delete one, move to another queue: Herald's
    // own endpoints, not in RabbitMQ's API.
    const peeked = h("div", {});
    const peekForm = h("form", { class: "grid" },
      h("label", {}, "Messages"), h("input", { type: "number", name: "count", value: "10", min: "1", max: "1000" }),
      h("span", {}), h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, "Peek")));
    const peek = async () => {
      const msgs = await api("GET", `${base}/messages?count=${Number(val(peekForm, "count")) || 10}`);
      replace(peeked, msgs.length ? msgs.map((m, i) => messageView(m, i + 1, deleteButton(m))) : h("p", { class: "muted" }, "No ready messages."));
    };
    const deleteButton = (m) => {
      const b = h("button", { class: "danger", type: "button" }, "Delete this message");
      b.addEventListener("click", async () => {
        if (!confirm(`Delete message ${m.id} from ${name}? It is not dead-lettered.`)) return;
        try {
          await api("DELETE", `${base}/messages/${m.id}`);
          ctx.flash(`Message ${m.id} deleted.`);
          await peek();
        } catch (e) {
          ctx.flash(e.message, true);
        }
      });
      return b;
    };
    peekForm.addEventListener("submit", submitting(ctx, peekForm, async () => {
      await peek();
      return null;
    }));
    const moveForm = h("form", { class: "grid" },
      h("label", {}, "To queue"), h("input", { name: "to", required: true, list: "queue-names" }),
      h("label", {}, "Messages"), h("input", { type: "number", name: "count", value: "100", min: "1" }),
      h("span", {}), h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, "Move messages")));
    const queueNames = h("datalist", { id: "queue-names" });
    moveForm.addEventListener("submit", submitting(ctx, moveForm, async () => {
      const to = val(moveForm, "to");
      const r = await api("POST", base + "/move", { to, count: Number(val(moveForm, "count")) || 1 });
      return `Moved ${fmtInt(r.moved)} message(s) to ${to}.` + (r.reason ? ` Stopped: ${r.reason}` : "");
    }));

    const purge = h("button", { class: "danger", type: "button" }, "Purge messages");
    purge.addEventListener("click", async () => {
      if (!confirm(`Remove every ready message from ${name}?`)) return;
      try {
        await api("DELETE", base + "/contents");
        ctx.flash(`Queue ${name} purged.`);
        ctx.refresh();
      } catch (e) {
        ctx.flash(e.message, true);
      }
    });
    const delForm = h("form", { class: "actions" },
      h("label", {}, h("input", { type: "checkbox", name: "if_unused" }), " only if unused"),
      h("label", {}, h("input", { type: "checkbox", name: "if_empty" }), " only if empty"),
      h("button", { class: "danger", type: "submit" }, "Delete queue"));
    delForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!confirm(`Delete the queue ${name} and its messages?`)) return;
      const q = new URLSearchParams();
      if (val(delForm, "if_unused")) q.set("if-unused", "true");
      if (val(delForm, "if_empty")) q.set("if-empty", "true");
      try {
        const qs = q.toString();
        await api("DELETE", base + (qs ? "?" + qs : ""));
        ctx.flash(`Queue ${name} deleted.`);
        ctx.navigate("#/queues");
      } catch (ex) {
        ctx.flash(ex.message, true);
      }
    });

    root.append(
      h("h1", {}, "Queue ", h("span", { class: "mono" }, name), h("span", { class: "sub" }, `in virtual host ${vhost}`)),
      missing,
      h("div", { class: "grid2" },
        h("div", { class: "panel" }, h("h2", {}, "Details"), info),
        h("div", { class: "panel" }, h("h2", {}, "Messages"), figures, depth.el)),
      h("div", { class: "panel" }, h("h2", {}, "Bindings"), bindings.el,
        h("p", { class: "muted" }, "Every queue is also bound to the default exchange with its own name."),
        h("details", {}, h("summary", {}, "Add binding to this queue"), exchangeNames, bindForm(ctx, vhost, { queue: name }))),
      h("details", { class: "panel", open: true }, h("summary", {}, "Get messages"),
        h("p", { class: "muted" }, "Getting messages is destructive with automatic ack or reject-no-requeue; nack requeues them (redelivered)."),
        getForm, results),
      h("details", { class: "panel" }, h("summary", {}, "Peek, delete and move messages"),
        h("p", { class: "muted" }, "Peek shows the next ready messages without taking them. Move republishes ready messages to another queue (for example from a dead-letter queue back to its origin), keeping their properties and headers."),
        peekForm, peeked, h("h3", {}, "Move to another queue"), queueNames, moveForm),
      h("details", { class: "panel" }, h("summary", {}, "Publish message"),
        h("p", { class: "muted" }, "Published through the default exchange with the queue's name as routing key."),
        publishForm(ctx, vhost, "", name)),
      h("div", { class: "panel" }, h("h2", {}, "Purge and delete"), h("div", { class: "actions" }, purge), h("p", {}), delForm),
    );

    let disposed = false;
    return {
      async update(state) {
        const q = state.queues.find((x) => x.vhost === vhost && x.name === name);
        if (!q) {
          replace(missing, h("div", { class: "banner warn" }, "This queue does not exist (any more)."));
          return;
        }
        replace(missing);
        history.push(state.updated, { ready: q.messages_ready, unacked: q.messages_unacknowledged });
        depth.draw(history.points);
        replace(info, detailsList([
          ["Features", featureTags(q).length ? featureTags(q) : "none"],
          ["Type", q.type],
          ["State", q.state],
          ["Arguments", argsText(q.arguments)],
          ["Consumers", fmtInt(q.consumers)],
        ]));
        replace(figures, h("div", { class: "stats" },
          [["Ready", fmtInt(q.messages_ready)], ["Unacked", fmtInt(q.messages_unacknowledged)], ["Total", fmtInt(q.messages)],
            ["Incoming", fmtRate(q.rates?.publish)], ["Deliver / get", fmtRate(q.rates?.deliver_get)], ["Ack", fmtRate(q.rates?.ack)]]
            .map(([l, v]) => h("div", { class: "stat" }, h("div", { class: "v" }, v), h("div", { class: "l" }, l)))));
        const [bs, exs] = await Promise.all([api("GET", apiPath("bindings", vhost)), api("GET", apiPath("exchanges", vhost))]);
        if (disposed) return;
        bindings.setRows(bs.filter((b) => b.destination_type === "queue" && b.destination === name && b.source !== ""));
        const names = exs.map((e) => e.name).filter((n) => n !== "");
        if (exchangeNames.childElementCount !== names.length) replace(exchangeNames, names.map((n) => h("option", { value: n })));
        const qnames = state.queues.filter((x) => x.vhost === vhost && x.name !== name).map((x) => x.name);
        if (queueNames.childElementCount !== qnames.length) replace(queueNames, qnames.map((n) => h("option", { value: n })));
      },
      dispose() {
        disposed = true;
        depth.dispose();
      },
    };
  },
};

// messageView shows one message of a get or a peek (with its actions).
function messageView(m, n, action) {
  const p = { ...(m.properties || {}) };
  const headers = p.headers;
  delete p.headers;
  const pairs = [
    ["Exchange", exchangeLabel(m.exchange)],
    ["Routing key", m.routing_key],
    ["Redelivered", m.redelivered ? "yes" : "no"],
    ["Remaining in queue", fmtInt(m.message_count)],
    ["Payload", `${fmtBytes(m.payload_bytes)}, encoding ${m.payload_encoding}`],
  ];
  for (const [k, v] of Object.entries(p)) pairs.push([k, typeof v === "object" ? JSON.stringify(v) : String(v)]);
  if (headers && Object.keys(headers).length) pairs.push(["headers", JSON.stringify(headers, null, 1)]);
  return h("div", { class: "message" }, h("h3", {}, `Message ${n}`), detailsList(pairs), h("pre", {}, m.payload),
    action ? h("div", { class: "actions" }, action) : null);
}
