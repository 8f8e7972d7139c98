// POST /oauth/introspect (RFC 7662): token liveness for services that must not reach the runner's Redis. Each such service
// is a client with its own secret (JOBSCOPE_INTROSPECT_CLIENTS, HTTP Basic). The runner checks the token exactly as the
// service would (its own keys, the same reason codes), with the client id as the audience, then liveness in its Redis, and
// answers `{ active: true, ...claims }` or `{ active: false }`: never why, never the token.
import { createHash, timingSafeEqual } from 'node:crypto';
import express, { type Request, type Response, type Router } from 'express';
import type { Redis } from 'ioredis';
import type { Config } from '../config.ts';
import { LIFETIME_GRACE_MS } from '../token/mint.ts';
import { createJobTokenVerifier, TokenRejectedError, type JobTokenVerifier } from '../token/verify.ts';

export type IntrospectConfig = Pick<Config, 'introspectClients' | 'issuer' | 'jwtSecret' | 'tokenMaxLifetimeMs'>;

/** What the runner's server already holds: its Redis (liveness) and the JWKS it serves (its own public keys). */
export interface IntrospectParts {
  control: { redis: Redis; prefix: string };
  jwks: () => Promise<{ keys: object[] }>;
}

const digest = (s: string) => createHash('sha256').update(s).digest();
/** Compared against when the client id is unknown, so an unknown id takes as long as a wrong secret. */
const NO_SECRET = digest('no client has this secret');

/** The client id, if the request carries `Authorization: Basic` with a known id and its secret (compared in constant time). */
function authenticatedClient(header: string | undefined, secrets: Map<string, Buffer>): string | undefined {
  const m = /^Basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(header ?? '');
  if (!m) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 1) return undefined;
  const id = decoded.slice(0, colon);
  const expected = secrets.get(id);
  const matches = timingSafeEqual(digest(decoded.slice(colon + 1)), expected ?? NO_SECRET);
  return matches && expected ? id : undefined;
}

export function introspection(config: IntrospectConfig, parts: IntrospectParts): Router {
  const secrets = new Map(Object.entries(config.introspectClients).map(([id, secret]) => [id, digest(secret)]));
  // One verifier per client: the client id is the audience the token must name. Keys are the runner's own (the JWKS it
  // serves, retired keys included; or the HS256 secret); liveness is its Redis, through a connection it already holds.
  const verifiers = new Map<string, JobTokenVerifier>();
  for (const id of secrets.keys()) {
    verifiers.set(
      id,
      createJobTokenVerifier({
        audience: id,
        issuer: config.issuer,
        ...(config.jwtSecret ? { secret: config.jwtSecret } : { jwks: parts.jwks }),
        redis: parts.control.redis,
        prefix: parts.control.prefix,
        maxLifetime: (config.tokenMaxLifetimeMs + LIFETIME_GRACE_MS) / 1000 + 5,
      }),
    );
  }

  const router = express.Router();
  router.post(
    '/',
    (req: Request, res: Response, next) => {
      res.set('Cache-Control', 'no-store');
      const client = authenticatedClient(req.headers.authorization, secrets);
      if (!client) {
        res.set('WWW-Authenticate', 'Basic realm="jobscope introspection"').status(401).json({ error: 'invalid_client' });
        return;
      }
      res.locals.client = client;
      next();
    },
    express.urlencoded({ extended: false, limit: '16kb' }),
    express.json({ limit: '16kb' }),
    async (req: Request, res: Response) => {
      const token = (req.body as { token?: unknown } | undefined)?.token;
      if (typeof token !== 'string' || !token) {
        res.status(400).json({ error: 'invalid_request', error_description: 'a "token" parameter is required' });
        return;
      }
      try {
        const c = await verifiers.get(res.locals.client as string)!.verify(token);
        res.json({
          active: true,
          iss: c.iss,
          sub: c.sub,
          aud: c.aud,
          scope: c.scope,
          exp: c.exp,
          iat: c.iat,
          jti: c.jti,
          run: c.run,
          att: c.att,
          ...(c.act ? { act: c.act } : {}),
          ...(c.id !== undefined ? { id: c.id } : {}),
          token_type: 'Bearer',
        });
      } catch (err) {
        // The runner cannot tell (its Redis is down): say so, rather than "inactive", so the service answers 503, not 401.
        if (!(err instanceof TokenRejectedError) || err.code === 'unavailable') {
          res.status(503).json({ error: 'temporarily_unavailable' });
          return;
        }
        res.json({ active: false });
      }
    },
  );
  return router;
}
