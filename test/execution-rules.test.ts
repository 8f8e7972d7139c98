// Pure units of the execution rules: trigger options, outcomes, misfire timing, resume phase, the new definition fields,
// and the token lease's re-mint timing (fake timers, a minter that records calls). No Redis.
import assert from 'node:assert/strict';
import { describe, mock, test } from 'node:test';
import { loadConfig } from '../src/config.ts';
import { LockLostError } from '../src/errors.ts';
import { registerDefinition } from '../src/jobs/define.ts';
import { createLogger } from '../src/log.ts';
import { runOptions } from '../src/control/queues.ts';
import { outcomeOf } from '../src/run/outcome.ts';
import { nextOnPhase } from '../src/control/schedules.ts';
import { fireTime } from '../src/runtime/admission.ts';
import { RunTokenLease } from '../src/token/lease.ts';
import type { MintedToken, MintRequest, TokenMinter } from '../src/token/mint.ts';
import type { ExecutionLock } from '../src/token/store.ts';

const ok = { token: { audience: ['svc'] }, run: async () => 1 };

function problem(def: Record<string, unknown>): string {
  try {
    registerDefinition('my-job', '/jobs/my-job.ts', def);
  } catch (err) {
    return (err as Error).message;
  }
  return 'no error';
}

describe('trigger options', () => {
  const now = Date.parse('2026-12-03T10:00:00Z');
  test('delay, at, priority and key become BullMQ options', () => {
    assert.deepEqual(runOptions({}, now), {});
    assert.deepEqual(runOptions({ delay: '5m' }, now), { delay: 300_000 });
    assert.deepEqual(runOptions({ delay: 1500 }, now), { delay: 1500 });
    assert.deepEqual(runOptions({ at: '2026-12-03T10:00:30Z' }, now), { delay: 30_000 });
    assert.deepEqual(runOptions({ at: '2026-12-03T09:59:30Z' }, now), {}, 'a time just past runs now');
    assert.deepEqual(runOptions({ priority: 3 }, now), { priority: 3 });
    const a = runOptions({ key: 'invoice-42' }, now).jobId!;
    assert.match(a, /^key-[A-Za-z0-9_-]{24}$/);
    assert.equal(runOptions({ key: 'invoice-42' }, now).jobId, a, 'the same key gives the same run id');
    assert.notEqual(runOptions({ key: 'invoice-43' }, now).jobId, a);
    assert.doesNotMatch(runOptions({ key: 'a:b c/d' }, now).jobId!, /[:\s/]/, 'any key is safe in a Redis key and a URL');
  });

  const bad: [string, Parameters<typeof runOptions>[0], RegExp][] = [
    ['both', { delay: '1s', at: '2026-12-03T11:00:00Z' }, /give delay or at, not both/],
    ['delay', { delay: 'soon' }, /delay: "soon" is not a duration/],
    ['at', { at: 'tomorrow' }, /at: "tomorrow" is not an ISO 8601 time/],
    ['past', { at: '2026-12-01T10:00:00Z' }, /is in the past/],
    ['priority 0', { priority: 0 }, /priority: must be an integer from 1/],
    ['priority float', { priority: 1.5 }, /priority: must be an integer/],
    ['empty key', { key: '' }, /key: must be a string of 1 to 200 characters/],
    ['long key', { key: 'x'.repeat(201) }, /key: must be a string of 1 to 200/],
  ];
  for (const [name, opts, message] of bad) {
    test(`refused: ${name}`, () => {
      assert.throws(
        () => runOptions(opts, now),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'ERR_TRIGGER_OPTIONS');
          assert.match(err.message, message);
          return true;
        },
      );
    });
  }
});

describe('outcomes', () => {
  test('only completed is a success; a failed run says what its worker recorded, never what its error says', () => {
    assert.equal(outcomeOf('completed', null), 'completed');
    assert.equal(outcomeOf('completed', 'timeout'), 'completed', 'an earlier attempt timed out, the run completed');
    assert.equal(outcomeOf('active', null), null);
    assert.equal(outcomeOf('waiting', 'timeout'), null);
    assert.equal(outcomeOf('failed', null), 'failed', 'a failure nobody recorded (stalled too often)');
    assert.equal(outcomeOf('failed', 'failed'), 'failed');
    assert.equal(outcomeOf('failed', 'timeout'), 'timeout');
    assert.equal(outcomeOf('failed', 'cancelled'), 'cancelled');
    assert.equal(outcomeOf('failed', 'skipped'), 'skipped');
    assert.equal(outcomeOf('failed', 'misfire'), 'misfire');
    assert.equal(outcomeOf('failed', 'completed'), 'failed', 'only the outcomes of a failure');
    assert.equal(outcomeOf('failed', 'RunTimeoutError: run timed out after 10 ms'), 'failed', 'no error text is parsed');
  });
});

describe('schedules', () => {
  test('fire time is the millis ending a scheduler run id', () => {
    assert.equal(fireTime({ id: 'repeat:tick:1796280000000', timestamp: 5 }), 1796280000000);
    assert.equal(fireTime({ id: '17', timestamp: 5 }), 5, 'not a scheduler run: its creation time');
  });

  test('resume keeps an every-schedule on its phase', () => {
    assert.equal(nextOnPhase(10_000, 3_000, 1_000_000), 1_003_000);
    assert.equal(nextOnPhase(10_000, 3_000, 1_003_000), 1_013_000, 'strictly after now: no fire at once');
    assert.equal(nextOnPhase(10_000, 0, 1_000_001), 1_010_000);
    assert.equal(nextOnPhase(10_000, 13_000, 1_000_000), 1_003_000, 'a phase is taken modulo the interval');
  });
});

describe('execution fields of a definition', () => {
  test('defaults: serial cluster-wide, no rate limit, misfire skip after 5 s', () => {
    const job = registerDefinition('my-job', '/jobs/my-job.ts', ok);
    assert.equal(job.concurrency, 1);
    assert.equal(job.concurrencyPerWorker, 1);
    assert.equal(job.rateLimit, undefined);
    assert.equal(job.misfire, 'skip');
    assert.equal(job.misfireGraceMs, 5000);
  });

  test('values are parsed', () => {
    const job = registerDefinition('my-job', '/jobs/my-job.ts', {
      ...ok,
      concurrency: 6,
      concurrencyPerWorker: 2,
      rateLimit: { max: 10, duration: '1m' },
      misfire: 'once',
      misfireGrace: '30s',
    });
    assert.equal(job.concurrency, 6);
    assert.equal(job.concurrencyPerWorker, 2);
    assert.deepEqual(job.rateLimit, { max: 10, durationMs: 60_000 });
    assert.equal(job.misfire, 'once');
    assert.equal(job.misfireGraceMs, 30_000);
    assert.equal(
      registerDefinition('j', '/jobs/j.ts', { ...ok, concurrency: 4 }).concurrencyPerWorker,
      4,
      'per worker defaults to the limit',
    );
  });

  const bad: [string, Record<string, unknown>, RegExp][] = [
    [
      'per worker above limit',
      { ...ok, concurrency: 2, concurrencyPerWorker: 3 },
      /concurrencyPerWorker: must not exceed concurrency \(2\)/,
    ],
    ['per worker 0', { ...ok, concurrencyPerWorker: 0 }, /concurrencyPerWorker: must be an integer from 1/],
    ['rate limit shape', { ...ok, rateLimit: 5 }, /rateLimit: must be \{ max: 10, duration: '1m' \}/],
    ['rate limit max', { ...ok, rateLimit: { max: 0, duration: '1s' } }, /rateLimit\.max: must be an integer >= 1/],
    ['rate limit duration', { ...ok, rateLimit: { max: 1, duration: 'often' } }, /rateLimit\.duration: "often" is not a duration/],
    ['rate limit extra', { ...ok, rateLimit: { max: 1, duration: '1s', burst: 2 } }, /rateLimit\.burst: unknown field/],
    ['misfire', { ...ok, misfire: 'all' }, /misfire: must be 'skip' or 'once'/],
    ['misfire grace', { ...ok, misfireGrace: 'a bit' }, /misfireGrace: "a bit" is not a duration/],
  ];
  for (const [name, def, message] of bad) {
    test(`refused: ${name}`, () => assert.match(problem(def), message));
  }

  test('lock duration and runaway grace come from the environment', () => {
    const config = loadConfig({ JOBSCOPE_LOCK_DURATION: '5s', JOBSCOPE_RUNAWAY_GRACE: '2s' });
    assert.equal(config.lockDurationMs, 5000);
    assert.equal(config.runawayGraceMs, 2000);
    assert.equal(loadConfig({}).lockDurationMs, 10_000);
    assert.throws(() => loadConfig({ JOBSCOPE_LOCK_DURATION: '200ms' }), /JOBSCOPE_LOCK_DURATION: "200ms" is too short/);
  });
});

/** A minter that signs nothing: it hands out numbered tokens and records mints (with their lock) and revocations. */
class FakeMinter {
  mints: { lock: ExecutionLock | undefined; jti: string }[] = [];
  revoked: string[] = [];
  failNext: Error | undefined;
  private n = 0;
  audiences: string[][] = [];
  async mint(req: MintRequest, lock?: ExecutionLock): Promise<MintedToken> {
    this.audiences.push(req.audience);
    if (this.failNext) {
      const err = this.failNext;
      this.failNext = undefined;
      throw err;
    }
    const jti = `t${++this.n}`;
    this.mints.push({ lock, jti });
    const nowS = Math.floor(Date.now() / 1000);
    return {
      raw: `raw-${jti}`,
      claims: {
        iss: 'i',
        sub: `job:${req.job}`,
        aud: req.audience,
        scope: '',
        jti,
        iat: nowS,
        nbf: nowS,
        exp: Math.floor((Date.now() + req.lifetimeMs) / 1000),
        run: req.run,
        att: 1,
      },
    };
  }
  async revoke(jti: string): Promise<void> {
    this.revoked.push(jti);
  }
}

describe('RunTokenLease', () => {
  const request: MintRequest = { job: 'j', run: 'j:1', attempt: 1, audience: ['svc'], scope: [], lifetimeMs: 100_000 };
  const log = createLogger('silent');
  const flush = async () => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };

  test('first token revokes the run’s earlier ones; re-mints a fifth of the lifetime before exp; the old token goes 5 s later', async () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
    try {
      const minter = new FakeMinter();
      const lease = new RunTokenLease(minter as unknown as TokenMinter, request, log, {}, { key: 'lock', token: 'L1' });
      const first = await lease.start();
      assert.deepEqual(minter.mints, [{ lock: { key: 'lock', token: 'L1', first: true }, jti: 't1' }]);
      // exp = 1,100 s; margin = 20 s: the re-mint is due at 1,080 s.
      mock.timers.tick(79_000);
      await flush();
      assert.equal(minter.mints.length, 1, 'not before the margin');
      mock.timers.tick(1000);
      await flush();
      assert.deepEqual(
        minter.mints[1],
        { lock: { key: 'lock', token: 'L1', first: false }, jti: 't2' },
        're-mint keeps the earlier token live',
      );
      assert.equal(lease.primary.claims.jti, 't2', 'requests from now on carry the new token');
      assert.deepEqual(minter.revoked, [], 'the replaced token stays live a moment for requests in flight');
      mock.timers.tick(5000);
      await flush();
      assert.deepEqual(minter.revoked, [first.claims.jti]);
      await lease.close();
      assert.deepEqual(minter.revoked, ['t1', 't2']);
      assert.deepEqual(lease.raws, ['raw-t1', 'raw-t2']);
      await lease.close();
      assert.deepEqual(minter.revoked, ['t1', 't2'], 'close is idempotent');
    } finally {
      mock.timers.reset();
    }
  });

  test('one token per audience, minted on first use (one mint for concurrent first calls); none for an audience not named', async () => {
    const minter = new FakeMinter();
    const lease = new RunTokenLease(
      minter as unknown as TokenMinter,
      { ...request, audience: ['a', 'b'] },
      log,
      {},
      { key: 'lock', token: 'L' },
    );
    await lease.start();
    assert.deepEqual(minter.audiences, [['a']], 'only the first audience at the start');
    const [b1, b2] = await Promise.all([lease.token('b'), lease.token('b')]);
    assert.equal(b1, b2);
    assert.deepEqual(minter.audiences, [['a'], ['b']]);
    assert.deepEqual(minter.mints[1].lock, { key: 'lock', token: 'L', first: false }, 'a later audience does not revoke the run’s tokens');
    assert.deepEqual(
      lease.held().map((t) => t.claims.aud),
      [['a'], ['b']],
    );
    await assert.rejects(lease.token('c'), /this job's token is not for "c": its token.audience is \[a, b\]/);
    await lease.close();
    assert.deepEqual(minter.revoked.sort(), ['t1', 't2']);
    await assert.rejects(lease.token('a'), /has ended/);
  });

  test('a failed re-mint is retried after 1 s; a re-mint refused for a lost lock reports it and stops', async () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 2_000_000 });
    try {
      const minter = new FakeMinter();
      const lost: Error[] = [];
      const lease = new RunTokenLease(minter as unknown as TokenMinter, request, log, { lost: (e) => lost.push(e) });
      await lease.start();
      minter.failNext = new Error('redis down');
      mock.timers.tick(80_000);
      await flush();
      assert.equal(minter.mints.length, 1);
      mock.timers.tick(1000);
      await flush();
      assert.equal(minter.mints.length, 2, 'retried a second later');
      minter.failNext = new LockLostError('j:1');
      mock.timers.tick(80_000);
      await flush();
      assert.equal(lost.length, 1);
      mock.timers.tick(60_000);
      await flush();
      assert.equal(minter.mints.length, 2, 'no more re-mints once the lock is gone');
      await lease.close();
    } finally {
      mock.timers.reset();
    }
  });
});
