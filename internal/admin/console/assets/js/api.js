// The management API client. Credentials live in sessionStorage (gone
// when the tab closes) and travel as an explicit Authorization header.
// fetch runs with credentials "omit": an explicit header is still sent,
// but a 401 does not make the browser pop its own login dialog nor reuse
// cached basic credentials.

const KEY = "herald.console.auth";

export class ApiError extends Error {
  constructor(status, reason, body) {
    super(reason);
    this.status = status; // 0 when the server could not be reached
    this.body = body;
  }
}

export function basicAuth(user, pass) {
  // btoa takes Latin-1 only: encode UTF-8 first, as curl does.
  const bytes = new TextEncoder().encode(`${user}:${pass}`);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return "Basic " + btoa(bin);
}

export function session() {
  try {
    const s = JSON.parse(sessionStorage.getItem(KEY) || "null");
    return s && typeof s.header === "string" ? s : null;
  } catch {
    return null;
  }
}

export function saveSession(user, header) {
  sessionStorage.setItem(KEY, JSON.stringify({ user, header }));
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
}

// api calls the management API and returns the decoded JSON (null for an
// empty answer such as 204). It throws ApiError with the server's reason.
// extra adds request headers (X-Reason when closing a connection).
export async function api(method, path, body, header, extra) {
  const headers = { Accept: "application/json", ...extra };
  const auth = header || session()?.header;
  if (auth) headers.Authorization = auth;
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `cannot reach the server (${e.message})`);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const reason = (data && (data.reason || data.error)) || res.statusText || `HTTP ${res.status}`;
    throw new ApiError(res.status, reason, data);
  }
  return data;
}

// apiPath joins URL-encoded segments: apiPath("queues", "/", "q") is
// "/api/queues/%2F/q" (the vhost "/" is "%2F", as RabbitMQ wants).
export function apiPath(...segs) {
  return "/api/" + segs.map((s) => encodeURIComponent(s)).join("/");
}

// exchangeSeg is the path segment of an exchange: the default exchange
// "" is "amq.default" in the management API.
export function exchangeSeg(name) {
  return name === "" ? "amq.default" : name;
}
