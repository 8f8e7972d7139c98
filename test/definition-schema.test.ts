// The definition schema (src/jobs/definition-schema.ts) and the problems derived from it: what the schema says beyond the
// messages test/definition.test.ts pins. Pure units, no Redis.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { registerDefinition } from '../src/jobs/define.ts';

const ok = { token: { audience: ['svc'] }, run: async () => 1 };

function problem(def: Record<string, unknown>): string {
  try {
    registerDefinition('j', 'j.ts', def);
  } catch (err) {
    return (err as Error).message;
  }
  return 'no error';
}

describe('definition schema', () => {
  test('backoff: the field at fault, finite numbers, unknown fields first', () => {
    assert.equal(problem({ ...ok, backoff: 'exponential' }), "j.ts: backoff: must be { type: 'fixed' or 'exponential', delay: 1000 }");
    assert.equal(problem({ ...ok, backoff: { type: 'fixed' } }), 'j.ts: backoff.delay: must be a number of milliseconds >= 0');
    assert.equal(problem({ ...ok, backoff: { type: 'fixed', delay: NaN } }), 'j.ts: backoff.delay: must be a number of milliseconds >= 0');
    assert.equal(problem({ ...ok, backoff: { type: 'fixed', delay: 1, jitter: NaN } }), 'j.ts: backoff.jitter: must be between 0 and 1');
    assert.equal(
      problem({ ...ok, backoff: { type: 'linear', delay: 1, retries: 2 } }),
      'j.ts: backoff.retries: unknown field; allowed: type, delay, jitter',
    );
  });

  test('a key present with the value undefined is a key (as `cron: process.env.CRON` unset)', () => {
    assert.equal(problem({ ...ok, schedule: { cron: undefined } }), 'j.ts: schedule.cron: must be a string');
    assert.equal(
      problem({ ...ok, schedule: { every: undefined } }),
      "j.ts: schedule.every: \"undefined\" is not a duration (examples: '30s', '5m', 60000)",
    );
    assert.equal(
      problem({ ...ok, schedule: { cron: '0 * * * *', every: '1m' } }),
      'j.ts: schedule: a cron schedule takes only cron and tz',
    );
  });

  test('within a field, problems come in field order: a later check is not hidden behind an earlier schema one', () => {
    assert.equal(problem({ ...ok, alert: { webhook: 'ftp://x', on: ['never'] } }), 'j.ts: alert.webhook: must be an http(s) URL');
    assert.equal(
      problem({ ...ok, keep: { completed: { age: 'forever' }, failed: { count: -1 } } }),
      "j.ts: keep.completed.age: \"forever\" is not a duration of 1s or more ('12h', '7d')",
    );
    assert.equal(problem({ ...ok, then: [{ job: 'a', data: 5 }, 7] }), 'j.ts: then[0].data: must be a function (result, run) => data');
    assert.equal(
      problem({ ...ok, then: ['a', { data: () => 1 }] }),
      "j.ts: then[1]: must be a job name or { job: 'name', data?: (result, run) => data }",
    );
  });

  test('token: its own problem, audience and scope each reported', () => {
    assert.equal(
      problem({ ...ok, token: { audience: [], scope: ['a b'], extra: 1, more: 2 } }),
      [
        'j.ts: token.extra: unknown field; allowed: audience, scope',
        "j.ts: token.audience: must be a non-empty array of service names, e.g. ['system']",
        "j.ts: token.scope: must be an array of scope strings without spaces, e.g. ['dict:read']",
      ].join('\n'),
    );
  });

  test('a valid definition registers with its durations in milliseconds and defaults applied', () => {
    const job = registerDefinition('j', 'j.ts', {
      ...ok,
      schedule: { every: '30s' },
      timeout: '2m',
      rateLimit: { max: 5, duration: '1m' },
      then: ['a', { job: 'b' }],
      alert: { webhook: 'https://hooks.example/x' },
    });
    assert.equal(job.timeoutMs, 120_000);
    assert.deepEqual(job.rateLimit, { max: 5, durationMs: 60_000 });
    assert.deepEqual(job.then, [{ job: 'a' }, { job: 'b', data: undefined }]);
    assert.deepEqual(job.alert, { webhook: 'https://hooks.example/x', on: ['failed', 'timeout', 'misfire', 'recovered'] });
    assert.equal(job.misfireGraceMs, 5000);
  });
});
