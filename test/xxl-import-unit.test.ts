// The importer's pure parts without a database: Quartz conversion, the dump scanner on mysqldump's odd corners, the
// renderer's literals, naming, and the users file's "no password yet" entries.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { registerDefinition } from '../src/jobs/define.ts';
import { quartzToCron } from '../src/import/xxl-job/cron.ts';
import { parseDump } from '../src/import/xxl-job/dump.ts';
import { nameJobs, planEstate } from '../src/import/xxl-job/map.ts';
import { quoteString, renderJob } from '../src/import/xxl-job/render.ts';
import { UsersFile, parseUsers } from '../src/server/users.ts';

describe('Quartz cron conversion', () => {
  const cases: [string, string | RegExp][] = [
    ['0 0 0 * * ? *', '0 0 0 * * *'],
    ['0 15 10 ? * 2-6', '0 15 10 * * 1-5'],
    ['0 0 12 ? * 1,7', '0 0 12 * * 0,6'],
    ['0 0 12 ? * 6L', '0 0 12 * * 5L'],
    ['0 0 12 ? * 2#1', '0 0 12 * * 1#1'],
    ['0 0 12 L * ?', '0 0 12 L * *'],
    ['0 0 12 15W * ?', /not accepted by jobscope's cron parser/],
    ['0 0 12 L-2 * ?', /not accepted/],
    ['0 0 12 * * ? 2031', /year field "2031"/],
    ['0 0 12 1 * 2', /both day-of-month and day-of-week/],
    ['0 12 * * ?', /has 5 fields/],
  ];
  for (const [quartz, expected] of cases) {
    test(quartz, () => {
      const out = quartzToCron(quartz);
      if (typeof expected === 'string') assert.deepEqual(out, { cron: expected });
      else assert.match((out as { problem: string }).problem, expected);
    });
  }
});

describe('dump scanner', () => {
  test('mysqldump: conditional comments, no column list, escapes, hex, NULL, LOCK TABLES', () => {
    const sql = [
      '/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;',
      '-- a comment; with a semicolon',
      'DROP TABLE IF EXISTS `xxl_job_group`;',
      "CREATE TABLE `xxl_job_group` (\n  `id` int(11) NOT NULL,\n  `app_name` varchar(64) NOT NULL COMMENT 'a, b',\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB;",
      'CREATE TABLE `xxl_job_info` (`id` int, `job_group` int, `glue_source` mediumtext, `alarm_email` varchar(9), KEY `k` (`id`,`job_group`));',
      'LOCK TABLES `xxl_job_info` WRITE;',
      "INSERT INTO `xxl_job_group` VALUES (1,'app-a'),(2,'it\\'s');",
      "INSERT INTO `xxl_job_info` VALUES (7,1,'echo \"a;b\"\\nexit 0',NULL),(8,2,0x6869,'x''y');",
      'INSERT INTO `xxl_job_log` VALUES (1,2,3);',
      'UNLOCK TABLES;',
    ].join('\n');
    const estate = parseDump(sql, 'x.sql');
    assert.deepEqual(estate.groups, [
      { id: 1, app_name: 'app-a' },
      { id: 2, app_name: "it's" },
    ]);
    assert.deepEqual(estate.jobs, [
      { id: 7, job_group: 1, glue_source: 'echo "a;b"\nexit 0', alarm_email: null },
      { id: 8, job_group: 2, glue_source: 'hi', alarm_email: "x'y" },
    ]);
  });

  test('a column count that does not match is an error with the line', () => {
    assert.throws(
      () => parseDump('\n\nINSERT INTO xxl_job_group (`id`, `app_name`) VALUES (1);', 'x.sql'),
      /line 3: .*1 values for 2 columns/,
    );
  });
});

describe('mapping and rendering', () => {
  test('names: handler or description, slugged, unique by id, pinned names kept, foreign names avoided', () => {
    const rows = [
      { id: 1, glue_type: 'BEAN', executor_handler: 'syncOrders', job_desc: 'x' },
      { id: 2, glue_type: 'BEAN', executor_handler: 'syncOrders', job_desc: 'y' },
      { id: 3, glue_type: 'GLUE_SHELL', executor_handler: '', job_desc: '清理日志' },
      { id: 4, glue_type: 'GLUE_SHELL', executor_handler: '', job_desc: 'Daily Report (v2)' },
      { id: 5, glue_type: 'BEAN', executor_handler: 'cleanup', job_desc: '' },
    ];
    const names = nameJobs(rows, { pinned: new Map([[2, 'orders-b']]), taken: new Set(['cleanup']) });
    assert.deepEqual([...names.values()], ['orders-b', 'sync-orders', 'xxl-job-3', 'daily-report-v2', 'cleanup-5']);
  });

  test('a rendered job file loads as a valid definition', async () => {
    const [job] = planEstate(
      {
        source: 't',
        groups: [{ id: 1, app_name: 'app' }],
        users: [],
        jobs: [
          {
            id: 1,
            job_group: 1,
            job_desc: 'it\'s "quoted"',
            schedule_type: 'CRON',
            schedule_conf: '0 0/5 * * * ?',
            executor_handler: 'h',
            executor_param: 'p',
            glue_type: 'BEAN',
            executor_block_strategy: 'DISCARD_LATER',
            executor_route_strategy: 'FIRST',
            misfire_strategy: 'FIRE_ONCE_NOW',
            executor_timeout: 5,
            executor_fail_retry_count: 2,
            trigger_status: 0,
            child_jobid: '',
          },
        ],
      },
      { tz: 'UTC', audience: ['system'] },
    );
    const dir = mkdtempSync(path.join(os.tmpdir(), 'xxl-unit-'));
    const file = path.join(dir, `${job!.name}.mjs`);
    // The TypeScript file without its import: plain JavaScript the loader can check without tsx.
    writeFileSync(file, renderJob(job!).replace("import { defineJob } from 'jobscope';", 'const defineJob = (d) => d;'));
    const def = (await import(file)) as { default: unknown };
    const reg = registerDefinition(job!.name, file, def.default);
    assert.deepEqual(reg.schedule, { cron: '0 0/5 * * * *', tz: 'UTC' });
    assert.equal(reg.definition.paused, true);
    assert.equal(reg.overlap, 'skip');
    assert.equal(reg.attempts, 3);
    assert.equal(reg.timeoutMs, 5000);
    assert.equal(reg.misfire, 'once');
    assert.equal(reg.description, 'it\'s "quoted"');
  });

  test('string literals as Prettier writes them', () => {
    assert.equal(quoteString('a'), "'a'");
    assert.equal(quoteString("it's"), '"it\'s"');
    assert.equal(quoteString('say "hi"'), '\'say "hi"\'');
    assert.equal(quoteString('a\nb'), "'a\\nb'");
  });

  test('paused must be a boolean', () => {
    assert.throws(
      () => registerDefinition('j', 'j.ts', { token: { audience: ['s'] }, paused: 'yes', run() {} }),
      /paused: must be true or false/,
    );
  });
});

describe('users file: an imported user without a password', () => {
  test('is valid in the file and cannot log in', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'xxl-users-'));
    const file = path.join(dir, 'users.json');
    writeFileSync(file, JSON.stringify({ users: [{ name: 'alice', role: 'operator', groups: ['a'], hash: null }] }));
    assert.equal(parseUsers(JSON.stringify({ users: [{ name: 'a', role: 'admin', hash: null }] }), 'f')[0]!.hash, null);
    const users = new UsersFile(file);
    assert.equal(await users.login('alice', ''), null);
    assert.equal(await users.login('alice', 'null'), null);
  });
});
