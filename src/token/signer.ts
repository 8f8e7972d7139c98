// Signing run tokens through jsonwebtoken, with the KeyObject built once (jsonwebtoken re-parses a PEM string on every call;
// a KeyObject costs it nothing: notes/BASELINE.md). Header { alg, typ: 'at+jwt', kid } (RFC 9068).
import jwt from 'jsonwebtoken';
import type { TokenClaims } from '../interfaces.ts';
import type { SigningKey } from './keys.ts';

/** The compact JWS of `claims` (which carry their own iat, nbf and exp). */
export function signToken(key: SigningKey, claims: TokenClaims): string {
  return jwt.sign(claims, key.key, { algorithm: key.alg, header: { alg: key.alg, typ: 'at+jwt', kid: key.kid } });
}
