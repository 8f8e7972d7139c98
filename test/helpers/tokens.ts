// Crafting tokens for verifier tests, by hand (node:crypto), so a test can build exactly the forgery it means.
import { createHmac, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Redis } from 'ioredis';
import { requireJobToken, type VerifyOptions } from '../../src/token/verify.ts';

export interface EcPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
  kid: string;
}

export function ecPair(kid: string = randomUUID()): EcPair {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return { privateKey, publicKey, kid };
}

export function jwksOf(...pairs: EcPair[]): { keys: Record<string, unknown>[] } {
  return { keys: pairs.map((p) => ({ ...p.publicKey.export({ format: 'jwk' }), kid: p.kid, alg: 'ES256', use: 'sig' })) };
}

export const b64 = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** Claims as the runner mints them, valid for `lifetimeS` from now; override or delete (undefined) any of them. */
export function claims(overrides: Record<string, unknown> = {}, lifetimeS = 60): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  const out: Record<string, unknown> = {
    iss: 'jobscope',
    sub: 'job:test',
    aud: ['svc'],
    scope: 'data:read',
    jti: randomUUID(),
    iat: now,
    nbf: now,
    exp: now + lifetimeS,
    run: 'test:1',
    att: 1,
    ...overrides,
  };
  for (const [k, v] of Object.entries(out)) if (v === undefined) delete out[k];
  return out;
}

export type Signing = { alg: 'ES256'; key: KeyObject } | { alg: 'HS256'; secret: string | Buffer } | { alg: 'none' };

/** A compact JWS over exactly this header and payload. */
export function craft(header: Record<string, unknown>, payload: Record<string, unknown> | string, signing: Signing): string {
  const input = `${b64(header)}.${b64(payload)}`;
  if (signing.alg === 'none') return `${input}.`;
  const sig =
    signing.alg === 'ES256'
      ? sign('sha256', Buffer.from(input), { key: signing.key, dsaEncoding: 'ieee-p1363' })
      : createHmac('sha256', signing.secret).update(input).digest();
  return `${input}.${sig.toString('base64url')}`;
}

/** A token as the runner would sign it with `pair`. */
export function es256(pair: EcPair, payload: Record<string, unknown> = claims(), header: Record<string, unknown> = {}): string {
  return craft({ alg: 'ES256', typ: 'at+jwt', kid: pair.kid, ...header }, payload, { alg: 'ES256', key: pair.privateKey });
}

export function payloadOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')) as Record<string, unknown>;
}

/** Marks a jti live in Redis the way the runner does. */
export async function markLive(redis: Redis, prefix: string, jti: unknown, ttlMs = 60_000) {
  await redis.set(`${prefix}:token:${String(jti)}`, '{}', 'PX', ttlMs);
}

export interface ServiceCall {
  status: number;
  body: { error?: string; message?: string; claims?: Record<string, unknown> } & Record<string, unknown>;
  headers: Headers;
}

/** An Express service on 127.0.0.1 with `requireJobToken` on GET /data and a scoped POST /write. */
export async function expressService(
  opts: VerifyOptions,
): Promise<{ url: string; server: http.Server; middleware: ReturnType<typeof requireJobToken>; close(): Promise<void> }> {
  const app = express();
  const middleware = requireJobToken(opts);
  app.get('/data', middleware, (req, res) => void res.json({ ok: true, claims: req.jobToken }));
  app.post('/write', requireJobToken({ ...opts, scope: 'data:write' }), (req, res) => void res.json({ ok: true, claims: req.jobToken }));
  const server = await new Promise<http.Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    server,
    middleware,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export async function call(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<ServiceCall> {
  const res = await fetch(url, { method, headers });
  const text = await res.text();
  let body: ServiceCall['body'];
  try {
    body = JSON.parse(text) as ServiceCall['body'];
  } catch {
    body = { raw: text };
  }
  return { status: res.status, body, headers: res.headers };
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
