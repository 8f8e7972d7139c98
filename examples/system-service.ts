// A tiny downstream service, as a team would write it: one line (requireJobToken) accepts jobscope run tokens.
// It serves a dictionary that the example job `sync-dict` copies.
import express from 'express';
import { createJobTokenVerifier } from 'jobscope/verify';

export interface SystemServiceOptions {
  port: number;
  /** Where the runner publishes its keys. */
  jwksUrl: string;
  redisUrl: string;
  prefix?: string;
}

const DICTIONARY = [
  { code: 'sex', items: ['male', 'female', 'unknown'] },
  { code: 'status', items: ['enabled', 'disabled'] },
  { code: 'priority', items: ['low', 'normal', 'high', 'urgent'] },
];

export function createSystemService(opts: SystemServiceOptions) {
  const app = express();
  // One verifier (keys, JWKS cache, Redis connection) for the whole service; a middleware per route and scope.
  const verifier = createJobTokenVerifier({ audience: 'system', jwksUrl: opts.jwksUrl, redis: opts.redisUrl, prefix: opts.prefix });
  app.get('/sys/dict/all', verifier.middleware(), (req, res) => {
    // req.jobToken holds the verified claims: who is calling (sub), for which run, with which scopes.
    console.error(
      `system service: accepted ${req.method} ${req.path} from ${req.jobToken!.sub} (run ${req.jobToken!.run}, jti ${req.jobToken!.jti})`,
    );
    res.json({ calledBy: req.jobToken!.sub, run: req.jobToken!.run, dict: DICTIONARY });
  });
  app.post('/sys/dict/refresh', verifier.middleware({ scope: 'dict:write' }), (_req, res) => {
    res.json({ refreshed: true });
  });
  return app;
}

// Run directly: node --import tsx examples/system-service.ts
if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.env.SYSTEM_SERVICE_PORT ?? 4000);
  // HOST=0.0.0.0 in a container (docker-compose.yml), so the runner's container can reach it.
  const host = process.env.HOST ?? '127.0.0.1';
  createSystemService({
    port,
    jwksUrl: process.env.JOBSCOPE_JWKS_URL ?? `http://127.0.0.1:${process.env.PORT ?? 3000}/.well-known/jwks.json`,
    redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    prefix: process.env.JOBSCOPE_PREFIX,
  }).listen(port, host, () => console.log(`system service on http://${host}:${port}`));
}
