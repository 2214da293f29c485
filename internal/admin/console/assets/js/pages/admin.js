// The administrator's pages: users, virtual hosts, permissions, limits,
// policies and definitions export / import. The nav shows them to
// administrators only (policies to policymakers too); the API enforces
// the same rule.

import { api, apiPath } from "../api.js";
import { h, replace, val } from "../dom.js";
import { fmtInt, parseArgs } from "../format.js";
import { argsText, matcher, SortTable, submitting } from "./common.js";

// listPage is a filterable list with forms under it; rows(state) fetches.
function listPage(root, title, columns, fetchRows, forms, opts = {}) {
  const filter = h("input", { type: "search", placeholder: "Filter (/regex/ works)", "aria-label": "Filter " + title });
  const count = h("span", { class: "muted" });
  const table = new SortTable(columns, opts);
  let all = [];
  const render = () => {
    const match = matcher(filter.value);
    const rows = all.filter((r) => match(opts.key(r)));
    table.setRows(rows);
    count.textContent = `${rows.length} of ${all.length}`;
  };
  filter.addEventListener("input", render);
  root.append(h("h1", {}, title), h("div", { class: "panel" }, h("div", { class: "toolbar" }, filter, h("span", { class: "grow" }), count), table.el), ...forms);
  let disposed = false;
  return {
    async update() {
      const rows = await fetchRows();
      if (disposed) return;
      all = rows;
      render();
    },
    dispose() {
      disposed = true;
    },
  };
}

// action runs a row's button action, flashing the outcome.
function action(ctx, ask, fn) {
  return async () => {
    if (ask && !confirm(ask)) return;
    try {
      const msg = await fn();
      if (msg) ctx.flash(msg);
      ctx.refresh();
    } catch (e) {
      ctx.flash(e.message, true);
    }
  };
}

const primary = (label) => h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, label));
const vhostOptions = (ctx) => (ctx.state.vhosts.length ? ctx.state.vhosts : ["/"]).map((v) => h("option", { value: v }, v));

export const users = {
  nav: "users",
  title: () => "Users",
  mount(root, ctx) {
    const form = h("form", { class: "grid" },
      h("label", {}, "Username"), h("input", { type: "text", name: "user", required: true, autocomplete: "off" }),
      h("label", {}, "Password"), h("input", { type: "password", name: "password", autocomplete: "new-password" }),
      h("label", {}, "Tags"), h("input", { type: "text", name: "tags", placeholder: "administrator, management, policymaker, monitoring" }),
      h("span", { class: "hint" }, "Comma-separated. A new user needs a password; an existing user keeps theirs when it is left empty."),
      h("span", {}), primary("Add / update user"));
    form.addEventListener("submit", submitting(ctx, form, async () => {
      const name = val(form, "user").trim(), pass = val(form, "password");
      const body = { tags: val(form, "tags") };
      if (pass) body.password = pass;
      await api("PUT", apiPath("users", name), body);
      form.elements.password.value = "";
      return `User ${name} saved.`;
    }));
    return listPage(root, "Users", [
      { label: "Name", value: (u) => u.name, cell: (u) => u.name },
      { label: "Tags", value: (u) => u.tags.join(","), cell: (u) => u.tags.map((t) => h("span", { class: "tag" }, t)) },
      { label: "", cell: (u) => h("button", { type: "button", class: "danger",
        onclick: action(ctx, `Delete user ${u.name}?`, async () => (await api("DELETE", apiPath("users", u.name)), `User ${u.name} deleted.`)) }, "Delete") },
    ], async () => (await api("GET", "/api/users")).map((u) => ({ ...u, tags: Array.isArray(u.tags) ? u.tags : String(u.tags || "").split(",").filter(Boolean) })),
    [h("details", { class: "panel" }, h("summary", {}, "Add or update a user"), form)], { key: (u) => u.name, empty: "No users." });
  },
};

export const vhosts = {
  nav: "vhosts",
  title: () => "Virtual hosts",
  mount(root, ctx) {
    const form = h("form", { class: "grid" },
      h("label", {}, "Name"), h("input", { type: "text", name: "name", required: true }),
      h("span", { class: "hint" }, "Nobody, you included, has permissions in a new virtual host until they are set."),
      h("span", {}), primary("Add virtual host"));
    form.addEventListener("submit", submitting(ctx, form, async () => {
      const name = val(form, "name").trim();
      await api("PUT", apiPath("vhosts", name), {});
      form.elements.name.value = "";
      return `Virtual host ${name} added.`;
    }));
    return listPage(root, "Virtual hosts", [
      { label: "Name", value: (v) => v.name, cell: (v) => v.name },
      { label: "Ready", num: true, value: (v) => v.messages_ready, cell: (v) => fmtInt(v.messages_ready) },
      { label: "Unacked", num: true, value: (v) => v.messages_unacknowledged, cell: (v) => fmtInt(v.messages_unacknowledged) },
      { label: "Total", num: true, value: (v) => v.messages, cell: (v) => fmtInt(v.messages) },
      { label: "", cell: (v) => h("button", { type: "button", class: "danger",
        onclick: action(ctx, `Delete virtual host ${v.name}? Its connections are closed and its queues, messages, exchanges, policies, permissions and limits are deleted.`,
          async () => (await api("DELETE", apiPath("vhosts", v.name)), `Virtual host ${v.name} deleted.`)) }, "Delete") },
    ], () => api("GET", "/api/vhosts"), [h("details", { class: "panel" }, h("summary", {}, "Add a virtual host"), form)],
    { key: (v) => v.name, empty: "No virtual hosts." });
  },
};

export const permissions = {
  nav: "permissions",
  title: () => "Permissions",
  mount(root, ctx) {
    const form = h("form", { class: "grid" },
      h("label", {}, "User"), h("input", { type: "text", name: "user", required: true }),
      h("label", {}, "Virtual host"), h("select", { name: "vhost" }, vhostOptions(ctx)),
      h("label", {}, "Configure"), h("input", { type: "text", name: "configure", value: ".*" }),
      h("label", {}, "Write"), h("input", { type: "text", name: "write", value: ".*" }),
      h("label", {}, "Read"), h("input", { type: "text", name: "read", value: ".*" }),
      h("span", { class: "hint" }, "Regular expressions on resource names; empty grants nothing."),
      h("span", {}), primary("Set permissions"));
    form.addEventListener("submit", submitting(ctx, form, async () => {
      const user = val(form, "user").trim(), vhost = val(form, "vhost");
      await api("PUT", apiPath("permissions", vhost, user), { configure: val(form, "configure"), write: val(form, "write"), read: val(form, "read") });
      return `Permissions of ${user} in ${vhost} set.`;
    }));
    return listPage(root, "Permissions", [
      { label: "User", value: (p) => p.user, cell: (p) => p.user },
      { label: "Virtual host", value: (p) => p.vhost, cell: (p) => p.vhost },
      { label: "Configure", cell: (p) => h("code", {}, p.configure) },
      { label: "Write", cell: (p) => h("code", {}, p.write) },
      { label: "Read", cell: (p) => h("code", {}, p.read) },
      { label: "", cell: (p) => h("button", { type: "button", class: "danger",
        onclick: action(ctx, `Clear the permissions of ${p.user} in ${p.vhost}?`,
          async () => (await api("DELETE", apiPath("permissions", p.vhost, p.user)), `Permissions of ${p.user} in ${p.vhost} cleared.`)) }, "Clear") },
    ], () => api("GET", "/api/permissions"), [h("details", { class: "panel" }, h("summary", {}, "Set permissions"), form)],
    { key: (p) => p.user, empty: "No permissions." });
  },
};

// LIMITS are the limits each kind of object takes, as RabbitMQ names them.
const LIMITS = { vhost: ["max-connections", "max-queues"], user: ["max-connections"] };

// limitRows flattens /api/vhost-limits and /api/user-limits answers
// ([{vhost|user, value: {name: n}}]) into one row per limit.
export function limitRows(vhostLimits, userLimits) {
  const rows = [];
  for (const [kind, list] of [["vhost", vhostLimits], ["user", userLimits]]) {
    for (const e of list || []) {
      for (const [name, value] of Object.entries(e.value || {})) rows.push({ kind, target: e[kind], name, value });
    }
  }
  return rows;
}

const limitText = (n) => (n < 0 ? "none" : n === 0 ? "0 (forbidden)" : fmtInt(n));

export const limits = {
  nav: "limits",
  title: () => "Limits",
  mount(root, ctx) {
    const form = h("form", { class: "grid" },
      h("label", {}, "Applies to"), h("select", { name: "kind" }, h("option", { value: "vhost" }, "virtual host"), h("option", { value: "user" }, "user")),
      h("label", {}, "Virtual host"), h("select", { name: "vhost" }, vhostOptions(ctx)),
      h("label", {}, "User"), h("input", { type: "text", name: "user", autocomplete: "off", placeholder: "for a user limit" }),
      h("label", {}, "Limit"), h("select", { name: "name" }, LIMITS.vhost.map((n) => h("option", { value: n }, n))),
      h("label", {}, "Value"), h("input", { type: "number", name: "value", value: "100", step: "1", required: true }),
      h("span", { class: "hint" }, "Negative: no limit; 0 forbids (new connections, or queue declarations). Existing connections and queues stay."),
      h("span", {}), primary("Set limit"));
    // The limit names depend on the kind: users have max-connections only.
    form.elements.kind.addEventListener("change", () => {
      const kind = val(form, "kind");
      replace(form.elements.name, LIMITS[kind].map((n) => h("option", { value: n }, n)));
      form.elements.name.value = LIMITS[kind][0];
    });
    form.addEventListener("submit", submitting(ctx, form, async () => {
      const kind = val(form, "kind"), name = val(form, "name");
      const target = kind === "vhost" ? val(form, "vhost") : val(form, "user").trim();
      if (!target) throw new Error("Name the user the limit is for.");
      const value = Number(val(form, "value"));
      if (!Number.isInteger(value)) throw new Error("The value must be a whole number.");
      await api("PUT", apiPath(`${kind}-limits`, target, name), { value });
      return `Limit ${name} of ${kind} ${target} set to ${value}.`;
    }));
    return listPage(root, "Limits", [
      { label: "Applies to", value: (l) => l.kind, cell: (l) => l.kind },
      { label: "Name", value: (l) => l.target, cell: (l) => l.target },
      { label: "Limit", value: (l) => l.name, cell: (l) => h("code", {}, l.name) },
      { label: "Value", num: true, value: (l) => l.value, cell: (l) => limitText(l.value) },
      { label: "", cell: (l) => h("button", { type: "button", class: "danger",
        onclick: action(ctx, `Clear the ${l.name} limit of ${l.kind} ${l.target}?`,
          async () => (await api("DELETE", apiPath(`${l.kind}-limits`, l.target, l.name)), `Limit ${l.name} of ${l.kind} ${l.target} cleared.`)) }, "Clear") },
    ], async () => {
      const [v, u] = await Promise.all([api("GET", "/api/vhost-limits"), api("GET", "/api/user-limits")]);
      return limitRows(v, u);
    }, [h("details", { class: "panel" }, h("summary", {}, "Set a limit"), form)],
    { key: (l) => l.target, sortBy: 1, empty: "No limits: only --max-connections and --max-publish-rate apply." });
  },
};

export const policies = {
  nav: "policies",
  title: () => "Policies",
  mount(root, ctx) {
    const form = h("form", { class: "grid" },
      h("label", {}, "Virtual host"), h("select", { name: "vhost" }, vhostOptions(ctx)),
      h("label", {}, "Name"), h("input", { type: "text", name: "name", required: true }),
      h("label", {}, "Pattern"), h("input", { type: "text", name: "pattern", required: true, placeholder: "^orders\\." }),
      h("label", {}, "Apply to"), h("select", { name: "apply-to" }, ["all", "queues", "exchanges"].map((t) => h("option", { value: t }, t))),
      h("label", {}, "Priority"), h("input", { type: "number", name: "priority", value: "0" }),
      h("label", {}, "Definition"), h("textarea", { name: "definition", placeholder: "max-length = 10000\ndead-letter-exchange = dlx" }),
      h("span", { class: "hint" }, "One key = value per line. Saving an existing name replaces that policy."),
      h("span", {}), primary("Save policy"));
    form.addEventListener("submit", submitting(ctx, form, async () => {
      const vhost = val(form, "vhost"), name = val(form, "name").trim();
      await api("PUT", apiPath("policies", vhost, name), { pattern: val(form, "pattern"), "apply-to": val(form, "apply-to"),
        priority: Number(val(form, "priority") || 0), definition: parseArgs(val(form, "definition")) });
      return `Policy ${name} saved.`;
    }));
    const panel = h("details", { class: "panel" }, h("summary", {}, "Add or edit a policy"), form);
    // edit loads a policy into the form.
    const edit = (p) => {
      form.elements.vhost.value = p.vhost;
      form.elements.name.value = p.name;
      form.elements.pattern.value = p.pattern;
      form.elements["apply-to"].value = p["apply-to"] || "all";
      form.elements.priority.value = String(p.priority || 0);
      form.elements.definition.value = Object.entries(p.definition || {}).map(([k, v]) => `${k} = ${typeof v === "string" ? v : JSON.stringify(v)}`).join("\n");
      panel.setAttribute("open", "");
    };
    return listPage(root, "Policies", [
      { label: "Virtual host", value: (p) => p.vhost, cell: (p) => p.vhost },
      { label: "Name", value: (p) => p.name, cell: (p) => p.name },
      { label: "Pattern", value: (p) => p.pattern, cell: (p) => h("code", {}, p.pattern) },
      { label: "Apply to", value: (p) => p["apply-to"], cell: (p) => p["apply-to"] },
      { label: "Definition", cell: (p) => argsText(p.definition) },
      { label: "Priority", num: true, value: (p) => p.priority, cell: (p) => String(p.priority) },
      { label: "", cell: (p) => [h("button", { type: "button", onclick: () => edit(p) }, "Edit"), " ",
        h("button", { type: "button", class: "danger", onclick: action(ctx, `Delete policy ${p.name}?`,
          async () => (await api("DELETE", apiPath("policies", p.vhost, p.name)), `Policy ${p.name} deleted.`)) }, "Delete")] },
    ], () => api("GET", "/api/policies"), [panel], { key: (p) => p.name, sortBy: 1, empty: "No policies." });
  },
};

// download hands a browser a JSON file; outside a browser it does nothing.
function download(name, data) {
  if (typeof URL.createObjectURL !== "function" || typeof Blob === "undefined") return;
  const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: "application/json" }));
  const a = h("a", { href: url, download: name });
  a.click?.();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export const definitions = {
  nav: "definitions",
  title: () => "Definitions",
  mount(root, ctx) {
    const exportForm = h("form", { class: "grid" },
      h("label", {}, "Virtual host"), h("select", { name: "vhost" }, h("option", { value: "" }, "All"), vhostOptions(ctx)),
      h("span", { class: "hint" }, "Users (with password hashes), virtual hosts, permissions, policies, durable queues, exchanges and bindings, as RabbitMQ exports them."),
      h("span", {}), primary("Download definitions"));
    exportForm.addEventListener("submit", submitting(ctx, exportForm, async () => {
      const vhost = val(exportForm, "vhost");
      const doc = await api("GET", vhost ? apiPath("definitions", vhost) : "/api/definitions");
      download(vhost ? `herald-definitions-${vhost.replace(/[^\w.-]/g, "_")}.json` : "herald-definitions.json", doc);
      return "Definitions exported.";
    }));
    const importForm = h("form", { class: "grid" },
      h("label", {}, "File"), h("input", { type: "file", name: "file", accept: "application/json,.json", required: true }),
      h("span", { class: "hint" }, "A RabbitMQ or Herald definitions export. Import merges: nothing is deleted."),
      h("span", {}), primary("Upload and import"));
    importForm.addEventListener("submit", submitting(ctx, importForm, async () => {
      const file = importForm.elements.file.files?.[0];
      if (!file) throw new Error("Choose a definitions file first.");
      let doc;
      try {
        doc = JSON.parse(await file.text());
      } catch (e) {
        throw new Error(`${file.name || "the file"} is not JSON: ${e.message}`);
      }
      await api("POST", "/api/definitions", doc);
      return "Definitions imported.";
    }));
    root.append(h("h1", {}, "Definitions"),
      h("div", { class: "panel" }, h("h2", {}, "Export"), exportForm),
      h("div", { class: "panel" }, h("h2", {}, "Import"), importForm));
    return { update() {}, dispose() {} };
  },
};
