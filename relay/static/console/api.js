// The console's only door to the relay: same-origin fetches with the key in the Authorization
// header. The key lives in this tab's sessionStorage (never a cookie, a URL or localStorage).
const STORE = "relay.console.key";

export const session = {
  get key() { return sessionStorage.getItem(STORE); },
  set key(value) { sessionStorage.setItem(STORE, value); },
  clear() { sessionStorage.removeItem(STORE); },
};

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// Both error shapes the relay answers with (OpenAI's and Anthropic's) carry error.message.
async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  let code = null;
  try {
    const body = await response.json();
    message = body.error?.message || message;
    code = body.error?.code || body.error?.type || null;
  } catch { /* not JSON: the status says enough */ }
  return new ApiError(response.status, message, code);
}

export async function request(method, path, { body, idempotent = false, key = session.key, raw = false } = {}) {
  const headers = { Authorization: `Bearer ${key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  // Every write carries an Idempotency-Key: a retried or double-submitted write is applied once
  // where the route honours it (top-ups), and is harmless elsewhere.
  if (method !== "GET") headers["Idempotency-Key"] = typeof idempotent === "string" ? idempotent : crypto.randomUUID();
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer",
  });
  if (!response.ok) throw await failure(response);
  return raw ? response : response.json();
}

export const get = (path, options) => request("GET", path, options);

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value) search.set(name, value);
  const text = search.toString();
  return text ? `?${text}` : "";
}
