// A line chart drawn on a <canvas>: no library, the console is offline.

import { h } from "./dom.js";
import { fmtAxis, niceMax } from "./format.js";

// LineChart draws the series lines [{key, label, color}] of samples
// {t, v: {key: number}} over the last windowMs milliseconds.
export class LineChart {
  constructor({ lines, windowMs = 5 * 60 * 1000, unit = "" }) {
    this.lines = lines;
    this.windowMs = windowMs;
    this.unit = unit;
    this.points = [];
    this.canvas = h("canvas", { role: "img", "aria-label": lines.map((l) => l.label).join(", ") + " over time" });
    const legend = h("div", { class: "legend" });
    for (const l of lines) {
      const sw = h("span", { class: "sw" });
      sw.style.background = l.color; // CSSOM, allowed by the page's CSP
      legend.append(h("span", {}, sw, l.label));
    }
    this.el = h("div", { class: "chart" }, this.canvas, legend);
    // Redraw when the layout changes the canvas' size.
    this.resize = new ResizeObserver(() => this.draw(this.points));
    this.resize.observe(this.canvas);
  }

  dispose() {
    this.resize.disconnect();
  }

  draw(points) {
    this.points = points;
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth;
    const ht = c.clientHeight;
    if (!w || !ht) return; // not laid out (hidden tab, detached)
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(ht * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(ht * dpr);
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, ht);

    const css = getComputedStyle(document.documentElement);
    const muted = css.getPropertyValue("--muted").trim() || "#5f6b7a";
    const line = css.getPropertyValue("--line").trim() || "#dde1e7";
    const left = 48, right = 10, top = 8, bottom = 20;
    const pw = w - left - right, ph = ht - top - bottom;
    const now = points.length ? points[points.length - 1].t : Date.now();
    const t0 = now - this.windowMs;

    let max = 0;
    for (const p of points) for (const l of this.lines) max = Math.max(max, p.v[l.key] || 0);
    max = niceMax(max);

    // Horizontal grid with value labels.
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = muted;
    g.strokeStyle = line;
    g.lineWidth = 1;
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const y = Math.round(top + ph - (ph * i) / 4) + 0.5;
      g.beginPath();
      g.moveTo(left, y);
      g.lineTo(left + pw, y);
      g.stroke();
      g.fillText(fmtAxis((max * i) / 4) + this.unit, left - 6, y);
    }
    // Time labels: minutes ago.
    g.textAlign = "center";
    g.textBaseline = "top";
    const steps = 5;
    for (let i = 0; i <= steps; i++) {
      const x = left + (pw * i) / steps;
      const ago = Math.round((this.windowMs * (steps - i)) / steps / 1000);
      g.fillText(ago === 0 ? "now" : ago >= 60 ? `-${+(ago / 60).toFixed(1)}m` : `-${ago}s`, x, top + ph + 5);
    }

    if (points.length === 0) {
      g.textBaseline = "middle";
      g.fillText("collecting data…", left + pw / 2, top + ph / 2);
      return;
    }
    const xOf = (t) => left + ((t - t0) / this.windowMs) * pw;
    const yOf = (v) => top + ph - (v / max) * ph;
    g.lineWidth = 2;
    g.lineJoin = "round";
    for (const l of this.lines) {
      g.strokeStyle = l.color;
      g.beginPath();
      let started = false;
      for (const p of points) {
        if (p.t < t0) continue;
        const x = xOf(p.t), y = yOf(p.v[l.key] || 0);
        if (started) g.lineTo(x, y);
        else g.moveTo(x, y);
        started = true;
      }
      g.stroke();
    }
  }
}

// colors reads the palette from the stylesheet's custom properties.
export function color(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(`--${name}`).trim();
}
