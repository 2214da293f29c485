// One exchange: details, its bindings, publish to it, bind a queue to it,
// delete it.

import { api, apiPath, exchangeSeg } from "../api.js";
import { h, replace } from "../dom.js";
import { exchangeLabel } from "../format.js";
import { argsText, bindForm, detailsList, featureTags, publishForm, queueHref, SortTable, unbindButton } from "./common.js";

export default {
  nav: "exchanges",
  title: (p) => `Exchange ${exchangeLabel(p.name)}`,
  mount(root, ctx, { vhost, name }) {
    const info = h("div", {});
    const missing = h("div", {});
    const queueNames = h("datalist", { id: "queue-names" });
    const bindings = new SortTable([
      { label: "To", value: (b) => b.destination, cell: (b) => b.destination_type === "queue" ? h("a", { href: queueHref(b.vhost, b.destination) }, b.destination) : b.destination },
      { label: "Type", value: (b) => b.destination_type, cell: (b) => b.destination_type },
      { label: "Routing key", value: (b) => b.routing_key, cell: (b) => h("code", {}, b.routing_key) },
      { label: "Arguments", cell: (b) => argsText(b.arguments) },
      { label: "", cell: (b) => (name === "" ? null : unbindButton(ctx, b)) },
    ], { empty: name === "" ? "The default exchange routes to the queue named by the routing key." : "No bindings: messages published here are dropped." });
    const del = h("button", { class: "danger", type: "button", disabled: name === "" || name.startsWith("amq.") }, "Delete exchange");
    del.addEventListener("click", async () => {
      if (!confirm(`Delete the exchange ${name} and its bindings?`)) return;
      try {
        await api("DELETE", apiPath("exchanges", vhost, name));
        ctx.flash(`Exchange ${name} deleted.`);
        ctx.navigate("#/exchanges");
      } catch (e) {
        ctx.flash(e.message, true);
      }
    });
    root.append(
      h("h1", {}, "Exchange ", h("span", { class: "mono" }, exchangeLabel(name)), h("span", { class: "sub" }, `in virtual host ${vhost}`)),
      missing,
      h("div", { class: "panel" }, h("h2", {}, "Details"), info),
      h("div", { class: "panel" }, h("h2", {}, "Bindings from this exchange"), bindings.el,
        name === "" ? null : h("details", {}, h("summary", {}, "Add binding from this exchange"), queueNames, bindForm(ctx, vhost, { exchange: name }))),
      h("details", { class: "panel", open: true }, h("summary", {}, "Publish message"), publishForm(ctx, vhost, name)),
      h("div", { class: "panel" }, h("h2", {}, "Delete"), del,
        name === "" || name.startsWith("amq.") ? h("p", { class: "muted" }, "Built-in exchanges cannot be deleted.") : null),
    );
    let disposed = false;
    return {
      async update(state) {
        let e;
        try {
          e = await api("GET", apiPath("exchanges", vhost, exchangeSeg(name)));
        } catch (ex) {
          if (ex.status !== 404) throw ex;
          if (!disposed) replace(missing, h("div", { class: "banner warn" }, "This exchange does not exist (any more)."));
          return;
        }
        const bs = await api("GET", apiPath("bindings", vhost));
        if (disposed) return;
        replace(missing);
        replace(info, detailsList([
          ["Type", e.type],
          ["Features", featureTags(e).length ? featureTags(e) : "none"],
          ["Arguments", argsText(e.arguments)],
        ]));
        bindings.setRows(name === "" ? [] : bs.filter((b) => b.source === name));
        const qs = state.queues.filter((q) => q.vhost === vhost).map((q) => q.name);
        if (queueNames.childElementCount !== qs.length) replace(queueNames, qs.map((n) => h("option", { value: n })));
      },
      dispose() {
        disposed = true;
      },
    };
  },
};
