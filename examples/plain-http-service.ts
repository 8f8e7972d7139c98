// A downstream service that is not on Express: plain node:http, accepting jobscope run tokens with the framework-free
// pieces of `jobscope/verify`: createJobTokenVerifier, extractToken (headers only, never the query string), rejection.
import http from 'node:http';
import { createJobTokenVerifier, extractToken, rejection, type VerifyOptions } from 'jobscope/verify';

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...headers, 'content-type': 'application/json' }).end(JSON.stringify(body));
}

/** One verifier (keys, JWKS cache, Redis connection) for the service's lifetime, closed with the server. */
export function createPlainService(opts: VerifyOptions): http.Server {
  const verifier = createJobTokenVerifier(opts);
  const server = http.createServer(async (req, res) => {
    const route = `${req.method} ${(req.url ?? '/').split('?')[0]}`;
    if (route !== 'GET /sys/dict/all' && route !== 'POST /sys/dict/refresh') return send(res, 404, { error: 'not_found' });
    try {
      const token = extractToken(req);
      // Per-route scopes: the write route also needs dict:write.
      const claims = await verifier.verify(token, route.startsWith('POST') ? { scope: 'dict:write' } : undefined);
      // The claims say who is calling (sub), for which run, with which scopes. Never log the token itself.
      send(res, 200, { calledBy: claims.sub, run: claims.run, scope: claims.scope });
    } catch (err) {
      // 401 / 403 / 503 with { error: <reason code>, message } and a WWW-Authenticate header.
      const r = rejection(err);
      send(res, r.status, r.body, r.headers);
    }
  });
  server.on('close', () => void verifier.close());
  return server;
}

// Run directly: node --import tsx examples/plain-http-service.ts
if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.env.PLAIN_SERVICE_PORT ?? 4001);
  createPlainService({
    audience: process.env.SERVICE_AUDIENCE ?? 'system',
    jwksUrl: process.env.JOBSCOPE_JWKS_URL ?? `http://127.0.0.1:${process.env.PORT ?? 3000}/.well-known/jwks.json`,
    redis: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    prefix: process.env.JOBSCOPE_PREFIX,
  }).listen(port, '127.0.0.1', () => console.log(`plain node:http service on http://127.0.0.1:${port}`));
}
