// Reason codes: every way a token or a request is refused, each with its HTTP status. Stable: services, clients and alerts
// branch on them, so a code is never renamed or given another meaning; new ones are only added.

/** Every reason a token or request is refused. */
export const REJECT_CODES = [
  'missing',
  'malformed',
  'conflicting_tokens',
  'token_in_query',
  'bad_algorithm',
  'bad_type',
  'unknown_key',
  'bad_signature',
  'expired',
  'not_yet_valid',
  'lifetime_too_long',
  'bad_issuer',
  'bad_audience',
  'missing_claim',
  'revoked',
  'insufficient_scope',
  'unavailable',
] as const;
export type RejectCode = (typeof REJECT_CODES)[number];

const STATUS: Record<RejectCode, number> = {
  missing: 401,
  malformed: 401,
  conflicting_tokens: 401,
  token_in_query: 401,
  bad_algorithm: 401,
  bad_type: 401,
  unknown_key: 401,
  bad_signature: 401,
  expired: 401,
  not_yet_valid: 401,
  lifetime_too_long: 401,
  bad_issuer: 401,
  bad_audience: 401,
  missing_claim: 401,
  revoked: 401,
  insufficient_scope: 403,
  unavailable: 503,
};

/**
 * A refusal. Its message is written here, never copied from a library error or from the token: no part of a token (not
 * even its kid) can reach a log through it.
 */
export class TokenRejectedError extends Error {
  readonly code: RejectCode;
  /** 401, 403 (insufficient_scope) or 503 (unavailable: the verifier cannot decide, so it refuses). */
  readonly status: number;
  /** For insufficient_scope: the scopes the route requires. */
  readonly requiredScope: string | undefined;
  constructor(code: RejectCode, message: string, requiredScope?: string) {
    super(message);
    this.name = 'TokenRejectedError';
    this.code = code;
    this.status = STATUS[code];
    this.requiredScope = requiredScope;
  }
}
