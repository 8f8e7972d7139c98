// A real HTTP service on 127.0.0.1 that records what each request carried and whether its token was live in Redis
// at the moment the request arrived.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Redis } from 'ioredis';
import { createJobTokenVerifier, type JobTokenVerifier, type VerifyOptions } from '../../src/token/verify.ts';

export interface Received {
  path: string;
  authorization: string | undefined;
  accessToken: string | undefined;
  /** The token from the Authorization header (without "Bearer "). */
  token: string | undefined;
  header: Record<string, unknown> | undefined;
  claims: Record<string, unknown> | undefined;
  /** Did `<prefix>:token:<jti>` exist while the request was in flight? */
  liveInRedis: boolean;
  /** Remaining lifetime of that key in milliseconds (PTTL), -2 when absent. */
  pttl: number;
  /** The value of the X-Run header the job sent (its own ctx.run.id), to detect cross-run leaks. */
  sentByRun: string | undefined;
}

function decode(part: string | undefined): Record<string, unknown> | undefined {
  try {
    return JSON.parse(Buffer.from(part ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

export class RecordingService {
  received: Received[] = [];
  url = '';
  private server: http.Server | undefined;
  private readonly redis: Redis;
  private readonly prefix: string;
  /** Milliseconds each request is held before the answer (keeps requests of concurrent runs overlapping). */
  delayMs = 0;
  inFlight = 0;
  maxInFlight = 0;

  constructor(redis: Redis, prefix: string) {
    this.redis = redis;
    this.prefix = prefix;
  }

  async start(): Promise<this> {
    this.server = http.createServer(async (req, res) => {
      this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
      res.once('close', () => this.inFlight--);
      const authorization = req.headers.authorization;
      const token = authorization?.startsWith('Bearer ') ? authorization.slice(7) : undefined;
      const [h, p] = (token ?? '').split('.');
      const claims = decode(p);
      const jti = typeof claims?.jti === 'string' ? claims.jti : undefined;
      const pttl = jti ? await this.redis.pttl(`${this.prefix}:token:${jti}`) : -2;
      const liveInRedis = pttl > 0;
      this.received.push({
        path: req.url ?? '',
        authorization,
        accessToken: req.headers['x-access-token'] as string | undefined,
        token,
        header: decode(h),
        claims,
        liveInRedis,
        pttl,
        sentByRun: req.headers['x-run'] as string | undefined,
      });
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ok: true, jti }));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** What a verifying service accepted or refused: the verified claims (or the refusal code) and the raw token it got. */
export interface Verified {
  path: string;
  status: number;
  token: string | undefined;
  claims: Record<string, unknown> | undefined;
  error: string | undefined;
  headers: http.IncomingHttpHeaders;
}

/**
 * A real service on 127.0.0.1 that checks every request with @jobscope/verify's middleware (signature, claims, liveness in
 * Redis: no change on the service side) and records what it accepted or refused. `delayMs` holds accepted requests.
 */
export class VerifyingService {
  calls: Verified[] = [];
  url = '';
  delayMs = 0;
  private server: http.Server | undefined;
  private readonly verifier: JobTokenVerifier;

  constructor(opts: VerifyOptions) {
    this.verifier = createJobTokenVerifier(opts);
  }

  async start(): Promise<this> {
    const app = express();
    const record = (req: express.Request, status: number, error?: string) => {
      const auth = req.headers.authorization;
      this.calls.push({
        path: req.path,
        status,
        token: auth?.startsWith('Bearer ') ? auth.slice(7) : undefined,
        claims: req.jobToken as Record<string, unknown> | undefined,
        error,
        headers: req.headers,
      });
    };
    const middleware = this.verifier.middleware();
    app.use((req, res, next) => {
      res.once('finish', () => res.statusCode >= 400 && record(req, res.statusCode, String(res.statusCode)));
      middleware(req, res, next);
    });
    app.all('/*splat', async (req, res) => {
      record(req, 200);
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
      res.json({ ok: true, sub: req.jobToken?.sub, id: req.jobToken?.id ?? null, jti: req.jobToken?.jti });
    });
    this.server = await new Promise<http.Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await this.verifier.close();
  }
}
