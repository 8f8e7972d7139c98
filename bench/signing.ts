// Signing cost per token: jsonwebtoken (what jobscope signs with) next to the hand-written compact JWS it replaced, for
// ES256 and HS256, KeyObjects built once. `node --import tsx bench/signing.ts [--n 20000]`; prints a table and, as its
// last line, one JSON object.
import { createSecretKey, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { TokenClaims } from '../src/interfaces.ts';
import type { SigningKey } from '../src/token/signing-keys.ts';
import { signToken } from '../src/token/signer.ts';
import { signCompact } from './handwritten-signer.ts';

const n = Number(process.argv[process.argv.indexOf('--n') + 1]) || 20_000;
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const secret = createSecretKey(randomBytes(32));
const keys: SigningKey[] = [
  { kid: 'es', alg: 'ES256', key: privateKey, verifyKey: publicKey },
  { kid: 'hs', alg: 'HS256', key: secret, verifyKey: secret },
];
const claims = (): TokenClaims => ({
  iss: 'jobscope',
  sub: 'job:bench',
  aud: ['svc'],
  scope: 'a:read',
  jti: randomUUID(),
  iat: 1_800_000_000,
  nbf: 1_800_000_000,
  exp: 1_800_000_900,
  run: 'bench:1',
  att: 1,
});

function usPerToken(sign: (k: SigningKey, c: TokenClaims) => string, key: SigningKey): number {
  for (let i = 0; i < Math.min(2000, n); i++) sign(key, claims());
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sign(key, claims());
  return Number(process.hrtime.bigint() - t) / n / 1000;
}

const out: Record<string, number | string> = { node: process.version };
console.log(`signing ${n} tokens per variant, Node ${process.version}`);
for (const key of keys) {
  // Both produce tokens the same library verifies.
  for (const sign of [signToken, signCompact])
    jwt.verify(sign(key, claims()), key.verifyKey, { algorithms: [key.alg], ignoreNotBefore: true, ignoreExpiration: true });
  // Alternate the order so neither always runs warm.
  const old1 = usPerToken(signCompact, key);
  const new1 = usPerToken(signToken, key);
  const new2 = usPerToken(signToken, key);
  const old2 = usPerToken(signCompact, key);
  const [jwtUs, oldUs] = [(new1 + new2) / 2, (old1 + old2) / 2];
  console.log(`${key.alg}: jsonwebtoken ${jwtUs.toFixed(1)} us/token, hand-written ${oldUs.toFixed(1)} us/token`);
  out[`sign_us_${key.alg.toLowerCase()}_jsonwebtoken`] = Number(jwtUs.toFixed(1));
  out[`sign_us_${key.alg.toLowerCase()}_handwritten`] = Number(oldUs.toFixed(1));
}
console.log(JSON.stringify(out));
