// RPC services (the lookup service, GET /api/services): each service with
// its instances, the replies by status, error rates and latency, as the
// broker counts them from the traffic it carries.

import { api } from "../api.js";
import { h, replace } from "../dom.js";
import { fmtInt } from "../format.js";
import { matcher, SortTable } from "./common.js";

// errorRateText prints the share of replies that were not OK.
export function errorRateText(stats) {
  const replies = Object.values(stats.replies || {}).reduce((a, b) => a + b, 0);
  if (!replies) return "–";
  return (100 * stats.error_rate).toFixed(1) + "%";
}

// repliesText prints {"OK": 5, "NOT_FOUND": 1} as "OK 5 · NOT_FOUND 1", OK first.
export function repliesText(replies) {
  const keys = Object.keys(replies || {}).sort((a, b) => (a === "OK" ? -1 : b === "OK" ? 1 : a.localeCompare(b)));
  return keys.length ? keys.map((k) => `${k} ${fmtInt(replies[k])}`).join(" · ") : "–";
}

function ms(v) {
  return Number.isFinite(v) && v > 0 ? v.toFixed(v < 10 ? 2 : 0) + " ms" : "–";
}

function statCells() {
  return [
    { label: "Requests", num: true, value: (i) => i.stats.requests, cell: (i) => fmtInt(i.stats.requests) },
    { label: "Replies", value: (i) => repliesText(i.stats.replies), cell: (i) => repliesText(i.stats.replies) },
    { label: "Errors", num: true, title: "share of replies whose x-rpc-status is not OK", value: (i) => i.stats.error_rate,
      cell: (i) => h("span", { class: i.stats.error_rate > 0.05 ? "error-text" : "" }, errorRateText(i.stats)) },
    { label: "Avg", num: true, title: "delivery to reply", value: (i) => i.stats.avg_ms, cell: (i) => ms(i.stats.avg_ms) },
    { label: "p99", num: true, title: "delivery to reply, last 1024 replies", value: (i) => i.stats.p99_ms, cell: (i) => ms(i.stats.p99_ms) },
  ];
}

function servicePanel(s) {
  const table = new SortTable([
    { label: "Instance", value: (i) => i.id, cell: (i) => i.id },
    { label: "Version", value: (i) => i.version, cell: (i) => i.version || "–" },
    { label: "Connection", value: (i) => i.connection, cell: (i) => i.connection || "–" },
    { label: "Since", value: (i) => i.since, cell: (i) => new Date(i.since).toLocaleString() },
    { label: "In flight", num: true, title: "unacknowledged / prefetch", value: (i) => i.messages_unacknowledged,
      cell: (i) => `${fmtInt(i.messages_unacknowledged)} / ${i.prefetch_count || "∞"}` },
    ...statCells(),
    { label: "Endpoints", cell: (i) => (i.endpoints || []).join(", ") },
  ], { empty: "No instances." });
  table.setRows(s.instances);
  const st = s.stats;
  return h("div", { class: "panel" },
    h("h2", {}, `${s.name} `, h("span", { class: "muted" }, `in ${s.vhost}`)),
    s.description ? h("p", {}, s.description) : null,
    h("p", { class: "muted" },
      `${s.instances.length} instance${s.instances.length === 1 ? "" : "s"} · ${fmtInt(st.requests)} requests · ` +
      `${fmtInt(st.expired)} expired while queued · errors ${errorRateText(st)} · avg ${ms(st.avg_ms)} · p99 ${ms(st.p99_ms)}`),
    h("p", {}, "Replies: " + repliesText(st.replies)),
    table.el);
}

export default {
  nav: "services",
  title: () => "Services",
  mount(root) {
    const filter = h("input", { type: "search", placeholder: "Filter by name (/regex/ works)", "aria-label": "Filter services" });
    const count = h("span", { class: "muted" });
    const list = h("div", {});
    let all = [];
    const render = () => {
      const match = matcher(filter.value);
      const rows = all.filter((s) => match(s.name));
      count.textContent = `${rows.length} of ${all.length} services`;
      replace(list, rows.length ? rows.map(servicePanel) : [h("p", { class: "muted" }, "No RPC services: an instance of service S consumes the queue rpc.S.")]);
    };
    filter.addEventListener("input", render);
    root.append(h("h1", {}, "Services"), h("div", { class: "toolbar" }, filter, h("span", { class: "grow" }), count), list);
    let disposed = false;
    return {
      async update() {
        const svcs = await api("GET", "/api/services");
        if (disposed) return;
        all = svcs;
        render();
      },
      dispose() {
        disposed = true;
      },
    };
  },
};
