// A minimal stand-in for the browser DOM, enough to mount the console's
// pages in node and catch runtime errors without a browser. It renders
// nothing; text() flattens what a page shows so tests can look for it.

class Node {
  constructor() {
    this.childNodes = [];
    this.parentNode = null;
  }
  append(...cs) {
    for (const c of cs) {
      const n = typeof c === "string" ? new Text(c) : c;
      n.parentNode?.removeChild(n);
      n.parentNode = this;
      this.childNodes.push(n);
    }
  }
  appendChild(c) {
    this.append(c);
    return c;
  }
  removeChild(c) {
    this.childNodes = this.childNodes.filter((x) => x !== c);
    c.parentNode = null;
  }
  remove() {
    this.parentNode?.removeChild(this);
  }
  get textContent() {
    return this.childNodes.map((c) => c.textContent).join("");
  }
  set textContent(v) {
    for (const c of this.childNodes) c.parentNode = null;
    this.childNodes = [];
    if (v !== "") this.append(String(v));
  }
}

class Text extends Node {
  constructor(s) {
    super();
    this.data = s;
  }
  get textContent() {
    return this.data;
  }
  set textContent(v) {
    this.data = String(v);
  }
}

class Element extends Node {
  constructor(tag) {
    super();
    this.tagName = tag.toUpperCase();
    this.attributes = new Map();
    this.listeners = {};
    this.style = {};
    this._value = null;
    this.checked = false;
    this.disabled = false;
    this.clientWidth = 600;
    this.clientHeight = 180;
    this.width = 300;
    this.height = 150;
    const el = this;
    this.classList = {
      toggle(c, on) {
        const s = new Set((el.getAttribute("class") || "").split(" ").filter(Boolean));
        if (on ?? !s.has(c)) s.add(c);
        else s.delete(c);
        el.setAttribute("class", [...s].join(" "));
      },
      contains: (c) => (el.getAttribute("class") || "").split(" ").includes(c),
    };
  }
  setAttribute(k, v) {
    this.attributes.set(k, String(v));
  }
  // value as browsers have it: a select without a choice has its first
  // option's value.
  get value() {
    if (this._value !== null) return this._value;
    if (this.tagName === "SELECT") return this.options[0]?.value ?? "";
    return this.getAttribute("value") ?? "";
  }
  set value(v) {
    this._value = String(v);
  }
  getAttribute(k) {
    return this.attributes.has(k) ? this.attributes.get(k) : null;
  }
  addEventListener(type, fn) {
    (this.listeners[type] ||= []).push(fn);
  }
  async dispatch(type, ev = {}) {
    ev.preventDefault ||= () => {};
    for (const fn of this.listeners[type] || []) await fn(ev);
  }
  get childElementCount() {
    return this.childNodes.filter((c) => c instanceof Element).length;
  }
  get options() {
    return this.all().filter((e) => e.tagName === "OPTION");
  }
  all() {
    const out = [];
    const walk = (n) => {
      for (const c of n.childNodes) if (c instanceof Element) {
        out.push(c);
        walk(c);
      }
    };
    walk(this);
    return out;
  }
  querySelectorAll(sel) {
    return this.all().filter((e) => e.tagName === sel.toUpperCase());
  }
  querySelector(sel) {
    return this.querySelectorAll(sel)[0] || null;
  }
  get type() {
    return this.getAttribute("type") || "";
  }
  get elements() {
    const named = this.all().filter((e) => e.getAttribute("name"));
    const out = { namedItem: (n) => named.find((e) => e.getAttribute("name") === n) || null };
    for (const e of named) out[e.getAttribute("name")] ||= e;
    return out;
  }
  focus() {}
  getContext() {
    // A 2D context that accepts every call.
    return new Proxy({}, { get: (t, k) => (k in t ? t[k] : () => {}), set: (t, k, v) => ((t[k] = v), true) });
  }
}

export function install() {
  const document = {
    documentElement: new Element("html"),
    hidden: false,
    createElement: (t) => new Element(t),
    getElementById: () => null,
    addEventListener() {},
  };
  globalThis.document = document;
  globalThis.Node = Node;
  globalThis.window = { devicePixelRatio: 2, addEventListener() {} };
  globalThis.ResizeObserver = class {
    constructor(fn) {
      this.fn = fn;
    }
    observe() {
      this.fn();
    }
    disconnect() {}
  };
  globalThis.getComputedStyle = () => ({ getPropertyValue: (n) => (n === "--muted" ? "#5f6b7a" : "#123456") });
  globalThis.confirm = () => true;
  const store = new Map();
  globalThis.sessionStorage = {
    getItem: (k) => (store.has(k) ? store.get(k) : null),
    setItem: (k, v) => store.set(k, String(v)),
    removeItem: (k) => store.delete(k),
  };
  return { Element };
}
