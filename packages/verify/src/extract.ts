// Finding the token in a request: headers only, never the query string, and never two different tokens.
import { TokenRejectedError } from './errors.ts';

/** Minimal request shape, so the extractor works with Express, node:http or anything else. */
export interface RequestLike {
  headers: Record<string, string | string[] | undefined>;
  /** node:http's raw header list: lets a repeated Authorization header be seen (node keeps only the first). */
  rawHeaders?: string[];
  url?: string;
}

const QUERY_TOKEN_NAMES = new Set(['access_token', 'token', 'x-access-token', 'jwt', 'id_token', 'authorization', 'bearer']);
const JWT_SHAPE = /eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*/;

function tokenInQuery(url: string | undefined): boolean {
  const q = url?.indexOf('?') ?? -1;
  if (!url || q < 0) return false;
  const query = url.slice(q + 1);
  if (JWT_SHAPE.test(query)) return true;
  try {
    for (const [name, value] of new URLSearchParams(query)) {
      if (QUERY_TOKEN_NAMES.has(name.toLowerCase()) || JWT_SHAPE.test(value)) return true;
    }
  } catch {
    return true;
  }
  return false;
}

/**
 * Finds the token in a request: `Authorization: Bearer` first, `X-Access-Token` for compatibility. Both present and
 * different is a rejection, and so is a repeated header; a token in the query string is a rejection even when a header
 * carries one too (the URL has already been written to some access log: refuse it so the caller notices).
 */
export function extractToken(req: RequestLike): string {
  if (tokenInQuery(req.url)) {
    throw new TokenRejectedError('token_in_query', 'tokens are never accepted in the query string: send Authorization: Bearer');
  }
  if (req.rawHeaders) {
    const count = (name: string) => req.rawHeaders!.filter((h, i) => i % 2 === 0 && h.toLowerCase() === name).length;
    if (count('authorization') > 1 || count('x-access-token') > 1) {
      throw new TokenRejectedError('conflicting_tokens', 'a token header appears more than once');
    }
  }
  const auth = req.headers.authorization;
  const alt = req.headers['x-access-token'];
  if (Array.isArray(auth) || Array.isArray(alt))
    throw new TokenRejectedError('conflicting_tokens', 'a token header appears more than once');
  let bearer: string | undefined;
  if (auth !== undefined && auth.trim() !== '') {
    const m = /^Bearer +([^\s]+) *$/i.exec(auth);
    if (!m) throw new TokenRejectedError('malformed', 'Authorization header is not "Bearer <token>"');
    bearer = m[1];
  }
  const other = alt?.trim() || undefined;
  if (bearer && other && bearer !== other) {
    throw new TokenRejectedError('conflicting_tokens', 'Authorization and X-Access-Token carry different tokens');
  }
  const token = bearer ?? other;
  if (!token) throw new TokenRejectedError('missing', 'no token: send Authorization: Bearer <token>');
  return token;
}
