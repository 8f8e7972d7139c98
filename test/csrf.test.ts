// The mutation guard (src/server/mutations.ts) on every route that changes something, jobscope's API and Bull Board's,
// against a real Redis and real HTTP on 127.0.0.1: cross-site requests (Origin, Sec-Fetch-Site) get 403 and change nothing;
// bodies that are not JSON get 415; deep or huge bodies get 400/413 with a reason; and a seeded fuzz of odd bodies, odd
// types and odd paths over every mutating route never gets a 5xx.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { MAX_DEPTH, crossSiteReason, jsonDepth } from '../src/server/mutations.ts';
import { jobscopeFixture, type Fixture } from './helpers/fixture.ts';
import type { LogCapture } from './helpers/runtime.ts';
import { ADMIN, TestServer } from './helpers/server.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 0xc5f2026);

let fx: Fixture;
let logs: LogCapture;
let srv: TestServer;
let doneId: string;
let host: string;

before(async () => {
  fx = await jobscopeFixture({
    jobs: {
      'typed.ts': `export default {
      schedule: { every: '1h' },
      params: { type: 'object', properties: { n: { type: 'integer' }, note: {} }, additionalProperties: false },
      token: { audience: ['svc'] },
      async run(ctx) { return { n: ctx.data.n ?? 0 }; },
    };`,
      // Accepts any data: nothing in front of the queue but the guard.
      'free.ts': `export default { token: { audience: ['svc'] }, async run() { return 'ok'; } };`,
    },
    env: { JOBSCOPE_PREFIX: 'csrf' },
    schedules: true,
    server: true,
  });
  ({ logs, server: srv } = fx);
  host = new URL(srv.url).host;
  // Workers after the server, for one job: 'free' keeps what is enqueued, to be compared.
  await fx.runtime.startWorkers(['typed']);
  const runId = await fx.trigger('typed', { n: 1 });
  await fx.wait(runId);
  doneId = runId.split(':')[1];
});

after(async () => {
  await fx?.close();
});

const BOARD = '/dashboard/queues/api/queues';
/** Every route that changes something, as [method, path]. */
const mutating = (): [string, string][] => [
  ['POST', '/api/jobs/free/runs'],
  ['POST', '/api/jobs/typed/runs'],
  ['POST', '/api/jobs/typed/pause'],
  ['POST', '/api/jobs/typed/resume'],
  ['POST', `/api/runs/typed:${doneId}/cancel`],
  ['POST', `/api/runs/typed:${doneId}/retry`],
  ['PUT', '/dashboard/queues/api/queues/pause'],
  ['PUT', '/dashboard/queues/api/queues/resume'],
  ['POST', `${BOARD}/free/add`],
  ['POST', `${BOARD}/typed/add`],
  ['PUT', `${BOARD}/typed/retry/failed`],
  ['PUT', `${BOARD}/typed/retry/completed`],
  ['PUT', `${BOARD}/typed/promote`],
  ['PUT', `${BOARD}/typed/clean/failed`],
  ['PUT', `${BOARD}/typed/pause`],
  ['PUT', `${BOARD}/typed/resume`],
  ['PUT', `${BOARD}/typed/concurrency`],
  ['PUT', `${BOARD}/typed/rate-limit`],
  ['PUT', `${BOARD}/typed/rate-limit/release`],
  ['PUT', `${BOARD}/typed/job-schedulers/typed/remove`],
  ['PATCH', `${BOARD}/typed/job-schedulers/typed`],
  ['PUT', `${BOARD}/typed/job-schedulers/typed/run`],
  ['PUT', `${BOARD}/typed/${doneId}/retry`],
  ['PUT', `${BOARD}/typed/${doneId}/promote`],
  ['PATCH', `${BOARD}/typed/${doneId}/update-data`],
  ['PATCH', `${BOARD}/typed/${doneId}/delay`],
  ['PATCH', `${BOARD}/typed/${doneId}/priority`],
  ['PUT', `${BOARD}/typed/${doneId}/remove-unprocessed-children`],
  // Destructive ones last in any loop that lets them through.
  ['PUT', `${BOARD}/typed/${doneId}/clean`],
  ['PUT', `${BOARD}/free/empty`],
  ['PUT', `${BOARD}/free/obliterate`],
];

/**
 * What Redis holds for both jobs: runs by state, paused flags (BullMQ's and jobscope's), the schedule, read from BullMQ's
 * queues and the API. Compared before and after refusals.
 */
async function state(): Promise<string> {
  const out: unknown[] = [];
  for (const name of ['typed', 'free']) {
    const q = fx.queue(name);
    out.push(name, await q.getJobCounts(), await q.isPaused(), (await fx.api.job(name)).paused, await q.getGlobalConcurrency());
  }
  out.push(
    await fx
      .queue('typed')
      .getJobScheduler('typed')
      .then((s) => s?.key),
  );
  return JSON.stringify(out);
}

const bodyFor = (path: string) =>
  path.endsWith('/add')
    ? { name: 'x', data: { n: 2 } }
    : path.endsWith('/runs')
      ? { data: { n: 2 } }
      : path.endsWith('update-data')
        ? { jobData: { n: 2 } }
        : {};

describe('cross-site requests', () => {
  test('the rules: Sec-Fetch-Site decides when present; otherwise Origin must name this host; neither is a non-browser client', () => {
    const h = (headers: Record<string, string>) => crossSiteReason('POST', { host: 'jobs.example:3000', ...headers });
    assert.equal(h({}), null, 'curl, scripts');
    assert.equal(h({ 'sec-fetch-site': 'same-origin', origin: 'http://jobs.example:3000' }), null);
    assert.equal(h({ 'sec-fetch-site': 'none' }), null, 'typed or bookmarked');
    assert.equal(
      h({ 'sec-fetch-site': 'same-origin', origin: 'https://proxy.example' }),
      null,
      'the browser knows better than a rewritten Host',
    );
    assert.match(
      h({ 'sec-fetch-site': 'cross-site', origin: 'http://jobs.example:3000' }) ?? '',
      /another site \(Sec-Fetch-Site: cross-site\)/,
    );
    assert.match(h({ 'sec-fetch-site': 'same-site' }) ?? '', /same-site/);
    assert.equal(h({ origin: 'http://jobs.example:3000' }), null);
    assert.equal(h({ origin: 'https://JOBS.example:3000' }), null, 'scheme and case do not matter (TLS-terminating proxy)');
    assert.match(h({ origin: 'http://jobs.example:3001' }) ?? '', /another origin \(Origin: http:\/\/jobs\.example:3001/);
    assert.match(h({ origin: 'null' }) ?? '', /Origin: null/, 'sandboxed frames and privacy-sensitive redirects');
    assert.match(h({ origin: 'file://' }) ?? '', /another origin/);
    assert.equal(crossSiteReason('GET', { host: 'a', origin: 'http://evil' }), null, 'reads are not guarded');
  });

  test('every mutating route refuses Origin from elsewhere and Sec-Fetch-Site cross-site/same-site with 403 cross_site, changing nothing', async () => {
    const before = await state();
    const countsBefore = logs.lines.filter((l) => l.includes('"audit"')).length;
    for (const [method, path] of mutating()) {
      const refused: Record<string, string>[] = [
        { origin: 'http://127.0.0.1:1' },
        { origin: 'http://evil.example' },
        { origin: 'null' },
        { 'sec-fetch-site': 'cross-site' },
        { 'sec-fetch-site': 'same-site', origin: `http://${host}` },
        { 'sec-fetch-site': 'cross-site', origin: `http://${host}` },
      ];
      for (const headers of refused) {
        const res = await srv.request(path, { method, auth: ADMIN, json: bodyFor(path), headers });
        assert.equal(res.status, 403, `${method} ${path} ${JSON.stringify(headers)}: ${res.text}`);
        assert.equal(res.body.error, 'cross_site');
        assert.ok(res.body.message.length > 20);
      }
      // And without credentials: refused as cross-site before the login is even looked at.
      const anonymous = await srv.request(path, { method, json: bodyFor(path), headers: { origin: 'http://evil.example' } });
      assert.equal(anonymous.status, 403, `${method} ${path}`);
    }
    assert.equal(await state(), before, 'nothing changed');
    assert.ok(logs.lines.some((l) => l.includes('cross-site request refused')));
    assert.equal(logs.lines.filter((l) => l.includes('"audit"')).length, countsBefore, 'refused before the login: no user to audit');
  });

  test('the same requests from this origin (Origin = Host, or Sec-Fetch-Site same-origin) go through', async () => {
    const viaOrigin = await srv.request('/api/jobs/free/runs', {
      method: 'POST',
      auth: ADMIN,
      json: { data: {} },
      headers: { origin: srv.url },
    });
    assert.equal(viaOrigin.status, 202, viaOrigin.text);
    const viaFetchSite = await srv.request(`${BOARD}/free/add`, {
      method: 'POST',
      auth: ADMIN,
      json: { name: 'x', data: {} },
      headers: { origin: srv.url, 'sec-fetch-site': 'same-origin' },
    });
    assert.equal(viaFetchSite.status, 200, viaFetchSite.text);
    const pause = await srv.request('/api/jobs/free/pause', { method: 'POST', auth: ADMIN, headers: { 'sec-fetch-site': 'same-origin' } });
    assert.equal(pause.status, 200);
    assert.equal((await srv.request('/api/jobs/free/resume', { method: 'POST', auth: ADMIN })).status, 200);
    await fx.queue('free').drain();
  });

  test('reads are not guarded: a cross-site GET gets its answer (the browser keeps it from the other page)', async () => {
    const res = await srv.request('/api/jobs', { auth: ADMIN, headers: { origin: 'http://evil.example', 'sec-fetch-site': 'cross-site' } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('access-control-allow-origin'), null, 'no CORS grant');
  });
});

describe('bodies', () => {
  test('non-JSON bodies get 415 on every mutating route, text/plain forms included; nothing changes', async () => {
    const before = await state();
    for (const [method, path] of mutating()) {
      for (const [type, body] of [
        ['text/plain', '{"data":{"n":2}}'],
        ['text/plain;charset=UTF-8', 'data=1'],
        ['application/x-www-form-urlencoded', 'data=%7B%7D'],
        ['multipart/form-data; boundary=x', '--x\r\nContent-Disposition: form-data; name="data"\r\n\r\n{}\r\n--x--\r\n'],
        ['application/jsonx', '{}'],
        ['application/json-seq', '{}'],
        ['text/json', '{}'],
      ]) {
        const res = await srv.request(path, { method, auth: ADMIN, body, headers: { 'content-type': type } });
        assert.equal(res.status, 415, `${method} ${path} ${type}: ${res.text}`);
        assert.equal(res.body.error, 'unsupported_media_type');
        assert.match(res.body.message, /application\/json/);
      }
      // A typed but empty body is refused too; no body and no type (a bare POST .../cancel) is fine.
      const typedEmpty = await srv.request(path, { method, auth: ADMIN, body: '', headers: { 'content-type': 'text/plain' } });
      assert.equal(typedEmpty.status, 415, `${method} ${path}`);
    }
    assert.equal(await state(), before);
  });

  test('JSON with another charset is 415 (body-parser), with a charset of utf-8 fine', async () => {
    const latin = await srv.request('/api/jobs/free/runs', {
      method: 'POST',
      auth: ADMIN,
      body: '{"data":{}}',
      headers: { 'content-type': 'application/json; charset=latin1' },
    });
    assert.equal(latin.status, 415);
    assert.equal(latin.body.error, 'unsupported_media_type');
    const utf8 = await srv.request('/api/jobs/free/runs', {
      method: 'POST',
      auth: ADMIN,
      body: '{"data":{}}',
      headers: { 'content-type': 'Application/JSON; charset=utf-8' },
    });
    assert.equal(utf8.status, 202, utf8.text);
    await fx.queue('free').drain();
  });

  test('15,000-deep data is 400 too_deep on the API and on Bull Board (it was a 500: a stack overflow), and nothing is enqueued', async () => {
    const deep = (n: number, leaf = '1') => '{"a":'.repeat(n) + leaf + '}'.repeat(n);
    const arrays = (n: number) => '['.repeat(n) + ']'.repeat(n);
    const before = await state();
    for (const n of [MAX_DEPTH, 2000, 15_000]) {
      for (const [method, path, body] of [
        ['POST', '/api/jobs/free/runs', `{"data":${deep(n)}}`],
        ['POST', '/api/jobs/typed/runs', `{"data":{"note":${arrays(n)}}}`],
        ['POST', `${BOARD}/free/add`, `{"name":"x","data":${deep(n)}}`],
        ['PATCH', `${BOARD}/typed/${doneId}/update-data`, `{"jobData":{"note":${deep(n)}}}`],
      ]) {
        const res = await srv.request(path, { method, auth: ADMIN, body });
        assert.equal(res.status, 400, `${n} levels: ${method} ${path}: ${res.text.slice(0, 200)}`);
        assert.equal(res.body.error, 'too_deep');
        assert.match(res.body.message, new RegExp(`deeper than ${MAX_DEPTH} levels`));
      }
    }
    assert.equal(await state(), before);
    // At the limit it is accepted: the body is { "data": <63 levels> }.
    const ok = await srv.request('/api/jobs/free/runs', { method: 'POST', auth: ADMIN, body: `{"data":${deep(MAX_DEPTH - 1)}}` });
    assert.equal(ok.status, 202, ok.text);
    await fx.queue('free').drain();
    assert.ok(!logs.text.includes('Maximum call stack'), 'no stack overflow anywhere');
  });

  test('the depth counter: brackets inside strings and escapes do not count; it stops early', () => {
    assert.equal(jsonDepth('{}'), 1);
    assert.equal(jsonDepth('{"a":[{"b":[]}]}'), 4);
    assert.equal(jsonDepth('{"a":"[[[[{{{{\\"[[["}'), 1);
    assert.equal(jsonDepth('["\\\\", [["\\""]]]'), 3);
    assert.equal(jsonDepth('1'), 0);
    assert.equal(jsonDepth('['.repeat(1_000_000), 10), 11);
  });

  test('huge bodies are 413 with a reason on the API and on Bull Board', async () => {
    const big = 'x'.repeat(150_000);
    for (const [method, path, json] of [
      ['POST', '/api/jobs/free/runs', { data: { big } }],
      ['POST', `${BOARD}/free/add`, { name: 'x', data: { big } }],
      ['PATCH', `${BOARD}/typed/${doneId}/update-data`, { jobData: { note: big } }],
    ] as const) {
      const res = await srv.request(path, { method, auth: ADMIN, json });
      assert.equal(res.status, 413, `${method} ${path}`);
      assert.equal(res.body.error, 'too_large');
      assert.match(res.body.message, /100kb/);
    }
    // Wide rather than deep or long: 100 kB of small objects is fine.
    const wide = await srv.request('/api/jobs/free/runs', {
      method: 'POST',
      auth: ADMIN,
      json: { data: { items: Array.from({ length: 6000 }, (_, i) => ({ i })) } },
    });
    assert.equal(wide.status, 202, wide.text.slice(0, 200));
    await fx.queue('free').drain();
  });
});

/** mulberry32: the same seed gives the same cases (FUZZ_SEED replays a failure). */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  return { next, int, pick };
}

const ODD_VALUES: unknown[] = [
  'x',
  '',
  -1,
  0,
  1.5,
  1e308,
  -1e308,
  2 ** 53 + 2,
  true,
  null,
  [],
  {},
  [1, 'a', null],
  { a: { b: [] } },
  'x'.repeat(5000),
  '\ud800\udfff\ud800',
  '2026-13-45T99:00:00Z',
  '-5m',
  '1e400',
  'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln',
  { __proto__: { polluted: true } },
  { constructor: { prototype: { polluted: true } } },
];
const FIELDS = [
  'data',
  'delay',
  'at',
  'priority',
  'key',
  'trigger',
  'name',
  'options',
  'jobData',
  'concurrency',
  'max',
  'duration',
  'repeat',
];

function oddBody(rng: ReturnType<typeof prng>, path: string): string {
  switch (rng.int(6)) {
    case 0:
      return JSON.stringify(rng.pick(ODD_VALUES)) ?? 'null';
    case 1: {
      // A plausible body with one field made odd.
      const body: Record<string, unknown> = { ...bodyFor(path) };
      body[rng.pick(FIELDS)] = rng.pick(ODD_VALUES);
      return JSON.stringify(body);
    }
    case 2: {
      const body: Record<string, unknown> = {};
      for (let i = rng.int(5); i >= 0; i--) body[rng.pick(FIELDS)] = rng.pick(ODD_VALUES);
      return JSON.stringify(body);
    }
    case 3:
      // Broken JSON.
      return rng.pick(['{', '{"data":', '{"data":{}}}', '\u0000', '{"a":1,}', "{'data':{}}", '[1,2', 'NaN', '{"data":undefined}', '']);
    case 4: {
      // Own __proto__ keys as JSON.parse makes them.
      return rng.pick([
        '{"__proto__":{"polluted":true},"data":{}}',
        '{"data":{"__proto__":{"n":1}}}',
        '{"jobData":{"__proto__":{"polluted":true}}}',
        '{"name":"x","data":{},"options":{"__proto__":{"attempts":99}}}',
      ]);
    }
    default: {
      // Nested just under, at or just over the limit.
      const d = MAX_DEPTH - 2 + rng.int(4);
      return `{"data":${'['.repeat(d)}${']'.repeat(d)}}`;
    }
  }
}

describe('no 500 for any client input', () => {
  test('a seeded fuzz of odd bodies, content types and ids over every mutating route: always a 2xx-4xx JSON answer', async () => {
    const rng = prng(SEED);
    const seen = new Map<number, number>();
    const paths = mutating();
    const ids = [doneId, 'nope', 'repeat:typed:1', '%00', '..', 'x'.repeat(300), '%E0%A4%A', '0', '-1'];
    const queues = ['typed', 'free', 'nope', 'x'.repeat(200), '%ZZ', 'constructor', '__proto__'];
    let requests = 0;
    for (let round = 0; round < 40; round++) {
      for (const [method, template] of paths) {
        // Destructive routes get well-formed odd bodies only in the last rounds, so earlier rounds still have data to chew on.
        if (/\/(obliterate|empty|clean)$/.test(template) && round < 35) continue;
        const path = template
          .replace(`/${doneId}/`, `/${rng.pick(ids)}/`)
          .replace(`:${doneId}/`, `:${rng.pick(ids)}/`)
          .replace(/\/queues\/(typed|free)\//, `/queues/${rng.next() < 0.7 ? '$1' : rng.pick(queues)}/`);
        const type =
          rng.next() < 0.9 ? 'application/json' : rng.pick(['application/json; charset=utf-16', 'text/plain', 'application/json;;;']);
        const res = await srv.request(path, { method, auth: ADMIN, body: oddBody(rng, path), headers: { 'content-type': type } });
        requests++;
        seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
        assert.ok(res.status < 500, `${method} ${path} answered ${res.status}: ${res.text.slice(0, 300)} (FUZZ_SEED=${SEED})`);
        if (res.status >= 400) {
          assert.ok(
            res.body && (res.body.message || res.body.error),
            `${method} ${path} ${res.status} without a reason: ${res.text.slice(0, 200)}`,
          );
        }
      }
    }
    assert.ok(requests > 1000, `${requests} requests`);
    // The fuzz reached the routes (not only the guard): some were accepted, some refused by the routes themselves.
    assert.ok((seen.get(200) ?? 0) + (seen.get(202) ?? 0) + (seen.get(204) ?? 0) > 20, JSON.stringify([...seen]));
    assert.ok((seen.get(404) ?? 0) > 20 && (seen.get(400) ?? 0) > 100, JSON.stringify([...seen]));
    assert.ok(!logs.text.includes('"request failed"'), 'no request reached the 500 handler');
    assert.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution');
  });
});
