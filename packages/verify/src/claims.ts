// The claims of a jobscope run token and every verdict on them. jsonwebtoken verifies the signature (and the algorithm) and
// nothing else; the claims are judged here, each failure a TokenRejectedError with its stable code, never a library's
// message to be read back: present and typed, nbf, exp, iat not in the future, a lifetime (exp - iat) no longer than the
// runner hands out, aud, iss. Pure functions: no I/O, the clock is an argument.
import { TokenRejectedError } from './errors.ts';

/** The claims of a verified jobscope run token (RFC 9068 shape plus jobscope's `run` and `att`). */
export interface JobTokenClaims {
  iss: string;
  /** `job:<name>`, or a workload (`consumer:orders`) for a token of background work outside runs. */
  sub: string;
  /** Always a list here (a single-string `aud` is normalised). */
  aud: string[];
  /** Space-separated scopes ('' when the token has none). */
  scope: string;
  jti: string;
  iat: number;
  /** `iat` when the token has no nbf. */
  nbf: number;
  exp: number;
  /** The run id (`<job>:<id>`). */
  run: string;
  /** Attempt number. */
  att: number;
  /** RFC 8693 actor: who or what triggered the run (`user:<name>`, or the parent job and run). */
  act?: { sub: string; run?: string };
  /** What a background-work scope handles (a message id), when it said so. */
  id?: string;
}

const REQUIRED = ['iss', 'sub', 'aud', 'jti', 'iat', 'exp', 'run'] as const;
const JTI = /^[A-Za-z0-9-]{1,64}$/;

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * Presence and types of the claims, on a payload whose signature has been verified. Throws `missing_claim` or
 * `malformed`; returns the claims normalised (`aud` a list, `nbf` defaulting to `iat`, `scope` to '').
 */
export function typedClaims(payload: unknown): JobTokenClaims {
  if (!payload || typeof payload !== 'object' || Array.isArray(payload)) {
    throw new TokenRejectedError('malformed', 'payload is not a JSON object');
  }
  const p = payload as Record<string, unknown>;
  for (const name of REQUIRED) {
    const v = p[name];
    if (v === undefined || v === null || v === '' || (Array.isArray(v) && v.length === 0)) {
      throw new TokenRejectedError('missing_claim', `claim "${name}" is missing`);
    }
  }
  const { exp, nbf, iat, iss, aud, sub, jti, scope, run, att, act } = p;
  if (!isNumber(exp) || !isNumber(iat) || (nbf !== undefined && !isNumber(nbf))) {
    throw new TokenRejectedError('malformed', 'exp, iat and nbf must be numbers');
  }
  if (typeof iss !== 'string' || typeof sub !== 'string' || typeof run !== 'string') {
    throw new TokenRejectedError('malformed', 'iss, sub and run must be strings');
  }
  if (typeof aud !== 'string' && !(Array.isArray(aud) && aud.every((a) => typeof a === 'string'))) {
    throw new TokenRejectedError('malformed', 'aud must be a string or a list of strings');
  }
  if (scope !== undefined && typeof scope !== 'string') throw new TokenRejectedError('malformed', 'scope must be a string');
  if (typeof jti !== 'string' || !JTI.test(jti)) throw new TokenRejectedError('malformed', 'jti is not a token id');
  if (att !== undefined && !isNumber(att)) throw new TokenRejectedError('malformed', 'att must be a number');
  if (act !== undefined && (!act || typeof act !== 'object' || typeof (act as { sub?: unknown }).sub !== 'string')) {
    throw new TokenRejectedError('malformed', 'act must be an object with a string sub');
  }
  if (p.id !== undefined && typeof p.id !== 'string') throw new TokenRejectedError('malformed', 'id must be a string');
  return {
    ...(p as unknown as JobTokenClaims),
    aud: Array.isArray(aud) ? aud : [aud],
    nbf: nbf ?? iat,
    scope: scope ?? '',
  };
}

/** What the claims of an authentic token must satisfy. */
export interface ClaimRules {
  /** This service: `aud` must contain it. */
  audience: string;
  /** `iss` must be exactly this. */
  issuer: string;
  /** Seconds of clock skew tolerated on nbf, exp and iat. */
  toleranceSec: number;
  /** The longest lifetime (exp - iat) accepted, in seconds. */
  maxLifetimeSec: number;
}

/**
 * Every verdict on the payload of a token whose signature has verified, in this order, the first failure thrown: claims
 * present and typed (`missing_claim`, `malformed`), nbf (`not_yet_valid`), exp (`expired`), iat (`not_yet_valid`), lifetime
 * (`lifetime_too_long`), aud (`bad_audience`), iss (`bad_issuer`). Returns the claims normalised (see typedClaims).
 */
export function checkClaims(payload: unknown, rules: ClaimRules, nowSec: number): JobTokenClaims {
  const claims = typedClaims(payload);
  // nbf only when the token has one (typedClaims defaults it to iat; a future iat is the iat check's to report).
  if ((payload as { nbf?: unknown }).nbf !== undefined) checkNotBefore(claims, nowSec, rules.toleranceSec);
  checkExpiry(claims, nowSec, rules.toleranceSec);
  checkIssuedAt(claims, nowSec, rules.toleranceSec);
  checkLifetime(claims, rules.maxLifetimeSec);
  checkAudience(claims, rules.audience);
  checkIssuer(claims, rules.issuer);
  return claims;
}

/** Not before nbf (less the tolerance). */
export function checkNotBefore(claims: JobTokenClaims, nowSec: number, toleranceSec: number): void {
  if (claims.nbf > nowSec + toleranceSec) throw new TokenRejectedError('not_yet_valid', 'token not valid yet (nbf)');
}

/** Expired from exp on (plus the tolerance). */
export function checkExpiry(claims: JobTokenClaims, nowSec: number, toleranceSec: number): void {
  if (nowSec >= claims.exp + toleranceSec) throw new TokenRejectedError('expired', 'token expired');
}

/** A token stamped as issued in the future is refused. */
export function checkIssuedAt(claims: JobTokenClaims, nowSec: number, toleranceSec: number): void {
  if (claims.iat > nowSec + toleranceSec) throw new TokenRejectedError('not_yet_valid', 'token issued in the future (iat)');
}

/** A correctly signed token is still refused if it claims to live longer than any token the runner hands out. */
export function checkLifetime(claims: JobTokenClaims, maxLifetimeSec: number): void {
  if (claims.exp - claims.iat > maxLifetimeSec) {
    throw new TokenRejectedError('lifetime_too_long', `token lifetime exceeds ${maxLifetimeSec} s`);
  }
}

/** The token must name this service among its audiences. */
export function checkAudience(claims: JobTokenClaims, audience: string): void {
  if (!claims.aud.includes(audience)) throw new TokenRejectedError('bad_audience', `token is not for audience "${audience}"`);
}

/** The token must come from the runner this service trusts. */
export function checkIssuer(claims: JobTokenClaims, issuer: string): void {
  if (claims.iss !== issuer) throw new TokenRejectedError('bad_issuer', 'issuer is not accepted');
}

/** Scopes as a list: a space-separated string or a list; empty entries dropped. */
export function scopesOf(scope: string | string[] | undefined): string[] {
  if (scope === undefined) return [];
  const list = typeof scope === 'string' ? scope.split(' ') : scope;
  return list.filter((s) => typeof s === 'string' && s.length > 0);
}

/** The scopes of `required` that the token does not grant. */
export function missingScopes(claims: JobTokenClaims, required: string[]): string[] {
  const granted = new Set(claims.scope.split(' '));
  return required.filter((s) => !granted.has(s));
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600 };

/** Seconds from a number of seconds or a duration such as '90s', '15m', '1h'; undefined when it is neither. */
export function seconds(value: number | string): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value > 0 ? value : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$/.exec(value);
  if (!m) return undefined;
  const n = Number(m[1]) * UNIT_SECONDS[m[2] ?? 's'];
  return n > 0 ? n : undefined;
}
