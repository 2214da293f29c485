// Connections (list, close with a reason) and Channels (list).

import { api, apiPath } from "../api.js";
import { h } from "../dom.js";
import { fmtInt } from "../format.js";
import { matcher, SortTable } from "./common.js";

function filterBox(what) {
  return h("input", { type: "search", placeholder: "Filter by name (/regex/ works)", "aria-label": "Filter " + what });
}

export const connections = {
  nav: "connections",
  title: () => "Connections",
  mount(root, ctx) {
    const filter = filterBox("connections");
    const count = h("span", { class: "muted" });
    const reason = h("input", { type: "text", name: "reason", value: "Closed via the Herald console", "aria-label": "Close reason" });
    const close = async (c) => {
      if (!confirm(`Close connection ${c.name}?`)) return;
      try {
        await api("DELETE", apiPath("connections", c.name), undefined, undefined, { "X-Reason": reason.value });
        ctx.flash(`Connection ${c.name} closed.`);
        ctx.refresh();
      } catch (e) {
        ctx.flash(e.message, true);
      }
    };
    const table = new SortTable([
      { label: "Name", value: (c) => c.name, cell: (c) => c.name },
      { label: "Client name", title: "the name the client gave itself (AMQP connection_name)", value: (c) => c.user_provided_name || "", cell: (c) => c.user_provided_name || "" },
      { label: "Protocol", value: (c) => c.protocol, cell: (c) => c.protocol },
      { label: "User", value: (c) => c.user, cell: (c) => c.user },
      { label: "Virtual host", value: (c) => c.vhost, cell: (c) => c.vhost },
      { label: "Channels", num: true, value: (c) => c.channels, cell: (c) => fmtInt(c.channels) },
      { label: "Connected", value: (c) => c.connected_at, cell: (c) => new Date(c.connected_at).toLocaleString() },
      { label: "", cell: (c) => h("button", { type: "button", class: "danger", onclick: () => close(c) }, "Close") },
    ], { sortBy: 6, empty: "No client connections." });
    let all = [];
    const render = () => {
      const match = matcher(filter.value);
      const rows = all.filter((c) => match(c.name) || match(c.user_provided_name || ""));
      table.setRows(rows);
      count.textContent = `${rows.length} of ${all.length} connections`;
    };
    filter.addEventListener("input", render);
    root.append(
      h("h1", {}, "Connections"),
      h("div", { class: "panel" }, h("div", { class: "toolbar" }, filter, h("span", { class: "grow" }),
        h("label", {}, "Close reason ", reason), count), table.el),
    );
    let disposed = false;
    return {
      async update() {
        const cs = await api("GET", "/api/connections");
        if (disposed) return;
        all = cs;
        render();
      },
      dispose() {
        disposed = true;
      },
    };
  },
};

export const channels = {
  nav: "channels",
  title: () => "Channels",
  mount(root) {
    const filter = filterBox("channels");
    const count = h("span", { class: "muted" });
    const mode = (c) => (c.confirm ? "confirm" : c.transactional ? "transactional" : "");
    const table = new SortTable([
      { label: "Channel", value: (c) => c.name, cell: (c) => c.name },
      { label: "User", value: (c) => c.user, cell: (c) => c.user },
      { label: "Virtual host", value: (c) => c.vhost, cell: (c) => c.vhost },
      { label: "Mode", value: mode, cell: (c) => (mode(c) ? h("span", { class: "tag" }, mode(c)) : "") },
      { label: "Consumers", num: true, value: (c) => c.consumer_count, cell: (c) => fmtInt(c.consumer_count) },
      { label: "Prefetch", num: true, title: "per consumer / per channel (global)", value: (c) => c.prefetch_count,
        cell: (c) => `${c.prefetch_count || "–"} / ${c.global_prefetch_count || "–"}` },
      { label: "Unacked", num: true, value: (c) => c.messages_unacknowledged, cell: (c) => fmtInt(c.messages_unacknowledged) },
    ], { sortBy: 0, empty: "No channels (only AMQP connections have them)." });
    let all = [];
    const render = () => {
      const match = matcher(filter.value);
      const rows = all.filter((c) => match(c.name));
      table.setRows(rows);
      count.textContent = `${rows.length} of ${all.length} channels`;
    };
    filter.addEventListener("input", render);
    root.append(h("h1", {}, "Channels"), h("div", { class: "panel" }, h("div", { class: "toolbar" }, filter, h("span", { class: "grow" }), count), table.el));
    let disposed = false;
    return {
      async update() {
        const cs = await api("GET", "/api/channels");
        if (disposed) return;
        all = cs;
        render();
      },
      dispose() {
        disposed = true;
      },
    };
  },
};

