// Tiny DOM helpers. Every piece of server data goes through textContent
// (never parsed as HTML), so queue names and payloads cannot inject markup.

// h builds an element: h("a", {href: "#/", class: "x", onclick: fn}, "text", child).
// Attributes named on* become listeners; value, checked, disabled and
// selected are set as properties; null and false attributes are skipped.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2), v);
    } else if (k === "value" || k === "checked" || k === "disabled" || k === "selected") {
      el[k] = v;
    } else if (k === "text") {
      el.textContent = v;
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

// replace swaps an element's children for new ones.
export function replace(el, ...children) {
  el.textContent = "";
  append(el, children);
  return el;
}

// setText updates a text node only when it changed, so that periodic
// refreshes do not disturb a text selection.
export function setText(el, text) {
  const s = String(text);
  if (el.textContent !== s) el.textContent = s;
}

// field returns a form's control value by name.
export function val(form, name) {
  const c = form.elements.namedItem(name);
  if (!c) return undefined;
  return c.type === "checkbox" ? c.checked : c.value;
}
