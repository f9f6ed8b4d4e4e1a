// Every request the page makes: JSON, same origin, the token (when one was given) as a bearer
// header, never in a URL. A 401 asks for the token again.

const KEY = 'warden.token';
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: t => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

export function whenUnauthorized(f) {
  onUnauthorized = f;
}

export function headers(extra = {}) {
  const out = { Accept: 'application/json', ...extra };
  const t = token.get();
  if (t) out.Authorization = `Bearer ${t}`;
  return out;
}

/// GET (or `method` with a JSON `body`); the answer's JSON, or an ApiError with the API's
/// own message.
export async function api(path, { method = 'GET', body, signal } = {}) {
  const init = { method, headers: headers(), signal, credentials: 'omit', cache: 'no-store' };
  if (method !== 'GET') {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body === undefined ? {} : body);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, `Warden is unreachable (${e.message})`);
  }
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (r.status === 401) {
    onUnauthorized();
    throw new ApiError(401, 'a bearer token is required');
  }
  if (!r.ok) {
    const message = (json && json.error && json.error.message) || text || r.statusText;
    throw new ApiError(r.status, `${r.status}: ${message}`);
  }
  return json;
}

export const enc = encodeURIComponent;
