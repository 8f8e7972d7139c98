// The run's HTTP clients, end to end (real Redis, a real runtime, two real Express services on 127.0.0.1 that check
// tokens with requireJobToken): one token per service, so a token one service received is refused by another; and the
// two refusals of ctx.service()/ctx.http that keep a token inside its run: a client used after its run ended, and run A's
// client used inside run B. Each refusal is checked by what the services received: nothing.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import express from 'express';
import { closeVerifiers, requireJobToken, type JobTokenClaims } from '../src/token/verify.ts';
import { jobscopeFixture, until, type Fixture } from './helpers/fixture.ts';
import { bearer, call } from './helpers/tokens.ts';

const PREFIX = 'rc';

// Handlers share what they capture with the test through this process's global.
const JOBS = {
  // Calls both services, then stays alive 1.5 s so the test can replay what alpha received while the run lives.
  'both.ts': `export default { token: { audience: ['alpha', 'beta'], scope: ['x:read'] },
    async run(ctx) {
      const a = await ctx.service('alpha').get('whoami').json();
      const b = await ctx.service('beta').get('whoami').json();
      globalThis.__both = { tokens: ctx.token.all, first: ctx.token.claims };
      await new Promise((r) => setTimeout(r, 1500));
      return { alpha: a.aud, beta: b.aud };
    } };`,
  'outsider.ts': `export default { token: { audience: ['alpha'] },
    async run(ctx) { await ctx.service('beta').get('whoami'); } };`,
  // Keeps its client and calls it 300 ms after the run has returned, from a timer started inside the run.
  'late.ts': `export default { token: { audience: ['alpha'] },
    async run(ctx) {
      const client = ctx.service('alpha');
      globalThis.__late = new Promise((resolve) => setTimeout(() => client.get('whoami').then(() => resolve('sent'), (e) => resolve(e.message)), 300));
      return 'done';
    } };`,
  // Run A publishes its client and waits; run B uses A's client inside B.
  'lender.ts': `export default { token: { audience: ['alpha'] },
    async run(ctx) { globalThis.__lent = ctx.service('alpha'); await new Promise((r) => setTimeout(r, 1500)); } };`,
  'borrower.ts': `export default { token: { audience: ['alpha'] },
    async run(ctx) {
      try { await globalThis.__lent.get('whoami'); return 'sent'; } catch (e) { return e.message; }
    } };`,
  // Every entry point of a run's client (a got instance): each request must carry this run's token. Published for 'poser'.
  'shapes.ts': `import { Readable } from 'node:stream';
    const ways = (c) => ({
      call: () => c('whoami').json(),
      options: () => c({ url: 'whoami', context: { jobscopeRun: 'someone:else' } }).json(),
      get: () => c.get('whoami').json(),
      stream: () => Readable.from(c.stream('whoami')).toArray(),
      streamGet: () => Readable.from(c.stream.get('whoami')).toArray(),
      paginate: () => c.paginate.all('whoami', { pagination: { transform: (r) => [r.body], paginate: () => false } }),
      extend: () => c.extend({ headers: { 'x-way': 'extend' } }).get('whoami').json(),
    });
    export { ways };
    export default { token: { audience: ['alpha'] },
    async run(ctx) {
      const client = ctx.service('alpha');
      globalThis.__shapesClient = client;
      const out = {};
      for (const [name, way] of Object.entries(ways(client))) {
        try { await way(); out[name] = 'sent'; } catch (e) { out[name] = e.message; }
      }
      out.defaultsRun = client.defaults.options.context.jobscopeRun;
      await new Promise((r) => setTimeout(r, 1500));
      return out;
    } };`,
  // Uses every entry point of the 'shapes' run's client inside its own run.
  'poser.ts': `import { ways } from './shapes.ts';
    export default { token: { audience: ['alpha'] },
    async run(ctx) {
      const out = {};
      for (const [name, way] of Object.entries(ways(globalThis.__shapesClient))) {
        try { await way(); out[name] = 'sent'; } catch (e) { out[name] = e.message; }
      }
      return out;
    } };`,
};

let fx: Fixture;
const servers: http.Server[] = [];
const urls: Record<string, string> = {};
const received: { service: string; token: string; claims: JobTokenClaims }[] = [];
const g = globalThis as Record<string, unknown>;

function listen(server: http.Server): Promise<string> {
  servers.push(server);
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)),
  );
}

before(async () => {
  fx = await jobscopeFixture({
    jobs: JOBS,
    env: { JOBSCOPE_PREFIX: PREFIX },
    // The runner's public key first: the services verify with it.
    envFromKey: async (publicKey, redis) => {
      for (const service of ['alpha', 'beta']) {
        const app = express();
        const verify = requireJobToken({ audience: service, publicKey, redis: redis.url, prefix: PREFIX });
        app.get('/whoami', verify, (req, res) => {
          received.push({ service, token: req.headers.authorization!.slice(7), claims: req.jobToken! });
          res.json({ aud: req.jobToken!.aud });
        });
        urls[service] = await listen(http.createServer(app));
      }
      return { JOBSCOPE_SERVICES: `alpha=${urls.alpha},beta=${urls.beta}` };
    },
    workers: true,
  });
});

after(async () => {
  await fx?.close();
  await closeVerifiers();
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
});

describe('one token per service', () => {
  test('each service gets a token for itself alone; replayed to the other service it is refused (bad_audience)', async () => {
    const runId = await fx.trigger('both');
    await until(() => received.filter((r) => r.claims.run === runId).length === 2, 5000, 'both calls');
    const alpha = received.find((r) => r.service === 'alpha' && r.claims.run === runId)!;
    const beta = received.find((r) => r.service === 'beta' && r.claims.run === runId)!;
    assert.deepEqual(alpha.claims.aud, ['alpha']);
    assert.deepEqual(beta.claims.aud, ['beta']);
    assert.notEqual(alpha.claims.jti, beta.claims.jti);
    // While the run lives, alpha's token is good at alpha and worthless at beta.
    const atAlpha = await call(`${urls.alpha}/whoami`, bearer(alpha.token));
    assert.equal(atAlpha.status, 200);
    const replayed = await call(`${urls.beta}/whoami`, bearer(alpha.token));
    assert.equal(replayed.status, 401);
    assert.equal(replayed.body.error, 'bad_audience');
    const report = await fx.wait(runId);
    assert.equal(report.outcome, 'completed');
    assert.deepEqual(report.result, { alpha: ['alpha'], beta: ['beta'] });
    const seen = g.__both as { tokens: JobTokenClaims[]; first: JobTokenClaims };
    assert.deepEqual(
      seen.tokens.map((c) => c.aud),
      [['alpha'], ['beta']],
      'ctx.token.all shows every token the run holds',
    );
    assert.equal(seen.first.jti, alpha.claims.jti, 'ctx.token.claims is the first audience’s token');
    // All of them die together at the end of the run.
    for (const token of [alpha.token, beta.token]) {
      const service = token === alpha.token ? urls.alpha : urls.beta;
      const res = await call(`${service}/whoami`, bearer(token));
      assert.equal(res.body.error, 'revoked');
    }
    const history = (await fx.run(runId)).claims;
    assert.equal(history.length, 2, 'both tokens are in the run’s claims history (the Run page lists them)');
  });

  test('a service the job’s token does not name is refused before any request, with the fix in the message', async () => {
    const before = received.length;
    const report = await fx.wait(await fx.trigger('outsider'));
    assert.equal(report.outcome, 'failed');
    assert.match(report.error!, /this job's token is not for "beta": its token.audience is \[alpha\]; add "beta" there/);
    assert.equal(received.length, before);
  });
});

describe('a run’s clients refuse to send outside it', () => {
  test('a client used after its run ended (from a timer the run left behind) sends nothing', async () => {
    const before = received.length;
    const report = await fx.wait(await fx.trigger('late'));
    assert.equal(report.outcome, 'completed');
    const outcome = await (g.__late as Promise<string>);
    assert.match(outcome, /run late:[^ ]+ has ended: its token is revoked, so the request was not made/);
    assert.equal(received.length, before, 'the service received nothing');
  });

  test('run A’s client used inside run B sends nothing (it would carry B’s token for A)', async () => {
    const lender = { runId: await fx.trigger('lender') };
    await until(() => g.__lent !== undefined, 5000, 'run A to lend its client');
    // borrower and lender are different jobs, so they run at the same time (concurrency is per job).
    const before = received.length;
    const borrower = await fx.wait(await fx.trigger('borrower'));
    assert.match(String(borrower.result), new RegExp(`a client of run ${lender.runId} was used inside run ${borrower.runId}`));
    assert.equal(received.length, before, 'the service received nothing');
    await fx.wait(lender.runId);
  });

  test('every entry point of a run’s client (call, options, shortcuts, stream, paginate, extend) is bound to its run', async () => {
    const before = received.length;
    const shapes = await fx.trigger('shapes');
    await until(() => g.__shapesClient !== undefined, 5000, 'the shapes run to publish its client');
    const ways = ['call', 'options', 'get', 'stream', 'streamGet', 'paginate', 'extend'];
    await until(() => received.length - before >= ways.length, 5000, 'the shapes run’s requests');
    // Its requests carried its own token, a context key passed with a request cannot make it another run's.
    const own = received.slice(before);
    assert.equal(own.length, ways.length);
    for (const r of own) assert.equal(r.claims.run, shapes);
    // The same entry points used inside another run send nothing.
    const poser = await fx.wait(await fx.trigger('poser'));
    const refused = new RegExp(`a client of run ${shapes} was used inside run ${poser.runId}`);
    for (const way of ways) assert.match(String((poser.result as Record<string, string>)[way]), refused, way);
    assert.equal(received.length, before + ways.length, 'the service received nothing from the other run');
    const report = await fx.wait(shapes);
    assert.equal(report.outcome, 'completed');
    const result = report.result as Record<string, string>;
    for (const way of ways) assert.equal(result[way], 'sent', `${way}: ${result[way]}`);
    assert.equal(result.defaultsRun, shapes, 'client.defaults names the run');
  });
});
