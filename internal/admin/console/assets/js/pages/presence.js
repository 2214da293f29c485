// Presence: the channels with clients in their presence sets (browsers
// subscribed with "presence": true), and who is in one.

import { api } from "../api.js";
import { h, replace } from "../dom.js";
import { matcher, SortTable } from "./common.js";

export function presenceHref(vhost, channel) {
  return "#/presence/" + encodeURIComponent(vhost) + "/" + encodeURIComponent(channel);
}

export const presence = {
  nav: "presence",
  title: () => "Presence",
  mount(root) {
    const filter = h("input", { type: "search", placeholder: "Filter by channel (/regex/ works)", "aria-label": "Filter channels" });
    const count = h("span", { class: "muted" });
    const table = new SortTable([
      { label: "Virtual host", value: (c) => c.vhost, cell: (c) => c.vhost },
      { label: "Channel", value: (c) => c.channel, cell: (c) => h("a", { href: presenceHref(c.vhost, c.channel) }, c.channel) },
      { label: "Clients", num: true, value: (c) => c.clients, cell: (c) => String(c.clients) },
      { label: "Users", num: true, value: (c) => c.users, cell: (c) => String(c.users) },
    ], { sortBy: 2, empty: "Nobody is in a presence set." });
    let all = [];
    const render = () => {
      const match = matcher(filter.value);
      const rows = all.filter((c) => match(c.channel));
      table.setRows(rows);
      count.textContent = `${rows.length} of ${all.length} channels`;
    };
    filter.addEventListener("input", render);
    root.append(
      h("h1", {}, "Presence"),
      h("p", { class: "muted" }, "Channels (<exchange>/<routing key>) whose WebSocket subscribers joined with presence."),
      h("div", { class: "panel" }, h("div", { class: "toolbar" }, filter, h("span", { class: "grow" }), count), table.el),
    );
    let disposed = false;
    return {
      async update() {
        const list = await api("GET", "/api/presence");
        if (disposed) return;
        all = list;
        render();
      },
      dispose() { disposed = true; },
    };
  },
};

export const presenceChannel = {
  nav: "presence",
  title: (p) => "Presence · " + p.channel,
  mount(root, ctx, params) {
    const stats = h("div", { class: "muted toolbar" });
    const table = new SortTable([
      { label: "User", value: (c) => c.user, cell: (c) => c.user },
      { label: "Client", value: (c) => c.client, cell: (c) => h("span", { class: "mono" }, c.client) },
      { label: "Info", cell: (c) => h("span", { class: "mono" }, c.info === undefined ? "" : JSON.stringify(c.info)) },
    ], { sortBy: 0, empty: "Nobody is in this channel." });
    root.append(
      h("h1", {}, "Presence", h("span", { class: "sub" }, params.channel + " in " + params.vhost)),
      h("div", { class: "panel" }, stats, table.el),
    );
    const path = "/api/presence/" + encodeURIComponent(params.vhost) + "/" + encodeURIComponent(params.channel);
    let disposed = false;
    return {
      async update() {
        const r = await api("GET", path);
        if (disposed) return;
        const users = new Set(r.clients.map((c) => c.user));
        replace(stats, `${r.clients.length} clients, ${users.size} users`);
        table.setRows(r.clients);
      },
      dispose() { disposed = true; },
    };
  },
};
