// `jobscope import xxl-job` against a real MariaDB/MySQL server (127.0.0.1:3306, root): three xxl-job schema generations,
// a generated estate of a few hundred rows, import from the database and from a mysqldump, then the result loaded by
// `jobscope list`, its fire times checked against an independent Quartz reference, re-imports, users.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as prettier from 'prettier';
import { loadJobs } from '../src/jobs/registry.ts';
import { nextRuns } from '../src/jobs/schedule.ts';
import type { ImportReport } from '../src/import/xxl-job/report.ts';
import { parseUsers } from '../src/server/users.ts';
import { runCli } from './helpers/cli.ts';
import { quartzNext } from './helpers/quartz.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { ROOT, removeDir } from './helpers/runtime.ts';
import { createDb, dropDb, dump, GOOD_CRONS, loadEstate, REPORTED_CRONS, type Db, type Generation } from './helpers/xxl-estate.ts';

const TMP = path.join(ROOT, '.jobscope', 'test-tmp');
const ROWS = 300;
const TZ = 'Asia/Shanghai'; // UTC+8 all year: the Quartz reference walks a fixed offset

let redis: TestRedis;
let tmp: string;
const dbs = new Map<Generation, Db>();
const rowsOf = new Map<Generation, Record<string, unknown>[]>();

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    REDIS_URL: redis.url,
    JOBSCOPE_PREFIX: 'xxl',
    JOBSCOPE_STATE_DIR: path.join(TMP, 'state'),
    ...extra,
  };
}

async function importXxl(from: string, out: string, ...more: string[]): Promise<ImportReport> {
  const report = path.join(tmp, `report-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
  const args = ['import', 'xxl-job', '--from', from, '--out', out, '--tz', TZ, '--report', report, ...more];
  const r = await runCli(args, env(), 120_000);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(readFileSync(report, 'utf8')) as ImportReport;
}

function filesOf(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = readFileSync(p, 'utf8');
    }
  };
  walk(dir);
  return out;
}

before(async () => {
  redis = await startRedis();
  tmp = mkdtempSync(path.join(TMP, 'xxl-'));
  const counts: Record<Generation, number> = { 'master-128dd678': ROWS, '3.4.2': 60, 'v2.2.0': 60 };
  for (const gen of Object.keys(counts) as Generation[]) {
    const db = await createDb(`jobscope_xxl_${process.pid}_${gen.replace(/\W/g, '_')}`, gen);
    dbs.set(gen, db);
    rowsOf.set(gen, await loadEstate(db, gen, counts[gen]));
  }
});

after(async () => {
  for (const db of dbs.values()) await dropDb(db);
  await redis?.destroy();
  if (tmp) removeDir(tmp);
});

describe('import of the current schema (master) from the database and from a dump', () => {
  let dirA: string;
  let report: ImportReport;
  const master = () => dbs.get('master-128dd678')!;

  test('every row is imported, imported with notes, or not imported with a reason', async () => {
    dirA = path.join(tmp, 'jobs-db');
    const t0 = Date.now();
    report = await importXxl(master().url, dirA);
    console.log(`imported ${ROWS} rows from MariaDB in ${Date.now() - t0} ms (CLI process included)`);
    assert.equal(report.totals.rows, ROWS);
    assert.equal(report.totals.notImported, 1);
    assert.deepEqual(
      report.jobs.filter((j) => j.status === 'not-imported').map((j) => j.notes[0]),
      ['glue_type GLUE_JAVA is not known to the importer'],
    );
    assert.equal(report.totals.imported + report.totals.importedWithNotes, ROWS - 1);
    assert.ok(report.totals.imported > 0 && report.totals.importedWithNotes > 0);
    const names = report.jobs.map((j) => j.name);
    assert.equal(new Set(names).size, names.length, 'names are unique');
    assert.ok(!report.source.includes('@') || !/:[^/]*@/.test(report.source), 'no password in the report');
  });

  test('a mysqldump of the same database gives the same files', async () => {
    const file = path.join(tmp, 'dump.sql');
    dump(master(), file);
    const dirB = path.join(tmp, 'jobs-dump');
    const fromDump = await importXxl(file, dirB);
    assert.deepEqual(fromDump.totals, report.totals);
    assert.deepEqual(filesOf(dirB), filesOf(dirA));
  });

  test('jobscope list loads the result with no error; stopped jobs are paused', async () => {
    const r = await runCli(['list', '--json'], env({ JOBSCOPE_JOBS: dirA }), 120_000);
    assert.equal(r.code, 0, r.stderr);
    const jobs = JSON.parse(r.stdout) as { name: string; paused: boolean }[];
    assert.equal(jobs.length, ROWS - 1);
    const byId = new Map(report.jobs.map((j) => [j.id, j.name]));
    const stopped = rowsOf.get('master-128dd678')!.filter((row) => row.trigger_status === 0 && row.glue_type !== 'GLUE_JAVA');
    const paused = new Set(jobs.filter((j) => j.paused).map((j) => j.name));
    assert.deepEqual([...paused].sort(), stopped.map((row) => byId.get(row.id as number)!).sort());
  });

  test("each cron job's next five fire times equal Quartz's", async () => {
    const { jobs, errors } = await loadJobs(dirA);
    assert.deepEqual(errors, []);
    const rows = new Map(rowsOf.get('master-128dd678')!.map((r) => [r.id as number, r]));
    const byName = new Map(report.jobs.map((j) => [j.name, rows.get(j.id)!]));
    let checked = 0;
    for (const job of jobs) {
      const row = byName.get(job.name)!;
      if (row.schedule_type !== 'CRON') continue;
      const quartz = row.schedule_conf as string;
      if (REPORTED_CRONS.includes(quartz)) {
        assert.equal(job.schedule, undefined, `${quartz} is reported, the job is manual`);
        continue;
      }
      assert.ok(job.schedule && 'cron' in job.schedule && job.schedule.tz === TZ, job.name);
      for (const from of [new Date('2026-01-01T00:00:00+08:00'), new Date('2027-02-27T13:07:00+08:00')]) {
        const ours: string[] = nextRuns(job.schedule!, 5, from).map((d) => d.toISOString());
        assert.deepEqual(
          ours,
          quartzNext(quartz, 8, from, 5).map((d) => d.toISOString()),
          `${quartz} from ${from.toISOString()}`,
        );
      }
      checked++;
    }
    assert.ok(checked >= 100, `checked ${checked} cron jobs`);
    // Hand-computed: the last Friday of each month at noon, Shanghai (Quartz 6L).
    assert.deepEqual(
      quartzNext('0 0 12 ? * 6L', 8, new Date('2026-01-01T00:00:00+08:00'), 3).map((d) => d.toISOString()),
      ['2026-01-30T04:00:00.000Z', '2026-02-27T04:00:00.000Z', '2026-03-27T04:00:00.000Z'],
    );
    assert.equal(new Set(GOOD_CRONS).size, GOOD_CRONS.length);
  });

  test('the fields of a row map as documented', async () => {
    const { jobs } = await loadJobs(dirA);
    const named = (id: number) => jobs.find((j) => j.name === report.jobs.find((r) => r.id === id)!.name)!;
    // Row 1: BEAN of billing_service, DISCARD_LATER, LAST, retry 1, timeout 3 s, JSON object param, FIRE_ONCE_NOW.
    const j1 = named(1);
    assert.equal(j1.overlap, 'skip');
    assert.equal(j1.concurrency, 1);
    assert.equal(j1.misfire, 'once');
    assert.equal(j1.timeoutMs, 3000);
    assert.equal(j1.attempts, 2);
    assert.equal(j1.group, 'billing_service', 'a usable app_name is kept as the group');
    assert.deepEqual(j1.audience, ['system']);
    const data: Record<string, unknown> = {};
    assert.equal(j1.validate(data), null);
    assert.deepEqual(data, { days: 3, tags: ['a', 'b'], nested: { deep: true } }, 'executor_param became the default data');
    await assert.rejects(async () => j1.definition.run({} as never), /not ported yet: handler1Job of executor billing_service/);
    // Row 41: the same handler as row 1 (a unique name), COVER_EARLY.
    assert.equal(named(41).name, 'handler1-job-41');
    assert.equal(named(41).overlap, 'replace');
    // Row 48: SERIAL_EXECUTION, children 49 and 50, order-service, stopped, DO_NOTHING.
    const j48 = named(48);
    assert.equal(j48.overlap, 'queue');
    assert.equal(j48.misfire, 'skip');
    assert.equal(j48.group, 'order-service');
    assert.equal(j48.definition.paused, true);
    assert.deepEqual(
      j48.then.map((t) => t.job),
      [named(49).name, named(50).name],
    );
    // Row 17: FIX_RATE 27 s, BEAN without a handler.
    const j17 = named(17);
    assert.deepEqual(j17.schedule, { every: '27s' });
    assert.equal(j17.attempts, 2);
    // Row 11: a child id that does not exist is left out and noted.
    assert.ok(report.jobs.find((r) => r.id === 11)!.notes.some((n) => n.includes('child job 99999 does not exist')));
    // Row 9: SHARDING_BROADCAST and an alarm e-mail; row 18: a plain string param.
    const j9 = named(9);
    assert.equal(j9.shards, 'workers');
    assert.ok(report.jobs.find((r) => r.id === 9)!.notes.some((n) => n.includes('ops@example.com')));
    assert.match(readFileSync(j9.file, 'utf8'), /alarm e-mail: ops@example\.com/);
    const d18: Record<string, unknown> = {};
    named(18).validate(d18);
    assert.deepEqual(d18, { param: "plain text with 'quotes'" });
    // Row 2: GLUE_SHELL script beside the job; row 7: GLUE_GROOVY source in a comment.
    const j2 = named(2);
    assert.equal(readFileSync(path.join(dirA, '_scripts', `${j2.name}.sh`), 'utf8'), '# job 2\necho "job 2 param=$1 shard=$2/$3"\n');
    assert.match(readFileSync(named(7).file, 'utf8'), /GLUE_GROOVY source[\s\S]*\/\/ echo "job 7 param=\$1/);
    assert.match(readFileSync(named(1).file, 'utf8'), /xxl-job route LAST: pull model/);
  });

  test('the job files are formatted (Prettier, the repository settings)', async () => {
    const options = { ...(await prettier.resolveConfig(path.join(ROOT, 'x.ts'))), parser: 'typescript' as const };
    const bad: string[] = [];
    for (const [file, text] of Object.entries(filesOf(dirA))) {
      if (file.endsWith('.ts') && !(await prettier.check(text, options))) bad.push(file);
    }
    assert.deepEqual(bad, []);
  });

  test('a re-import leaves unchanged and edited files alone, updates untouched ones, adds new rows', async () => {
    const again = await importXxl(master().url, dirA);
    assert.equal(again.totals.filesWritten, 0);
    assert.ok(again.jobs.every((j) => j.files.every((f) => f.action === 'unchanged')));
    const edited = path.join(dirA, `${report.jobs.find((j) => j.id === 4)!.name}.ts`);
    writeFileSync(edited, readFileSync(edited, 'utf8') + '// my change\n');
    const c = master().connection;
    await c.query('UPDATE xxl_job_info SET executor_timeout = 999 WHERE id IN (4, 5)');
    await c.query(
      `INSERT INTO xxl_job_info (id, job_group, name, author, schedule_type, schedule_conf, misfire_strategy, executor_handler,
        executor_block_strategy, glue_type, trigger_status) VALUES (1000, 1, 'new one', 'x', 'NONE', '', 'DO_NOTHING', 'brandNewJob', 'SERIAL_EXECUTION', 'BEAN', 1)`,
    );
    const third = await importXxl(master().url, dirA);
    const actions = (id: number) => third.jobs.find((j) => j.id === id)!.files.map((f) => f.action);
    assert.deepEqual(actions(4), ['kept-edited', 'unchanged'], 'the edited job file is kept; its script is unchanged');
    assert.deepEqual(actions(5)[0], 'updated');
    assert.deepEqual(actions(1000), ['created']);
    assert.deepEqual(third.kept, [path.basename(edited)]);
    assert.match(readFileSync(edited, 'utf8'), /\/\/ my change\n$/);
    assert.equal(third.jobs.find((j) => j.id === 1000)!.name, 'brand-new-job');
    assert.deepEqual(
      third.jobs.filter((j) => j.id < 1000).map((j) => j.name),
      report.jobs.map((j) => j.name),
      'names are stable',
    );
  });

  test('--dry-run writes nothing', async () => {
    const dir = path.join(tmp, 'jobs-dry');
    const dry = await importXxl(master().url, dir, '--dry-run');
    assert.equal(dry.dryRun, true);
    assert.ok(dry.totals.filesWritten > 0);
    assert.equal(existsSync(dir), false);
  });

  test('--users: roles mapped, passwords unset until `jobscope users add`', async () => {
    const file = path.join(tmp, 'users.json');
    const args = ['import', 'xxl-job', '--from', master().url, '--out', path.join(tmp, 'jobs-users'), '--users'];
    const r = await runCli(args, env({ JOBSCOPE_USERS_FILE: file }), 120_000);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /passwords are not carried over/);
    assert.match(r.stdout, /bob: skipped/);
    const users = parseUsers(readFileSync(file, 'utf8'), file);
    assert.deepEqual(users, [
      { name: 'admin', role: 'admin', hash: null },
      { name: 'alice', role: 'operator', groups: ['order-service', 'report-exec'], hash: null },
    ]);
    const add = await runCli(
      ['users', 'add', 'alice', '--role', 'operator', '--groups', 'order-service', '--password-stdin'],
      env({ JOBSCOPE_USERS_FILE: file }),
      30_000,
      'a-long-enough-password\n',
    );
    assert.equal(add.code, 0, add.stderr);
    assert.match(parseUsers(readFileSync(file, 'utf8'), file)[1]!.hash ?? '', /^\$scrypt\$/);
  });
});

describe('older schema generations', () => {
  for (const gen of ['v2.2.0', '3.4.2'] as const) {
    test(`${gen}: imported from the database and from a dump, loaded by jobscope list`, async () => {
      const db = dbs.get(gen)!;
      const dir = path.join(tmp, `jobs-${gen}`);
      const report = await importXxl(db.url, dir);
      assert.equal(report.totals.rows, 60);
      assert.equal(report.totals.notImported, 1);
      const file = path.join(tmp, `dump-${gen}.sql`);
      dump(db, file);
      const dirB = path.join(tmp, `jobs-${gen}-dump`);
      await importXxl(file, dirB);
      assert.deepEqual(filesOf(dirB), filesOf(dir));
      const r = await runCli(['list', '--json'], env({ JOBSCOPE_JOBS: dir }), 120_000);
      assert.equal(r.code, 0, r.stderr);
      const jobs = JSON.parse(r.stdout) as { name: string; schedule: unknown }[];
      assert.equal(jobs.length, 59);
      if (gen === 'v2.2.0')
        assert.ok(
          jobs.every((j) => j.schedule === null || 'cron' in (j.schedule as object)),
          'job_cron -> cron',
        );
    });
  }

  test("xxl-job's own tables_xxl_job.sql (INSERTs with column lists and now()) imports and loads", async () => {
    for (const gen of ['v2.2.0', '3.4.2', 'master-128dd678']) {
      const dir = path.join(tmp, `jobs-sample-${gen}`);
      const report = await importXxl(path.join(ROOT, 'test/fixtures/xxl-job', `tables_xxl_job-${gen}.sql`), dir);
      assert.ok(report.totals.rows >= 1 && report.totals.notImported === 0, gen);
      const { errors } = await loadJobs(dir);
      assert.deepEqual(errors, [], gen);
    }
  });
});
