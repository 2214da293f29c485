// Streams (x-queue-type: stream): each stream's retained range, size and
// segments, and on a stream's page who reads it now (from which offset,
// how far behind) and the stored positions of its named consumers
// (x-stream-consumer), which can be moved or forgotten.

import { api, apiPath } from "../api.js";
import { h, replace } from "../dom.js";
import { fmtBytes, fmtInt, fmtRate } from "../format.js";
import { detailsList, matcher, queueHref, SortTable } from "./common.js";

export function streamHref(vhost, name) {
  return `#/streams/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`;
}

// offsetsText prints a stream's retained range: "0 – 41" or "empty".
export function offsetsText(s) {
  if (!Number.isFinite(s.last_offset) || s.last_offset < (s.first_offset ?? 0)) return "empty";
  return `${fmtInt(s.first_offset)} – ${fmtInt(s.last_offset)}`;
}

export const streams = {
  nav: "streams",
  title: () => "Streams",
  mount(root) {
    const filter = h("input", { type: "search", placeholder: "Filter by name (/regex/ works)", "aria-label": "Filter streams" });
    const count = h("span", { class: "muted" });
    const table = new SortTable([
      { label: "Virtual host", value: (q) => q.vhost, cell: (q) => q.vhost },
      { label: "Name", value: (q) => q.name, cell: (q) => h("a", { href: streamHref(q.vhost, q.name) }, q.name) },
      { label: "First offset", num: true, value: (q) => q.first_offset ?? -1, cell: (q) => fmtInt(q.first_offset) },
      { label: "Last offset", num: true, value: (q) => q.last_offset ?? -1, cell: (q) => (q.last_offset >= 0 ? fmtInt(q.last_offset) : "–") },
      { label: "Messages", num: true, value: (q) => q.messages, cell: (q) => fmtInt(q.messages) },
      { label: "Size", num: true, value: (q) => q.message_bytes ?? 0, cell: (q) => fmtBytes(q.message_bytes) },
      { label: "Segments", num: true, value: (q) => q.segments ?? 0, cell: (q) => fmtInt(q.segments) },
      { label: "Consumers", num: true, value: (q) => q.consumers, cell: (q) => fmtInt(q.consumers) },
      { label: "Incoming", num: true, title: "messages appended per second", value: (q) => q.rates?.publish ?? -1, cell: (q) => fmtRate(q.rates?.publish) },
      { label: "Deliver", num: true, value: (q) => q.rates?.deliver_get ?? -1, cell: (q) => fmtRate(q.rates?.deliver_get) },
    ], { sortBy: 1, empty: "No streams. Declare a durable queue with x-queue-type: stream." });
    let all = [];
    const render = () => {
      const match = matcher(filter.value);
      const rows = all.filter((q) => match(q.name));
      table.setRows(rows);
      count.textContent = `${rows.length} of ${all.length} streams`;
    };
    filter.addEventListener("input", render);
    root.append(
      h("h1", {}, "Streams"),
      h("div", { class: "panel" }, h("div", { class: "toolbar" }, filter, h("span", { class: "grow" }), count), table.el),
    );
    return {
      update(state) {
        all = state.queues.filter((q) => q.type === "stream");
        render();
      },
    };
  },
};

export const stream = {
  nav: "streams",
  title: (p) => "Stream " + p.name,
  mount(root, ctx, params) {
    const summary = h("div", {});
    const readers = new SortTable([
      { label: "Consumer", value: (r) => r.name || r.consumers.join(","),
        cell: (r) => (r.name ? h("span", {}, r.name, h("span", { class: "muted" }, " (named)")) : h("span", { class: "muted" }, "anonymous")) },
      { label: "Tags", value: (r) => r.consumers.join(", "), cell: (r) => h("span", { class: "mono" }, r.consumers.join(", ")) },
      { label: "Offset", num: true, title: "the offset after the last message delivered", value: (r) => r.offset, cell: (r) => fmtInt(r.offset) },
      { label: "Lag", num: true, title: "messages from the offset to the end of the stream", value: (r) => r.lag, cell: (r) => fmtInt(r.lag) },
      { label: "Unacked", num: true, value: (r) => r.unacked, cell: (r) => fmtInt(r.unacked) },
    ], { sortBy: 0, empty: "Nobody reads this stream now." });
    const positions = new SortTable([
      { label: "Name", value: (c) => c.name, cell: (c) => c.name },
      { label: "Stored offset", num: true, title: "where the consumer resumes: the offset after its last acknowledged message",
        value: (c) => (c.stored ? c.offset : -1), cell: (c) => (c.stored ? fmtInt(c.offset) : "– (nothing acked yet)") },
      { label: "Members", value: (c) => c.members.length, cell: (c) => h("span", { class: "mono" }, c.members.join(", ") || "–") },
      { label: "", cell: (c) => positionButtons(ctx, params, c) },
    ], { sortBy: 0, empty: "No named consumer (x-stream-consumer) has a stored position." });
    root.append(
      h("h1", {}, "Stream", h("span", { class: "sub" }, params.name + " in " + params.vhost)),
      h("div", { class: "panel" }, summary),
      h("h2", {}, "Reading now"),
      h("div", { class: "panel" }, readers.el),
      h("h2", {}, "Stored positions"),
      h("div", { class: "panel" }, positions.el),
    );
    const path = apiPath("streams", params.vhost, params.name);
    let disposed = false;
    return {
      async update() {
        const s = await api("GET", path);
        if (disposed) return;
        replace(summary, detailsList([
          ["Offsets", offsetsText(s)],
          ["Messages", fmtInt(s.messages)],
          ["Size", fmtBytes(s.message_bytes)],
          ["Segments", fmtInt(s.segments)],
          ["Queue page", h("a", { href: queueHref(params.vhost, params.name) }, "bindings, publish, read a page")],
        ]));
        readers.setRows(s.readers);
        positions.setRows(s.consumers);
      },
      dispose() { disposed = true; },
    };
  },
};

// positionButtons move (PUT) or forget (DELETE) a named consumer's
// stored position: it resumes at the offset typed in.
function positionButtons(ctx, params, c) {
  const base = apiPath("streams", params.vhost, params.name, "consumers", c.name);
  const input = h("input", { type: "number", min: "0", step: "1", name: "offset", value: String(c.offset), "aria-label": `New offset for ${c.name}`, class: "small" });
  const act = async (btn, action) => {
    btn.disabled = true;
    try {
      ctx.flash(await action());
      ctx.refresh();
    } catch (ex) {
      ctx.flash(ex.message, true);
    } finally {
      btn.disabled = false;
    }
  };
  const move = h("button", { class: "small", type: "button", title: "Store this offset: the consumer resumes there" }, "Set offset");
  move.addEventListener("click", () => {
    const n = Number(input.value);
    if (input.value === "" || !Number.isInteger(n) || n < 0) return ctx.flash("The offset must be a non-negative integer.", true);
    act(move, async () => {
      await api("PUT", base, { offset: n });
      return `Position of ${c.name} set to ${n}.`;
    });
  });
  const forget = h("button", { class: "danger small", type: "button", title: "Forget the stored position" }, "Forget");
  forget.addEventListener("click", () => {
    if (!confirm(`Forget the stored position of "${c.name}"?`)) return;
    act(forget, async () => {
      await api("DELETE", base);
      return `Position of ${c.name} forgotten.`;
    });
  });
  return c.stored ? h("span", { class: "row-actions" }, input, " ", move, " ", forget) : h("span", { class: "row-actions" }, input, " ", move);
}
