// Pieces shared by the pages: a sortable table, links, and the publish,
// declare and bind forms.

import { api, apiPath, exchangeSeg } from "../api.js";
import { h, replace, val } from "../dom.js";
import { features, parseArgs } from "../format.js";

export const MAX_ROWS = 500; // a table renders at most this many rows

export function queueHref(vhost, name) {
  return `#/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`;
}

export function exchangeHref(vhost, name) {
  return `#/exchanges/${encodeURIComponent(vhost)}/${encodeURIComponent(exchangeSeg(name))}`;
}

export function featureTags(o) {
  return features(o).map(([tag, title]) => h("span", { class: "tag", title }, tag));
}

// SortTable is a table whose column headers sort it. columns:
// [{label, value(row) for sorting, cell(row) -> node or text, num}].
export class SortTable {
  constructor(columns, { sortBy = 0, desc = false, empty = "Nothing here yet.", rowKey } = {}) {
    this.columns = columns;
    this.sortBy = sortBy;
    this.desc = desc;
    this.empty = empty;
    this.rowKey = rowKey;
    this.rows = [];
    this.heads = columns.map((c, i) =>
      h("th", { class: (c.num ? "num " : "") + (c.value ? "sortable" : ""), title: c.title, onclick: c.value ? () => this.sort(i) : null }, c.label));
    this.body = h("tbody", {});
    this.note = h("p", { class: "muted" });
    this.el = h("div", {}, h("table", {}, h("thead", {}, h("tr", {}, this.heads)), this.body), this.note);
  }

  sort(i) {
    if (this.sortBy === i) this.desc = !this.desc;
    else {
      this.sortBy = i;
      this.desc = !!this.columns[i].num; // numbers: biggest first
    }
    this.render();
  }

  setRows(rows) {
    this.rows = rows;
    this.render();
  }

  render() {
    this.heads.forEach((th, i) => {
      th.classList.toggle("sorted", i === this.sortBy);
      th.classList.toggle("desc", i === this.sortBy && this.desc);
    });
    const col = this.columns[this.sortBy];
    const rows = this.rows.slice();
    if (col?.value) {
      rows.sort((a, b) => {
        const x = col.value(a), y = col.value(b);
        const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return this.desc ? -c : c;
      });
    }
    const shown = rows.slice(0, MAX_ROWS);
    if (shown.length === 0) {
      replace(this.body, h("tr", {}, h("td", { class: "empty", colspan: this.columns.length }, this.empty)));
    } else {
      replace(this.body, shown.map((r) => h("tr", {}, this.columns.map((c) => h("td", { class: c.num ? "num" : "" }, c.cell(r))))));
    }
    replace(this.note, rows.length > MAX_ROWS ? `Showing ${MAX_ROWS} of ${rows.length}; filter to narrow down.` : "");
  }
}

// matcher turns a filter text into a predicate on names: a plain text
// matches case-insensitively anywhere, /re/ is a regular expression.
export function matcher(text) {
  const t = text.trim();
  if (t.length > 2 && t.startsWith("/") && t.endsWith("/")) {
    try {
      const re = new RegExp(t.slice(1, -1), "i");
      return (s) => re.test(s);
    } catch {
      return () => false;
    }
  }
  const low = t.toLowerCase();
  return (s) => s.toLowerCase().includes(low);
}

function vhostSelect(vhosts, name = "vhost") {
  return h("select", { name }, vhosts.map((v) => h("option", { value: v }, v)));
}

// submitting runs an async action from a form, disabling its buttons
// meanwhile and flashing the outcome.
export function submitting(ctx, form, action) {
  return async (e) => {
    e.preventDefault();
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      const msg = await action();
      if (msg) ctx.flash(msg);
      ctx.refresh();
    } catch (ex) {
      ctx.flash(ex.message, true);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  };
}

// declareQueueForm is the "Add a new queue" panel.
export function declareQueueForm(ctx) {
  const form = h("form", { class: "grid" },
    h("label", {}, "Virtual host"), vhostSelect(ctx.state.vhosts.length ? ctx.state.vhosts : ["/"]),
    h("label", {}, "Name"), h("input", { type: "text", name: "name", required: true }),
    h("label", {}, "Durability"), h("select", { name: "durable" }, h("option", { value: "true" }, "Durable"), h("option", { value: "false" }, "Transient")),
    h("label", {}, "Auto delete"), h("span", {}, h("input", { type: "checkbox", name: "auto_delete" }), " delete when its last consumer goes"),
    h("label", {}, "Arguments"), h("textarea", { name: "arguments", placeholder: "x-message-ttl = 60000\nx-max-length = 1000\nx-dead-letter-exchange = dlx" }),
    h("span", { class: "hint" }, "One key = value per line; numbers and true/false are typed."),
    h("span", {}), h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, "Add queue")));
  form.addEventListener("submit", submitting(ctx, form, async () => {
    const vhost = val(form, "vhost"), name = val(form, "name").trim();
    const body = { durable: val(form, "durable") === "true", auto_delete: val(form, "auto_delete"), arguments: parseArgs(val(form, "arguments")) };
    await api("PUT", apiPath("queues", vhost, name), body);
    form.elements.name.value = "";
    return `Queue ${name} declared.`;
  }));
  return h("details", { class: "panel" }, h("summary", {}, "Add a new queue"), form);
}

// declareExchangeForm is the "Add a new exchange" panel.
export function declareExchangeForm(ctx) {
  const form = h("form", { class: "grid" },
    h("label", {}, "Virtual host"), vhostSelect(ctx.state.vhosts.length ? ctx.state.vhosts : ["/"]),
    h("label", {}, "Name"), h("input", { type: "text", name: "name", required: true }),
    h("label", {}, "Type"), h("select", { name: "type" }, ["direct", "fanout", "topic", "headers"].map((t) => h("option", { value: t }, t))),
    h("label", {}, "Durability"), h("select", { name: "durable" }, h("option", { value: "true" }, "Durable"), h("option", { value: "false" }, "Transient")),
    h("label", {}, "Auto delete"), h("span", {}, h("input", { type: "checkbox", name: "auto_delete" }), " delete when its last binding goes"),
    h("label", {}, "Internal"), h("span", {}, h("input", { type: "checkbox", name: "internal" }), " clients cannot publish to it directly"),
    h("label", {}, "Arguments"), h("textarea", { name: "arguments", placeholder: "alternate-exchange = unrouted" }),
    h("span", {}), h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, "Add exchange")));
  form.addEventListener("submit", submitting(ctx, form, async () => {
    const vhost = val(form, "vhost"), name = val(form, "name").trim();
    await api("PUT", apiPath("exchanges", vhost, name), {
      type: val(form, "type"), durable: val(form, "durable") === "true", auto_delete: val(form, "auto_delete"),
      internal: val(form, "internal"), arguments: parseArgs(val(form, "arguments")),
    });
    form.elements.name.value = "";
    return `Exchange ${name} declared.`;
  }));
  return h("details", { class: "panel" }, h("summary", {}, "Add a new exchange"), form);
}

const PROPERTY_NAMES = ["content_type", "content_encoding", "priority", "correlation_id", "reply_to", "expiration",
  "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id"];

// publishForm publishes to exchange in vhost; with routingKey fixed (the
// queue page, through the default exchange) the key is not editable.
export function publishForm(ctx, vhost, exchange, routingKey) {
  const fixed = routingKey !== undefined;
  const form = h("form", { class: "grid" },
    h("label", {}, "Routing key"), h("input", { type: "text", name: "key", value: fixed ? routingKey : "", readonly: fixed }),
    h("label", {}, "Delivery mode"), h("select", { name: "mode" }, h("option", { value: "1" }, "1 - Non-persistent"), h("option", { value: "2" }, "2 - Persistent")),
    h("label", {}, "Headers"), h("textarea", { name: "headers", placeholder: "tenant = acme\nattempt = 1" }),
    h("label", {}, "Properties"), h("textarea", { name: "props", placeholder: "content_type = application/json\ncorrelation_id = 42" }),
    h("span", { class: "hint" }, "One key = value per line. Properties: " + PROPERTY_NAMES.join(", ") + "."),
    h("label", {}, "Payload"), h("textarea", { name: "payload", class: "mono" }),
    h("label", {}, "Payload encoding"), h("select", { name: "encoding" }, h("option", { value: "string" }, "String"), h("option", { value: "base64" }, "Base64")),
    h("span", {}), h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, "Publish message")));
  form.addEventListener("submit", submitting(ctx, form, async () => {
    const props = parseArgs(val(form, "props"));
    for (const k of Object.keys(props)) {
      if (!PROPERTY_NAMES.includes(k)) throw new Error(`unknown property ${k}`);
      if (k !== "priority" && k !== "timestamp") props[k] = String(props[k]);
    }
    props.delivery_mode = Number(val(form, "mode"));
    const headers = parseArgs(val(form, "headers"));
    if (Object.keys(headers).length) props.headers = headers;
    const res = await api("POST", apiPath("exchanges", vhost, exchangeSeg(exchange), "publish"), {
      routing_key: val(form, "key"), payload: val(form, "payload"), payload_encoding: val(form, "encoding"), properties: props,
    });
    if (!res?.routed) throw new Error("Message published, but not routed to any queue.");
    return "Message published.";
  }));
  return form;
}

// bindForm adds a binding from an exchange to a queue; one of the two is
// fixed by the page, the other typed in.
export function bindForm(ctx, vhost, { queue, exchange }) {
  const other = queue !== undefined ? "exchange" : "queue";
  const form = h("form", { class: "grid" },
    h("label", {}, other === "exchange" ? "From exchange" : "To queue"), h("input", { type: "text", name: "other", required: true, list: `${other}-names` }),
    h("label", {}, "Routing key"), h("input", { type: "text", name: "key" }),
    h("label", {}, "Arguments"), h("textarea", { name: "arguments", placeholder: "x-match = all" }),
    h("span", {}), h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, "Bind")));
  form.addEventListener("submit", submitting(ctx, form, async () => {
    const o = val(form, "other").trim();
    const [e, q] = other === "exchange" ? [o, queue] : [exchange, o];
    await api("POST", apiPath("bindings", vhost, "e", exchangeSeg(e), "q", q), { routing_key: val(form, "key"), arguments: parseArgs(val(form, "arguments")) });
    return `Bound ${q} to ${e === "" ? "the default exchange" : e}.`;
  }));
  return form;
}

// unbindButton deletes one binding by its properties key (RabbitMQ's
// DELETE /api/bindings/{vhost}/e/{source}/{q|e}/{destination}/{props}).
export function unbindButton(ctx, b) {
  const btn = h("button", { class: "danger small", type: "button", title: "Delete this binding" }, "Unbind");
  btn.addEventListener("click", async () => {
    const to = `${b.destination_type} ${b.destination}`;
    if (!confirm(`Delete the binding from ${b.source} to ${to} (routing key "${b.routing_key}")?`)) return;
    btn.disabled = true;
    try {
      await api("DELETE", apiPath("bindings", b.vhost, "e", exchangeSeg(b.source), b.destination_type === "queue" ? "q" : "e", b.destination, b.properties_key));
      ctx.flash(`Unbound ${to} from ${b.source}.`);
      ctx.refresh();
    } catch (ex) {
      ctx.flash(ex.message, true);
      btn.disabled = false;
    }
  });
  return btn;
}

// detailsList renders [label, value] pairs.
export function detailsList(pairs) {
  return h("dl", { class: "props" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

// argsText shows arguments as "key: value" lines.
export function argsText(args) {
  const ks = Object.keys(args || {});
  return ks.length ? ks.map((k) => `${k}: ${JSON.stringify(args[k])}`).join(", ") : "none";
}
