// A downstream refusal explained: a run whose ctx.service() call is refused fails with an error that names the service and
// the verifier's reason (insufficient_scope with the scope the route needs, revoked, unavailable), read from the
// WWW-Authenticate header and the JSON body `{ error, message }`, instead of got's bare "Request failed with status code
// 403 (Forbidden)". The error is still a got HTTPError, and neither its message, nor the run's stored error, nor the request
// headers the error keeps hold the token. Real Redis, a real runtime, a real Express service checking tokens with
// requireJobToken on 127.0.0.1.
import assert from 'node:assert/strict';
import type { KeyObject } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import express from 'express';
import type { Response } from 'got';
import { bearerParams, refusalReason } from '../src/http/clients.ts';
import { closeVerifiers, requireJobToken } from '../src/token/verify.ts';
import { jobscopeFixture, type Fixture } from './helpers/fixture.ts';
import { freePort } from './helpers/redis.ts';
import type { LogCapture } from './helpers/runtime.ts';
import { JWT_LIKE } from './helpers/server.ts';

const PREFIX = 'rf';

// Each job makes one refused call. `inspect` catches the error and returns what a handler can see of it.
const JOBS = {
  'needs-write.ts': `export default { token: { audience: ['system'], scope: ['dict:read'] },
    async run(ctx) { await ctx.service('system').post('sys/dict/refresh', { json: {} }).json(); } };`,
  'inspect.ts': `import util from 'node:util';
    import { HTTPError } from 'got';
    export default { token: { audience: ['system'], scope: ['dict:read'] },
    async run(ctx) {
      try {
        await ctx.service('system').post('sys/dict/refresh', { json: {} }).json();
        return { refused: false };
      } catch (err) {
        const raw = ctx.token.reveal();
        const signature = raw.split('.')[2];
        const dumps = [err.message, err.stack, util.inspect(err, { depth: 6 }), JSON.stringify(err), JSON.stringify(err.options)];
        return {
          refused: true,
          isHTTPError: err instanceof HTTPError,
          name: err.name,
          code: err.code,
          statusCode: err.response.statusCode,
          bodyError: err.response.body.error,
          service: err.service,
          status: err.status,
          reason: err.reason,
          message: err.message,
          authorization: err.options.headers.authorization,
          accessToken: err.options.headers['x-access-token'],
          leaks: dumps.filter((d) => typeof d === 'string' && (d.includes(raw) || d.includes(signature))).length,
        };
      }
    } };`,
  'after-revoke.ts': `export default { token: { audience: ['system'], scope: ['dict:read'] },
    async run(ctx) {
      await ctx.service('system').post('sys/revoke-me', { json: {} }).json();
      await ctx.service('system').get('sys/dict/all').json();
    } };`,
  'unavailable.ts': `export default { token: { audience: ['system'] },
    async run(ctx) { await ctx.service('system').get('cold/data').json(); } };`,
  'echoed.ts': `export default { token: { audience: ['system'] },
    async run(ctx) { await ctx.service('system').get('echo').json(); } };`,
  'plain-500.ts': `export default { token: { audience: ['system'] },
    async run(ctx) { await ctx.service('system').get('boom?secret=hunter2').text(); } };`,
  'not-found.ts': `export default { token: { audience: ['system'] },
    async run(ctx) { await ctx.service('system').get('sys/nothing').json(); } };`,
};

let fx: Fixture;
let logs: LogCapture;
let server: http.Server;
let url = '';
/** Every token the service received. */
const received = new Set<string>();

before(async () => {
  fx = await jobscopeFixture({
    jobs: JOBS,
    env: { JOBSCOPE_PREFIX: PREFIX, JOBSCOPE_TOKEN_HEADER: 'X-Access-Token' },
    // The runner's public key first: the service verifies with it; the runtime is then built with the service's URL.
    envFromKey: (publicKey, redis) => startService(publicKey, redis.url),
    workers: true,
  });
  ({ logs } = fx);
});

async function startService(publicKey: KeyObject, redisUrl: string): Promise<Record<string, string>> {
  const dead = await freePort();
  const app = express();
  app.use((req, _res, next) => {
    const auth = req.headers.authorization;
    if (auth?.startsWith('Bearer ')) received.add(auth.slice(7));
    next();
  });
  const base = { audience: 'system', publicKey, redis: redisUrl, prefix: PREFIX };
  app.use('/sys', requireJobToken(base));
  app.post('/sys/dict/refresh', requireJobToken({ ...base, scope: 'dict:write' }), (_req, res) => void res.json({ ok: true }));
  // Revokes the very token it was called with, as the end of the run would, so the next call meets a revoked token.
  app.post('/sys/revoke-me', async (req, res) => {
    await fx.runtime.tokens.revoke(req.jobToken!.jti);
    res.json({ revoked: true });
  });
  app.get('/sys/dict/all', (_req, res) => void res.json([]));
  // Liveness against a Redis that is not there: the verifier cannot decide, so it answers 503 unavailable.
  app.use('/cold', requireJobToken({ ...base, redis: `redis://127.0.0.1:${dead}`, livenessTimeoutMs: 300 }));
  app.get('/cold/data', (_req, res) => void res.json({}));
  // A careless service that puts the token it got into its refusal.
  app.get('/echo', (req, res) => {
    const token = req.headers.authorization!.slice(7);
    res
      .status(401)
      .set('WWW-Authenticate', `Bearer realm="x", error="invalid_token", error_description="bad token ${token}"`)
      .json({ error: 'denied', message: `your token ${token} is not welcome\n\u0007here` });
  });
  app.get('/boom', (_req, res) => void res.status(500).type('text/plain').send('<html>stack trace...</html>'));
  app.get('/sys/nothing', (_req, res) => void res.status(404).json({ error: 'not_found', message: 'no such dictionary' }));
  server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { JOBSCOPE_SERVICES: `system=${url}` };
}

after(async () => {
  await fx?.close();
  await closeVerifiers();
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
});

async function failedRun(job: string): Promise<string> {
  const report = await fx.wait(await fx.trigger(job), 20_000);
  assert.equal(report.state, 'failed', `${job}: ${JSON.stringify(report.result)}`);
  assert.ok(report.error, job);
  assert.doesNotMatch(report.error, JWT_LIKE, `${job}: a token in the run's error`);
  return report.error;
}

describe('refusals name the service and its reason', () => {
  test('a scope refusal (403): insufficient_scope and the scope the route needs', async () => {
    const error = await failedRun('needs-write');
    assert.match(
      error,
      /^service "system" refused the run's token: insufficient_scope \(token lacks scope: dict:write; the route needs scope dict:write\) \[403 Forbidden: POST http:\/\/127\.0\.0\.1:\d+\/sys\/dict\/refresh\]$/,
    );
    assert.doesNotMatch(error, /Request failed with status code/);
  });

  test('the error is still a got HTTPError with its fields; neither it nor the request headers it keeps hold the token', async () => {
    const report = await fx.wait(await fx.trigger('inspect'));
    const r = report.result as Record<string, unknown>;
    assert.equal(r.refused, true);
    assert.equal(r.isHTTPError, true, 'instanceof HTTPError');
    assert.equal(r.name, 'ServiceRefusedError');
    assert.equal(r.code, 'ERR_NON_2XX_3XX_RESPONSE');
    assert.equal(r.statusCode, 403);
    assert.equal(r.bodyError, 'insufficient_scope', 'err.response.body as got parsed it');
    assert.equal(r.service, 'system');
    assert.equal(r.status, 403);
    assert.deepEqual(r.reason, { code: 'insufficient_scope', description: 'token lacks scope: dict:write', scope: 'dict:write' });
    assert.match(String(r.message), /^service "system" refused the run's token: insufficient_scope/);
    assert.equal(r.authorization, 'Bearer [redacted token]');
    assert.equal(r.accessToken, '[redacted token]', 'JOBSCOPE_TOKEN_HEADER too');
    assert.equal(r.leaks, 0, 'message, stack, util.inspect, JSON of the error and of its options: no token, no signature');
  });

  test('a revoked token (401): revoked, with the verifier’s words', async () => {
    const error = await failedRun('after-revoke');
    assert.match(
      error,
      /^service "system" refused the run's token: revoked \(token is no longer live .+\) \[401 Unauthorized: GET http:\/\/127\.0\.0\.1:\d+\/sys\/dict\/all\]$/,
    );
  });

  test('a verifier that cannot check liveness (503): unavailable, after got’s retries', async () => {
    const started = Date.now();
    const error = await failedRun('unavailable');
    assert.match(
      error,
      /^service "system" could not check the run's token: unavailable \(cannot check token liveness .+\) \[503 Service Unavailable: GET http:\/\/127\.0\.0\.1:\d+\/cold\/data\]$/,
    );
    // GET is retried twice on 503 with Retry-After: 1: the reason is read from the last answer.
    assert.ok(Date.now() - started >= 1800, `${Date.now() - started} ms: retried`);
  });

  test('what a careless service says is cleaned: a token it echoes is masked, control characters go, length is bounded', async () => {
    const error = await failedRun('echoed');
    assert.match(error, /^service "system" refused the run's token: denied \(your token \[redacted token\] is not welcome here\)/);
    assert.ok(!error.includes('\u0007'));
  });

  test('other statuses: the reason from a JSON body; a non-JSON 500 says what it can; never the query string', async () => {
    const notFound = await failedRun('not-found');
    assert.match(
      notFound,
      /^service "system" answered 404 Not Found: not_found \(no such dictionary\) \[GET http:\/\/127\.0\.0\.1:\d+\/sys\/nothing\]$/,
    );
    const boom = await failedRun('plain-500');
    assert.match(boom, /^service "system" answered 500 Internal Server Error \[GET http:\/\/127\.0\.0\.1:\d+\/boom\]$/);
    assert.doesNotMatch(boom, /hunter2|<html>/);
  });

  test('the service really received tokens, and none of them is in any log line or stored error', async () => {
    assert.ok(received.size >= 6, `${received.size} tokens`);
    for (const token of received) {
      assert.ok(!logs.text.includes(token), 'a token in the runner log');
      assert.ok(!logs.text.includes(token.split('.')[2]), 'a token signature in the runner log');
    }
    assert.doesNotMatch(logs.text, JWT_LIKE);
  });
});

describe('reading a refusal', () => {
  const response = (status: number, headers: Record<string, string>, body: unknown) =>
    ({ statusCode: status, headers, body }) as unknown as Response;

  test('the Bearer challenge: quoted and bare values, escapes, other schemes around it', () => {
    assert.deepEqual(bearerParams('Basic realm="a", Bearer realm="jobscope", error="invalid_token", error_description="expired"'), {
      realm: 'jobscope',
      error: 'invalid_token',
      error_description: 'expired',
    });
    assert.deepEqual(bearerParams('Bearer error=insufficient_scope, scope="a:b c:d", error_description="say \\"hi\\""'), {
      error: 'insufficient_scope',
      scope: 'a:b c:d',
      error_description: 'say "hi"',
    });
    assert.deepEqual(bearerParams('Basic realm="x"'), {});
    assert.deepEqual(bearerParams(undefined), {});
  });

  test('the body’s code wins; OAuth-style error_description; words in error_description are a description, not a code', () => {
    assert.deepEqual(refusalReason(response(401, {}, { error: 'expired', message: 'jwt expired' }), []), {
      code: 'expired',
      description: 'jwt expired',
    });
    assert.deepEqual(refusalReason(response(401, {}, '{"error":"invalid_token","error_description":"The access token expired"}'), []), {
      code: 'invalid_token',
      description: 'The access token expired',
    });
    assert.deepEqual(
      refusalReason(response(401, { 'www-authenticate': 'Bearer error="invalid_token", error_description="The token is gone"' }, ''), []),
      { code: 'invalid_token', description: 'The token is gone' },
    );
    assert.deepEqual(refusalReason(response(403, {}, Buffer.from('{"error":"not allowed here"}')), []), {
      description: 'not allowed here',
    });
    assert.deepEqual(refusalReason(response(502, {}, '<html>'), []), {});
  });
});
