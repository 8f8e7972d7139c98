// The service the end-to-end benchmark calls, in a process of its own: `GET /ping` answers `{"ok":true}`. With
// BENCH_AUTH=es256|hs256 it first checks the run's token with the verifier (@jobscope/verify: signature, claims, liveness
// in the runner's Redis under BENCH_PREFIX, default `bench`), as a real service would; with BENCH_AUTH=none it checks
// nothing. Prints its URL, then serves.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createJobTokenVerifier, TokenRejectedError } from '../src/token/verify.ts';

const auth = process.env.BENCH_AUTH ?? 'none';
const verifier =
  auth === 'none'
    ? undefined
    : createJobTokenVerifier({
        audience: 'svc',
        ...(auth === 'hs256' ? { secret: process.env.BENCH_SECRET! } : { publicKey: process.env.BENCH_PUBLIC_KEY! }),
        redis: process.env.BENCH_REDIS!,
        prefix: process.env.BENCH_PREFIX ?? 'bench',
      });

const server = http.createServer((req, res) => {
  const ok = () => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  };
  if (!verifier) return ok();
  verifier.verify((req.headers.authorization ?? '').replace(/^Bearer /, '')).then(ok, (err: unknown) => {
    res.writeHead(err instanceof TokenRejectedError ? err.status : 500, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: err instanceof TokenRejectedError ? err.code : String(err) }));
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => console.log(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
process.on('SIGTERM', () => process.exit(0));
