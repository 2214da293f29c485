// Number and name formatting shared by the pages. Pure: tested with node.

const intFmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

export function fmtInt(n) {
  return Number.isFinite(n) ? intFmt.format(n) : "–";
}

// fmtRate prints messages per second: 1 decimal below 100/s, none above.
export function fmtRate(r) {
  if (r === null || r === undefined || !Number.isFinite(r)) return "–";
  if (r === 0) return "0.0/s";
  if (r < 100) return r.toFixed(1) + "/s";
  return intFmt.format(Math.round(r)) + "/s";
}

export function fmtBytes(n) {
  if (!Number.isFinite(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return (i === 0 ? String(n) : n.toFixed(1)) + " " + units[i];
}

// fmtAxis prints a chart axis value compactly: 1.5k, 2M.
export function fmtAxis(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return +(v / 1e6).toFixed(1) + "M";
  if (a >= 1e3) return +(v / 1e3).toFixed(1) + "k";
  if (a > 0 && a < 10) return +v.toFixed(1) + "";
  return Math.round(v) + "";
}

// niceMax rounds a chart's maximum up to 1, 2 or 5 times a power of ten.
export function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

export function exchangeLabel(name) {
  return name === "" ? "(AMQP default)" : name;
}

// features lists a queue's or exchange's flags as RabbitMQ's UI does:
// D durable, AD auto-delete, Excl exclusive, I internal, Args arguments.
export function features(o) {
  const out = [];
  if (o.durable) out.push(["D", "durable"]);
  if (o.auto_delete) out.push(["AD", "auto-delete"]);
  if (o.exclusive) out.push(["Excl", "exclusive"]);
  if (o.internal) out.push(["I", "internal"]);
  const args = Object.keys(o.arguments || {});
  if (args.length) out.push(["Args", args.map((k) => `${k}: ${JSON.stringify(o.arguments[k])}`).join("\n")]);
  return out;
}

// parseArgs reads "key = value" lines into an object, guessing types as
// RabbitMQ's UI does: integers and decimals become numbers, true/false
// booleans, a value in double quotes stays a string, anything else is a
// string. It throws on a line without "=".
export function parseArgs(text) {
  const out = {};
  for (const [i, raw] of (text || "").split("\n").entries()) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new Error(`line ${i + 1}: expected key = value`);
    const k = line.slice(0, eq).trim();
    const v = line.slice(eq + 1).trim();
    if (/^-?\d+(\.\d+)?$/.test(v)) out[k] = Number(v);
    else if (v === "true" || v === "false") out[k] = v === "true";
    else if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) out[k] = v.slice(1, -1);
    else out[k] = v;
  }
  return out;
}
