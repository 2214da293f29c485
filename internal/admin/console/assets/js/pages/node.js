// Node: the /api/nodes figures (memory, disk, descriptors, goroutines)
// and the resource alarms.

import { api } from "../api.js";
import { h, replace } from "../dom.js";
import { fmtBytes, fmtInt } from "../format.js";
import { detailsList } from "./common.js";

// uptimeText shows milliseconds as "3d 4h 5m".
export function uptimeText(ms) {
  const m = Math.floor((ms || 0) / 60000);
  const d = Math.floor(m / 1440), hr = Math.floor((m % 1440) / 60), mm = m % 60;
  return (d ? `${d}d ` : "") + (d || hr ? `${hr}h ` : "") + `${mm}m`;
}

function gauge(label, used, limit, alarm, fmt) {
  const pct = limit ? Math.min(100, Math.round((used / limit) * 100)) : 0;
  return h("div", { class: "card" }, h("h2", {}, label),
    h("div", { class: "stat" }, h("div", { class: "v" }, fmt(used)), h("div", { class: "l" }, limit ? `limit ${fmt(limit)} (${pct}%)` : "no limit")),
    alarm ? h("div", { class: "banner bad" }, `${label} alarm: publishers are blocked`) : h("p", { class: "muted" }, "no alarm"));
}

export default {
  nav: "node",
  title: () => "Node",
  mount(root) {
    const body = h("div", {});
    root.append(h("h1", {}, "Node"), body);
    let disposed = false;
    return {
      async update() {
        const [n] = await api("GET", "/api/nodes");
        if (disposed || !n) return;
        replace(body,
          h("div", { class: "cards" },
            gauge("Memory", n.mem_used, n.mem_limit, n.mem_alarm, fmtBytes),
            // Disk: the alarm fires when free space falls below the limit.
            h("div", { class: "card" }, h("h2", {}, "Disk"),
              h("div", { class: "stat" }, h("div", { class: "v" }, fmtBytes(n.disk_free)), h("div", { class: "l" }, `free; limit ${fmtBytes(n.disk_free_limit)}`)),
              n.disk_free_alarm ? h("div", { class: "banner bad" }, "Disk alarm: publishers are blocked") : h("p", { class: "muted" }, "no alarm"))),
          h("div", { class: "panel" }, detailsList([
            ["Name", n.name], ["Type", n.type], ["Running", n.running ? "yes" : "no"], ["Uptime", uptimeText(n.uptime)],
            ["File descriptors", n.fd_used === undefined ? "–" : fmtInt(n.fd_used)], ["Goroutines", fmtInt(n.proc_used)],
            ["Processors", fmtInt(n.processors)], ["Rates mode", n.rates_mode],
          ])));
      },
      dispose() {
        disposed = true;
      },
    };
  },
};
