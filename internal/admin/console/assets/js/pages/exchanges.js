// Exchanges: a sortable, filterable list and the form to declare one.

import { api } from "../api.js";
import { h } from "../dom.js";
import { exchangeLabel } from "../format.js";
import { declareExchangeForm, exchangeHref, featureTags, matcher, SortTable } from "./common.js";

export default {
  nav: "exchanges",
  title: () => "Exchanges",
  mount(root, ctx) {
    const filter = h("input", { type: "search", placeholder: "Filter by name (/regex/ works)", "aria-label": "Filter exchanges" });
    const count = h("span", { class: "muted" });
    const table = new SortTable([
      { label: "Virtual host", value: (e) => e.vhost, cell: (e) => e.vhost },
      { label: "Name", value: (e) => e.name, cell: (e) => h("a", { href: exchangeHref(e.vhost, e.name) }, exchangeLabel(e.name)) },
      { label: "Type", value: (e) => e.type, cell: (e) => e.type },
      { label: "Features", cell: (e) => featureTags(e) },
      { label: "Bindings", num: true, title: "bindings from this exchange", value: (e) => e.bindings, cell: (e) => String(e.bindings) },
    ], { sortBy: 1, empty: "No exchanges match." });
    let all = [];
    const render = () => {
      const match = matcher(filter.value);
      const rows = all.filter((e) => match(exchangeLabel(e.name)));
      table.setRows(rows);
      count.textContent = `${rows.length} of ${all.length} exchanges`;
    };
    filter.addEventListener("input", render);
    root.append(
      h("h1", {}, "Exchanges"),
      h("div", { class: "panel" }, h("div", { class: "toolbar" }, filter, h("span", { class: "grow" }), count), table.el),
      declareExchangeForm(ctx),
    );
    let disposed = false;
    return {
      async update() {
        const [exs, bs] = await Promise.all([api("GET", "/api/exchanges"), api("GET", "/api/bindings")]);
        if (disposed) return;
        const n = new Map();
        for (const b of bs) if (b.source !== "") n.set(b.vhost + "\0" + b.source, (n.get(b.vhost + "\0" + b.source) || 0) + 1);
        all = exs.map((e) => ({ ...e, bindings: n.get(e.vhost + "\0" + e.name) || 0 }));
        render();
      },
      dispose() {
        disposed = true;
      },
    };
  },
};
