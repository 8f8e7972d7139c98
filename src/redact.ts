// The one place secrets are scrubbed from what leaves a process: log lines, run results, progress, errors, Bull Board's
// views, messages that name a Redis URL. Two ways of finding a token:
// - by value: a run knows its own tokens, so what its handler returns, logs or throws is cleaned of exactly them (and of
//   their signatures alone: header and claims are not secret, so with them a signature rebuilds the token);
// - by shape: anything that looks like a compact JWS is masked in every log line and everything Bull Board shows.

export const REDACTED = '[redacted token]';

const JWT_LIKE = /eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g;

/** Removes these tokens (and their signatures) from a string. */
export function redactTokens(text: string, tokens: Iterable<string>): string {
  let out = text;
  for (const t of tokens) {
    if (!t) continue;
    if (out.includes(t)) out = out.split(t).join(REDACTED);
    const signature = t.slice(t.lastIndexOf('.') + 1);
    // JSON escaping cannot hide it: a base64url signature has no character JSON would escape.
    if (signature.length >= 16 && out.includes(signature)) out = out.split(signature).join(REDACTED);
  }
  return out;
}

/** A JSON value without these tokens (undefined becomes null, as BullMQ would store it). */
export function redactValue<T>(value: T, tokens: string[]): T {
  if (value === undefined) return null as T;
  // Nothing a token could hide in (a number's or a boolean's JSON is digits or a word).
  if (value === null || typeof value === 'number' || typeof value === 'boolean') return value;
  const text = JSON.stringify(value);
  if (text === undefined) return null as T;
  const redacted = redactTokens(text, tokens);
  return redacted === text ? value : (JSON.parse(redacted) as T);
}

/** Masks anything shaped like a JWT. */
export function maskTokens(text: string): string {
  return text.replace(JWT_LIKE, REDACTED);
}

/** A value with anything JWT-shaped masked (strings directly, other values through their JSON). */
export function maskValue(value: unknown): unknown {
  if (value === undefined || value === null) return value;
  if (typeof value === 'string') return maskTokens(value);
  const text = JSON.stringify(value);
  if (text === undefined) return value;
  const masked = maskTokens(text);
  return masked === text ? value : (JSON.parse(masked) as unknown);
}

/** A URL without its password, for messages (`redis://:***@host`), also the multi-host Sentinel and Cluster forms. */
export function redactUrl(url: string): string {
  return url.replace(/(\/\/[^:@/]*:)[^@/]*@/, '$1***@').replace(/(sentinelPassword=)[^&]*/, '$1***');
}
