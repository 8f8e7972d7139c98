// Pure units: definitions, durations, schedules, config. No Redis.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig, parseServices } from '../src/config.ts';
import { parseDuration } from '../src/duration.ts';
import { JobDefinitionError } from '../src/errors.ts';
import { registerDefinition } from '../src/jobs/define.ts';
import { cronProblem, describeSchedule, nextRuns, schedulerRepeat } from '../src/jobs/schedule.ts';
import { tokenLifetime } from '../src/token/mint.ts';

const ok = { token: { audience: ['svc'] }, run: async () => 1 };

function problem(def: Record<string, unknown>, name = 'my-job'): string {
  try {
    registerDefinition(name, '/jobs/my-job.ts', def);
  } catch (err) {
    return (err as Error).message;
  }
  return 'no error';
}

describe('job definitions', () => {
  test('a minimal definition registers with safe defaults', () => {
    const job = registerDefinition('my-job', '/jobs/my-job.ts', ok);
    assert.equal(job.attempts, 1);
    assert.equal(job.concurrency, 1);
    assert.equal(job.overlap, 'queue');
    assert.deepEqual(job.scope, []);
    assert.equal(job.validate({}), null);
    assert.deepEqual(job.validate([]), [{ path: '/', message: 'must be an object' }]);
  });

  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['unknown key', { ...ok, retries: 3 }, /\/jobs\/my-job\.ts: retries: unknown field; allowed fields: description, schedule/],
    ['missing run', { token: ok.token }, /run: must be a function/],
    ['missing token', { run: ok.run }, /token: is required/],
    ['empty audience', { ...ok, token: { audience: [] } }, /token\.audience: must be a non-empty array/],
    [
      'scope with spaces',
      { ...ok, token: { audience: ['a'], scope: ['a b'] } },
      /token\.scope: must be an array of scope strings without spaces/,
    ],
    ['bad cron', { ...ok, schedule: { cron: '61 * * * * *' } }, /schedule\.cron: "61 \* \* \* \* \*" is not a valid cron expression/],
    ['cron with 3 fields', { ...ok, schedule: { cron: '* * *' } }, /schedule\.cron: "\* \* \*" has 3 fields; use 5/],
    ['bad time zone', { ...ok, schedule: { cron: '0 * * * * *', tz: 'Mars/Base' } }, /schedule\.tz: "Mars\/Base" is not an IANA time zone/],
    ['bad every', { ...ok, schedule: { every: 'often' } }, /schedule\.every: "often" is not a duration/],
    ['every too short', { ...ok, schedule: { every: '10ms' } }, /schedule\.every: must be at least 1s/],
    ['schedule without cron/every', { ...ok, schedule: { at: 'noon' } }, /schedule: must have cron or every/],
    ['bad timeout', { ...ok, timeout: '2 minutes' }, /timeout: "2 minutes" is not a duration/],
    [
      'params not a schema',
      { ...ok, params: { type: 'object', properties: { a: { type: 'strnig' } } } },
      /params: is not a valid JSON Schema/,
    ],
    ['params not an object schema', { ...ok, params: { type: 'string' } }, /params\.type: must be 'object'/],
    [
      'params unknown keyword (strict)',
      { ...ok, params: { type: 'object', propertes: {} } },
      /params: is not a valid JSON Schema: strict mode: unknown keyword: "propertes"/,
    ],
    ['attempts 0', { ...ok, attempts: 0 }, /attempts: must be an integer from 1 to 100/],
    ['concurrency 1.5', { ...ok, concurrency: 1.5 }, /concurrency: must be an integer from 1 to 1000/],
    ['bad backoff', { ...ok, backoff: { type: 'linear', delay: 1 } }, /backoff\.type: must be 'fixed' or 'exponential'/],
    ['bad overlap', { ...ok, overlap: 'cover' }, /overlap: must be 'queue', 'skip' or 'replace'/],
  ];
  for (const [what, def, message] of cases) {
    test(`rejects ${what} with the file, field and fix`, () => assert.match(problem(def), message));
  }

  test('a definition with several mistakes reports all of them, each with the message it gets alone', () => {
    const caught = (() => {
      try {
        registerDefinition('my-job', '/jobs/my-job.ts', { ...ok, overlap: 'skipp', concurrency: 0 });
      } catch (err) {
        return err as JobDefinitionError;
      }
      assert.fail('no error');
    })();
    assert.ok(caught instanceof JobDefinitionError);
    assert.equal(
      caught.message,
      [
        '/jobs/my-job.ts: concurrency: must be an integer from 1 to 1000',
        "/jobs/my-job.ts: overlap: must be 'queue', 'skip' or 'replace'",
      ].join('\n'),
    );
    assert.equal(caught.field, 'concurrency');
    assert.deepEqual(
      caught.problems.map((p) => p.field),
      ['concurrency', 'overlap'],
    );
    // Many fields at once: each field's first problem, in the order the fields are checked.
    const lines = problem(
      {
        retries: 3,
        token: { audience: [], scope: ['a b'] },
        schedule: { every: 'often' },
        attempts: 0,
        concurrencyPerWorker: 5,
        timeout: '2 minutes',
        backoff: { type: 'linear', delay: 1 },
        misfire: 'never',
        group: 'a b',
        keep: { completed: { count: -1 } },
      },
      'a:b',
    ).split('\n');
    assert.deepEqual(
      lines.map((l) => l.replace(/^\/jobs\/my-job\.ts: /, '').replace(/:.*$/, '')),
      [
        '"a',
        'retries',
        'run',
        'token.audience',
        'token.scope',
        'schedule.every',
        'attempts',
        'concurrencyPerWorker',
        'backoff.type',
        'timeout',
        'misfire',
        'group',
        'keep.completed.count',
      ],
    );
    // A valid concurrency is still compared with concurrencyPerWorker; an invalid one is not (its own problem is enough).
    assert.match(problem({ ...ok, concurrency: 2, concurrencyPerWorker: 3 }), /concurrencyPerWorker: must not exceed concurrency \(2\)/);
    assert.equal(
      problem({ ...ok, concurrency: 0, concurrencyPerWorker: 3 }),
      '/jobs/my-job.ts: concurrency: must be an integer from 1 to 1000',
    );
    // One mistake: exactly the one line it always was.
    assert.equal(problem({ ...ok, overlap: 'skipp' }), "/jobs/my-job.ts: overlap: must be 'queue', 'skip' or 'replace'");
  });

  test('rejects names BullMQ cannot use', () => {
    assert.match(problem(ok, 'a:b'), /"a:b" is not a usable job name: rename the file/);
    assert.match(problem(ok, 'x'.repeat(101)), /is not a usable job name/);
    assert.equal(problem(ok, 'sync_dict-2'), 'no error');
  });

  test('rejects a default export that is not an object', () => {
    assert.match(problem(null as unknown as Record<string, unknown>), /the default export must be defineJob/);
  });

  test('params validation returns every schema error with its path, and applies defaults', () => {
    const job = registerDefinition('j', '/jobs/j.ts', {
      ...ok,
      params: {
        type: 'object',
        properties: { n: { type: 'integer', minimum: 1 }, flag: { type: 'boolean', default: true } },
        required: ['n'],
        additionalProperties: false,
      },
    });
    assert.deepEqual(job.validate({ n: 0, x: 1 }), [
      { path: '/', message: 'must NOT have additional property "x"' },
      { path: '/n', message: 'must be >= 1' },
    ]);
    const data: Record<string, unknown> = { n: 2 };
    assert.equal(job.validate(data), null);
    assert.equal(data.flag, true);
  });
});

describe('durations, schedules, lifetimes', () => {
  test('parseDuration', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('30s'), 30_000);
    assert.equal(parseDuration('2m'), 120_000);
    assert.equal(parseDuration('1.5h'), 5_400_000);
    assert.equal(parseDuration(1000), 1000);
    assert.equal(parseDuration('0s'), null);
    assert.equal(parseDuration('-1s'), null);
    assert.equal(parseDuration('2 minutes'), null);
    assert.equal(parseDuration(NaN), null);
  });

  test('cron with seconds and time zone: next fire times', () => {
    assert.equal(cronProblem('0 */5 * * * *', 'Asia/Shanghai'), null);
    const from = new Date('2026-01-01T00:00:00Z');
    const next = nextRuns({ cron: '0 30 2 * * *', tz: 'Asia/Shanghai' }, 2, from);
    // 02:30 in Shanghai (UTC+8) is 18:30 UTC the day before.
    assert.deepEqual(
      next.map((d) => d.toISOString()),
      ['2026-01-01T18:30:00.000Z', '2026-01-02T18:30:00.000Z'],
    );
    assert.deepEqual(schedulerRepeat({ cron: '0 30 2 * * *', tz: 'Asia/Shanghai' }), { pattern: '0 30 2 * * *', tz: 'Asia/Shanghai' });
  });

  test('every: next fire times follow the scheduler anchor', () => {
    const from = new Date(10_500);
    assert.deepEqual(
      nextRuns({ every: '1s' }, 3, from, 11_000).map((d) => d.getTime()),
      [11_000, 12_000, 13_000],
    );
    assert.deepEqual(schedulerRepeat({ every: '30s' }), { every: 30_000 });
    assert.equal(describeSchedule({ every: '30s' }), 'every 30s');
    assert.equal(describeSchedule(undefined), 'manual');
  });

  test('token lifetime is timeout + grace, capped', () => {
    assert.equal(tokenLifetime(60_000, 900_000), 90_000);
    assert.equal(tokenLifetime(undefined, 900_000), 900_000);
    assert.equal(tokenLifetime(3_600_000, 900_000), 900_000);
  });
});

describe('config', () => {
  test('defaults', () => {
    const c = loadConfig({}, '/srv');
    assert.equal(c.redisUrl, 'redis://127.0.0.1:6379');
    assert.equal(c.redisUrlExplicit, false);
    assert.equal(c.jobsDir, '/srv/jobs');
    assert.equal(c.prefix, 'jobscope');
    assert.equal(c.port, 3000);
    assert.equal(c.issuer, 'jobscope');
    assert.equal(c.user, undefined);
    assert.equal(c.tokenMaxLifetimeMs, 900_000);
  });

  test('services', () => {
    assert.deepEqual(parseServices('system=http://127.0.0.1:4000, crm=https://crm.local/api/'), {
      system: 'http://127.0.0.1:4000/',
      crm: 'https://crm.local/api/',
    });
    assert.throws(() => parseServices('system'), /"system" is not name=url/);
    assert.throws(() => parseServices('a=ftp://x'), /must use http or https/);
  });

  test('clear errors for bad values', () => {
    assert.throws(() => loadConfig({ PORT: 'abc' }), /PORT: "abc" is not a port number/);
    assert.throws(() => loadConfig({ JOBSCOPE_USER: 'a' }), /JOBSCOPE_USER and JOBSCOPE_PASSWORD must be set together/);
    assert.throws(() => loadConfig({ JOBSCOPE_JWT_SECRET: 'short' }), /at least 32 bytes/);
    assert.throws(() => loadConfig({ JOBSCOPE_PREFIX: 'a:b' }), /JOBSCOPE_PREFIX/);
    assert.throws(() => loadConfig({ REDIS_URL: 'http://x' }), /is not redis:\/\/host:port, redis\+sentinel/);
    assert.throws(() => loadConfig({ LOG_LEVEL: 'loud' }), /LOG_LEVEL/);
    assert.throws(() => loadConfig({ JOBSCOPE_TOKEN_HEADER: 'Authorization' }), /not a usable header name/);
  });
});

describe('REDIS_URL forms', () => {
  test('one server, a Sentinel master, a Cluster; the cluster needs a hash-tag prefix', async () => {
    const { parseRedisUrl } = await import('../src/redis/url.ts');
    assert.deepEqual(parseRedisUrl('redis://:pw@h:6379/2'), { kind: 'single', url: 'redis://:pw@h:6379/2' });
    assert.deepEqual(parseRedisUrl('redis+sentinel://:s%40cret@a:26379,b:26380/mymaster/3?sentinelPassword=x'), {
      kind: 'sentinel',
      sentinels: [
        { host: 'a', port: 26379 },
        { host: 'b', port: 26380 },
      ],
      name: 'mymaster',
      tls: false,
      db: 3,
      sentinelPassword: 'x',
      password: 's@cret',
    });
    assert.deepEqual(parseRedisUrl('rediss+cluster://u:p@n1:7000,n2'), {
      kind: 'cluster',
      nodes: [
        { host: 'n1', port: 7000 },
        { host: 'n2', port: 6379 },
      ],
      tls: true,
      username: 'u',
      password: 'p',
    });
    assert.throws(() => parseRedisUrl('redis+sentinel://a:26379'), /a Sentinel URL names its master/);
    assert.throws(() => parseRedisUrl('redis+cluster://a:port'), /"a:port" is not host:port/);
    assert.equal(loadConfig({ REDIS_URL: 'redis+cluster://n1:7000' }).prefix, '{jobscope}');
    assert.equal(loadConfig({ REDIS_URL: 'redis+cluster://n1:7000', JOBSCOPE_PREFIX: '{acme}' }).prefix, '{acme}');
    assert.throws(
      () => loadConfig({ REDIS_URL: 'redis+cluster://n1:7000', JOBSCOPE_PREFIX: 'acme' }),
      /must be a hash tag in braces, e.g. \{acme\}/,
    );
    const { redactUrl } = await import('../src/redact.ts');
    assert.equal(
      redactUrl('redis+sentinel://:hunter2@a:1,b:2/m?sentinelPassword=x'),
      'redis+sentinel://:***@a:1,b:2/m?sentinelPassword=***',
    );
  });
});
