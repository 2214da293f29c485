// Queues: a sortable, filterable table with depths and rates, and the
// form to declare a queue.

import { h } from "../dom.js";
import { fmtInt, fmtRate } from "../format.js";
import { declareQueueForm, featureTags, matcher, queueHref, SortTable } from "./common.js";

export default {
  nav: "queues",
  title: () => "Queues",
  mount(root, ctx) {
    const filter = h("input", { type: "search", placeholder: "Filter by name (/regex/ works)", "aria-label": "Filter queues" });
    const vhost = h("select", { "aria-label": "Virtual host" });
    const count = h("span", { class: "muted" });
    const table = new SortTable([
      { label: "Virtual host", value: (q) => q.vhost, cell: (q) => q.vhost },
      { label: "Name", value: (q) => q.name, cell: (q) => h("a", { href: queueHref(q.vhost, q.name) }, q.name) },
      { label: "Features", cell: (q) => featureTags(q) },
      { label: "State", value: (q) => q.state, cell: (q) => q.state },
      { label: "Ready", num: true, value: (q) => q.messages_ready, cell: (q) => fmtInt(q.messages_ready) },
      { label: "Unacked", num: true, value: (q) => q.messages_unacknowledged, cell: (q) => fmtInt(q.messages_unacknowledged) },
      { label: "Total", num: true, value: (q) => q.messages, cell: (q) => fmtInt(q.messages) },
      { label: "Consumers", num: true, value: (q) => q.consumers, cell: (q) => fmtInt(q.consumers) },
      { label: "Incoming", num: true, title: "messages enqueued per second", value: (q) => q.rates?.publish ?? -1, cell: (q) => fmtRate(q.rates?.publish) },
      { label: "Deliver / get", num: true, value: (q) => q.rates?.deliver_get ?? -1, cell: (q) => fmtRate(q.rates?.deliver_get) },
      { label: "Ack", num: true, value: (q) => q.rates?.ack ?? -1, cell: (q) => fmtRate(q.rates?.ack) },
    ], { sortBy: 1, empty: "No queues match." });
    let last = null;
    const render = () => {
      if (!last) return;
      const match = matcher(filter.value);
      const rows = last.queues.filter((q) => (!vhost.value || q.vhost === vhost.value) && match(q.name));
      table.setRows(rows);
      count.textContent = `${rows.length} of ${last.queues.length} queues`;
    };
    filter.addEventListener("input", render);
    vhost.addEventListener("change", render);
    root.append(
      h("h1", {}, "Queues"),
      h("div", { class: "panel" }, h("div", { class: "toolbar" }, filter, vhost, h("span", { class: "grow" }), count), table.el),
      declareQueueForm(ctx),
    );
    return {
      update(state) {
        last = state;
        // Keep the vhost choice across refreshes; rebuild only on change.
        const names = ["", ...state.vhosts];
        if ([...vhost.options].map((o) => o.value).join("\n") !== names.join("\n")) {
          const keep = vhost.value;
          vhost.textContent = "";
          for (const n of names) vhost.append(h("option", { value: n }, n === "" ? "All virtual hosts" : n));
          vhost.value = names.includes(keep) ? keep : "";
        }
        render();
      },
    };
  },
};
