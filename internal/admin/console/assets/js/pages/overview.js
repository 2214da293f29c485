// Overview: totals, live message rates and queued messages over time,
// and the virtual hosts.

import { color, LineChart } from "../chart.js";
import { h, setText } from "../dom.js";
import { fmtInt, fmtRate } from "../format.js";
import { SortTable } from "./common.js";

function stat(label) {
  const v = h("div", { class: "v", text: "–" });
  return { v, el: h("div", { class: "stat" }, v, h("div", { class: "l" }, label)) };
}

export default {
  nav: "overview",
  title: () => "Overview",
  mount(root, ctx) {
    const s = {
      ready: stat("Ready"), unacked: stat("Unacked"), total: stat("Total"),
      publish: stat("Publish"), deliver: stat("Deliver / get"), ack: stat("Ack"),
      queues: stat("Queues"), exchanges: stat("Exchanges"), consumers: stat("Consumers"), vhosts: stat("Virtual hosts"),
    };
    const card = (title, ...stats) => h("div", { class: "card" }, h("h2", {}, title), h("div", { class: "stats" }, stats.map((x) => x.el)));
    const rates = new LineChart({ lines: [
      { key: "publish", label: "Publish", color: color("publish") },
      { key: "deliver_get", label: "Deliver / get", color: color("deliver") },
      { key: "ack", label: "Ack", color: color("ack") },
    ], unit: "/s" });
    const depth = new LineChart({ lines: [
      { key: "ready", label: "Ready", color: color("ready") },
      { key: "unacked", label: "Unacked", color: color("unacked") },
    ] });
    const node = h("span", { class: "muted" });
    const vhosts = new SortTable([
      { label: "Name", value: (v) => v.name, cell: (v) => v.name },
      { label: "Ready", num: true, value: (v) => v.ready, cell: (v) => fmtInt(v.ready) },
      { label: "Unacked", num: true, value: (v) => v.unacked, cell: (v) => fmtInt(v.unacked) },
      { label: "Total", num: true, value: (v) => v.ready + v.unacked, cell: (v) => fmtInt(v.ready + v.unacked) },
      { label: "Queues", num: true, value: (v) => v.queues, cell: (v) => fmtInt(v.queues) },
      { label: "Publish", num: true, value: (v) => v.publish, cell: (v) => fmtRate(v.publish) },
      { label: "Deliver / get", num: true, value: (v) => v.deliver, cell: (v) => fmtRate(v.deliver) },
    ]);
    root.append(
      h("h1", {}, "Overview", node),
      h("div", { class: "cards" },
        card("Queued messages", s.ready, s.unacked, s.total),
        card("Message rates", s.publish, s.deliver, s.ack),
        card("Objects", s.queues, s.exchanges, s.consumers, s.vhosts)),
      h("div", { class: "grid2" },
        h("div", { class: "panel" }, h("h2", {}, "Message rates"), rates.el),
        h("div", { class: "panel" }, h("h2", {}, "Queued messages"), depth.el)),
      h("div", { class: "panel" }, h("h2", {}, "Virtual hosts"), vhosts.el),
      h("p", { class: "muted" }, "Rates are computed in this page from the queues' counters, polled every 2 seconds; a message routed to several queues counts once per queue."),
    );
    return {
      update(state) {
        const ov = state.overview;
        const qt = ov.queue_totals || {}, ot = ov.object_totals || {};
        setText(node, ` ${ov.product_name || "Herald"} ${ov.product_version || ""} · ${ov.node || ""}`);
        setText(s.ready.v, fmtInt(qt.messages_ready));
        setText(s.unacked.v, fmtInt(qt.messages_unacknowledged));
        setText(s.total.v, fmtInt(qt.messages));
        const r = state.totalRates;
        setText(s.publish.v, fmtRate(r?.publish));
        setText(s.deliver.v, fmtRate(r?.deliver_get));
        setText(s.ack.v, fmtRate(r?.ack));
        setText(s.queues.v, fmtInt(ot.queues));
        setText(s.exchanges.v, fmtInt(ot.exchanges));
        setText(s.consumers.v, fmtInt(ot.consumers));
        setText(s.vhosts.v, fmtInt(state.vhosts.length));
        rates.draw(state.rateHistory.points);
        depth.draw(state.depthHistory.points);
        const by = new Map(state.vhosts.map((n) => [n, { name: n, ready: 0, unacked: 0, queues: 0, publish: 0, deliver: 0 }]));
        for (const q of state.queues) {
          const v = by.get(q.vhost);
          if (!v) continue;
          v.ready += q.messages_ready;
          v.unacked += q.messages_unacknowledged;
          v.queues++;
          v.publish += q.rates?.publish || 0;
          v.deliver += q.rates?.deliver_get || 0;
        }
        vhosts.setRows([...by.values()]);
      },
      dispose() {
        rates.dispose();
        depth.dispose();
      },
    };
  },
};
