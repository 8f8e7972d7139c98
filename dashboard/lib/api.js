// The JSON API under /api, and who is logged in.

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

/** The login (GET /api/me), filled in by app.js before a page starts. */
export const me = { user: '', role: 'viewer' };

// Admins and operators may trigger, cancel, retry and pause; viewers only look.
export const isAdmin = () => me.role === 'admin' || me.role === 'operator';

/** Set by Log out: the pages' polling stops asking (a refused request would bring the login prompt back). */
let loggedOut = false;

export function stopAsking() {
  loggedOut = true;
}

export async function api(path, options = {}) {
  if (loggedOut) throw new ApiError(401, { message: 'logged out' });
  const res = await fetch(`/api/${path}`, {
    ...options,
    headers: { Accept: 'application/json', ...(options.body ? { 'Content-Type': 'application/json' } : {}) },
    credentials: 'same-origin',
  });
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

/** A POST without a body (pause, resume, retry, cancel): a refusal is shown in an alert. */
export function post(path) {
  return api(path, { method: 'POST' }).catch((err) => alert(err.message));
}
