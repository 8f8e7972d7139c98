// The answer to a refused request, for any framework: status, RFC 6750 WWW-Authenticate and a JSON body with the reason.
import { TokenRejectedError, type RejectCode } from './errors.ts';

export interface Rejection {
  status: number;
  headers: Record<string, string>;
  body: { error: RejectCode; message: string };
}

/** The status, headers (WWW-Authenticate per RFC 6750) and JSON body of a rejection, for any framework. */
export function rejection(err: unknown): Rejection {
  // Anything that is not a deliberate rejection is a failure to verify: refuse (503), never let it through.
  const e = err instanceof TokenRejectedError ? err : new TokenRejectedError('unavailable', 'verification failed');
  let params: string;
  if (e.code === 'missing') params = '';
  else if (e.code === 'insufficient_scope')
    params = `error="insufficient_scope", error_description="${e.code}", scope="${e.requiredScope ?? ''}"`;
  else if (e.code === 'unavailable') params = `error="temporarily_unavailable", error_description="${e.code}"`;
  else if (e.code === 'conflicting_tokens' || e.code === 'token_in_query')
    params = `error="invalid_request", error_description="${e.code}"`;
  else params = `error="invalid_token", error_description="${e.code}"`;
  const headers: Record<string, string> = {
    'WWW-Authenticate': `Bearer realm="jobscope"${params ? ', ' + params : ''}`,
    'Cache-Control': 'no-store',
  };
  if (e.code === 'unavailable') headers['Retry-After'] = '1';
  return { status: e.status, headers, body: { error: e.code, message: e.message } };
}
