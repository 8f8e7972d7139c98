// The hand-written compact JWS signer jobscope used before signing went through jsonwebtoken (kept only so the benchmark can
// put the two side by side). Not used by src/.
import { createHmac, sign as cryptoSign, type KeyObject } from 'node:crypto';
import type { SigningKey } from '../src/token/signing-keys.ts';

function signature(alg: string, key: KeyObject, input: string): string {
  return alg === 'ES256'
    ? cryptoSign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')
    : createHmac('sha256', key).update(input).digest('base64url');
}

function headerOf(key: SigningKey): string {
  return Buffer.from(JSON.stringify({ alg: key.alg, typ: 'at+jwt', kid: key.kid })).toString('base64url');
}

function signingInput(header: string, claims: object): string {
  return `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
}

/** The compact JWS of `claims`, header `{ alg, typ: 'at+jwt', kid }`. */
export function signCompact(key: SigningKey, claims: object): string {
  const input = signingInput(headerOf(key), claims);
  return `${input}.${signature(key.alg, key.key, input)}`;
}
