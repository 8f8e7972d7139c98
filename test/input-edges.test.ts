// Input edges of the HTTP API, against a real Redis and real HTTP on 127.0.0.1: each is answered 400 (431 for headers
// over Node's limit) with the JSON envelope `{ error, message, param? }` naming the parameter, never a silent default,
// a bare status or a 500; a viewer's Bull Board change is 403 forbidden as in the API; every code is snake_case.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { jobscopeFixture, type Fixture } from './helpers/fixture.ts';
import { ADMIN, TestServer, VIEWER, basic, type Answer } from './helpers/server.ts';

let fx: Fixture;
let srv: TestServer;

before(async () => {
  fx = await jobscopeFixture({
    jobs: { 'hello.ts': `export default { token: { audience: ['svc'] }, async run() { return 'hi'; } };` },
    env: { JOBSCOPE_PREFIX: 'edges' },
    server: true,
  });
  srv = fx.server;
});
after(async () => {
  await fx?.close();
});

/** The one error envelope: a snake_case code, a message, and (when given) the parameter the message starts with. */
function assertRefusal(res: Answer, status: number, param: string | null, what: string): void {
  assert.equal(res.status, status, `${what}: ${res.text}`);
  assert.match(res.headers.get('content-type') ?? '', /application\/json/, what);
  // Bull Board's answers keep `error: { key }` for its UI and carry the code in `code`.
  const code = typeof res.body.error === 'string' ? res.body.error : res.body.code;
  assert.match(code, /^[a-z]+(_[a-z]+)*$/, `${what}: one code style (snake_case): ${code}`);
  assert.equal(typeof res.body.message, 'string', what);
  if (param !== null) {
    assert.equal(res.body.param, param, `${what}: names the parameter`);
    assert.ok(res.body.message.startsWith(`${param}:`), `${what}: ${res.body.message}`);
  }
}

const trigger = (body: string) => srv.request('/api/jobs/hello/runs', { method: 'POST', auth: ADMIN, body });

describe('input edges of the API', () => {
  test('delay and at: at most a year ahead', async () => {
    const inAYear = new Date(Date.now() + 366 * 86_400_000).toISOString();
    for (const [body, param] of [
      [{ delay: 1e20 }, 'delay'],
      [{ delay: '400d' }, 'delay'],
      [{ delay: 366 * 86_400_000 }, 'delay'],
      [{ at: inAYear }, 'at'],
      [{ at: '9999-12-31T00:00:00Z' }, 'at'],
    ] as const) {
      const res = await trigger(JSON.stringify(body));
      assertRefusal(res, 400, param, JSON.stringify(body));
      assert.match(res.body.message, /more than a year ahead/);
    }
    // Within the year is fine.
    assert.equal((await trigger(JSON.stringify({ delay: '364d' }))).status, 202);
    assert.equal((await trigger(JSON.stringify({ at: new Date(Date.now() + 86_400_000).toISOString() }))).status, 202);
  });

  test('a body of null, "x", 1 or [] is called what it is; not-JSON is called not JSON', async () => {
    for (const body of ['null', '"x"', '1', 'true']) {
      const res = await trigger(body);
      assertRefusal(res, 400, null, body);
      assert.equal(res.body.message, 'body must be a JSON object', body);
    }
    const array = await trigger('[]');
    assertRefusal(array, 400, null, '[]');
    assert.match(array.body.message, /^body must be a JSON object/);
    const broken = await trigger('{"data":');
    assertRefusal(broken, 400, null, 'broken JSON');
    assert.equal(broken.body.message, 'body is not valid JSON');
  });

  test('list parameters: unknown or bracketed names and limits out of range are refused, naming them', async () => {
    for (const [path, param] of [
      ['/api/runs?state[]=failed', 'state[]'],
      ['/api/runs?stat=failed', 'stat'],
      ['/api/runs?limit=0', 'limit'],
      ['/api/runs?limit=abc', 'limit'],
      ['/api/runs?limit=1000', 'limit'],
      ['/api/runs?limit=-1', 'limit'],
      ['/api/runs?limit=1&limit=2', 'limit'],
      ['/api/runs?state=exploded', 'state'],
      ['/api/jobs/hello/runs?limit=0', 'limit'],
      ['/api/jobs/hello/runs?limit=abc', 'limit'],
      ['/api/jobs/hello/runs?limit=1000', 'limit'],
      ['/api/jobs/hello/runs?state=failed', 'state'],
      ['/api/jobs/hello/stats?zone=UTC', 'zone'],
    ] as const) {
      assertRefusal(await srv.request(path, { auth: ADMIN }), 400, param, path);
    }
    const bracket = await srv.request('/api/runs?state[]=failed', { auth: ADMIN });
    assert.match(bracket.body.message, /give state=a,b or repeat state=/);
    // In range is fine.
    assert.equal((await srv.request('/api/runs?limit=200&state=failed,completed', { auth: ADMIN })).status, 200);
    assert.equal((await srv.request('/api/jobs/hello/runs?limit=100', { auth: ADMIN })).status, 200);
  });

  test('ids: a job name or run id over 200 characters is 400 naming it; over Node header limit a JSON 431', async () => {
    const long = `hello:${'1'.repeat(300)}`;
    assertRefusal(await srv.request(`/api/runs/${long}`, { auth: ADMIN }), 400, 'runId', 'long run id');
    assertRefusal(await srv.request(`/api/runs/${long}/cancel`, { method: 'POST', auth: ADMIN }), 400, 'runId', 'long cancel');
    assertRefusal(await srv.request(`/api/jobs/${'h'.repeat(201)}`, { auth: ADMIN }), 400, 'name', 'long job name');
    // 200 characters is still looked up (and unknown).
    assert.equal((await srv.request(`/api/runs/hello:${'1'.repeat(194)}`, { auth: ADMIN })).status, 404);

    // 20 KB in the URL: Node refuses it before Express; the answer is still the JSON envelope.
    const huge = await rawGet(`/api/runs/hello:${'1'.repeat(20_000)}`);
    assert.equal(huge.status, 431);
    assert.match(huge.type, /application\/json/);
    assert.equal(JSON.parse(huge.body).error, 'headers_too_large');
    // The server still answers afterwards.
    assert.equal((await srv.request('/api/jobs/hello/runs', { auth: ADMIN })).status, 200);
  });

  test("a viewer's Bull Board add (or any change) is 403 forbidden, as in the API", async () => {
    const add = await srv.request('/dashboard/queues/api/queues/hello/add', {
      method: 'POST',
      auth: VIEWER,
      json: { name: 'x', data: {}, options: {} },
    });
    assertRefusal(add, 403, null, 'viewer add');
    assert.equal(add.body.code, 'forbidden');
    const api = await srv.request('/api/jobs/hello/runs', { method: 'POST', auth: VIEWER, json: {} });
    assertRefusal(api, 403, null, 'viewer API trigger');
    assert.equal(api.body.error, 'forbidden');
    const { waiting, delayed, active, completed } = (await fx.api.job('hello')).counts;
    const counts = { waiting, delayed, active, completed } as Record<string, number>;
    assert.equal(
      Object.values(counts).reduce((a, b) => a + b, 0),
      2,
      'only the two runs of the delay test',
    );
  });

  test('every error of the API answers in one code style', async () => {
    const answers = [
      await srv.request('/api/jobs/nope', { auth: ADMIN }),
      await srv.request('/api/runs/hello:999', { auth: ADMIN }),
      await srv.request('/api/runs/hello:999/cancel', { method: 'POST', auth: ADMIN }),
      await srv.request('/api/jobs/hello/runs', { method: 'POST', auth: ADMIN, json: { priority: 0 } }),
      await srv.request('/api/nothing', { auth: ADMIN }),
      await srv.request('/api/jobs', {}),
    ];
    assert.deepEqual(
      answers.map((a) => [a.status, a.body.error]),
      [
        [404, 'unknown_job'],
        [404, 'unknown_run'],
        [404, 'unknown_run'],
        [400, 'bad_request'],
        [404, 'not_found'],
        [401, 'unauthorized'],
      ],
    );
    assert.equal(answers[3].body.param, 'priority');
  });

  test('GET /logout: always 401 with the Basic challenge (the pages log out with it), never counted as a failed login', async () => {
    for (let i = 0; i < 15; i++) {
      const res = await srv.request('/logout', { auth: { user: 'logout', password: String(i) } });
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm="jobscope"/);
      assert.equal(res.body.error, 'unauthorized');
    }
    assert.equal((await srv.request('/api/me', { auth: ADMIN })).status, 200, 'no login limit reached');
  });
});

/** A GET with node:http (fetch refuses nothing, but keeps no raw view of a refused request). */
function rawGet(path: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(srv.url + path, { headers: { authorization: basic(ADMIN) }, timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}
