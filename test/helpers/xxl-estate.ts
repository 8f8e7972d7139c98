// A private MariaDB/MySQL database per test (127.0.0.1:3306, root), loaded with a real xxl-job schema from
// test/fixtures/xxl-job (copied from xuxueli/xxl-job doc/db/tables_xxl_job.sql) and a generated estate covering every
// schedule type, misfire, block and route strategy, glue type and status.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { ROOT } from './runtime.ts';

export const MYSQL_URL = process.env.TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306';
export type Generation = 'v2.2.0' | '3.4.2' | 'master-128dd678';

/** Quartz expressions jobscope's cron parser takes (with their fire times checked against test/helpers/quartz.ts). */
export const GOOD_CRONS = [
  '0 0 0 * * ? *',
  '0 0/5 * * * ?',
  '0 15 10 ? * MON-FRI',
  '0 15 10 ? * 2-6',
  '0 0 12 L * ?',
  '0 0 12 ? * 6L',
  '0 0 12 ? * 6#3',
  '0 30 9 1,15 * ?',
  '0 0 12 ? * 1/2',
  '0 0 8-18/2 ? * SAT,SUN',
  '30 45 23 28 2 ?',
  '0 10,40 * * * ?',
  '*/20 * * * * ?',
  '0 0 12 ? JAN-MAR 1L',
  '0 0 6 ? * FRI#2',
];
/** Quartz expressions it does not (W, LW, L-n, a year): reported, imported as manual. */
export const REPORTED_CRONS = ['0 0 12 15W * ?', '0 0 12 LW * ?', '0 0 12 L-3 * ?', '0 0 12 * * ? 2030'];

const GLUES = ['BEAN', 'BEAN', 'GLUE_SHELL', 'GLUE_PYTHON', 'GLUE_NODEJS', 'GLUE_POWERSHELL', 'GLUE_PHP', 'GLUE_GROOVY'];
const BLOCKS = ['SERIAL_EXECUTION', 'DISCARD_LATER', 'COVER_EARLY'];
const ROUTES = [
  'FIRST',
  'LAST',
  'ROUND',
  'RANDOM',
  'CONSISTENT_HASH',
  'LEAST_FREQUENTLY_USED',
  'LEAST_RECENTLY_USED',
  'FAILOVER',
  'BUSYOVER',
  'SHARDING_BROADCAST',
];
const PARAMS = ['', '{"days": 3, "tags": ["a", "b"], "nested": {"deep": true}}', "plain text with 'quotes'", '42'];
const CRONS = [...GOOD_CRONS, ...REPORTED_CRONS];

export interface Db {
  name: string;
  url: string;
  connection: mysql.Connection;
}

/** Creates the database and loads the schema of one xxl-job generation (its CREATE DATABASE/USE lines dropped). */
export async function createDb(name: string, generation: Generation): Promise<Db> {
  const root = await mysql.createConnection({ uri: MYSQL_URL, multipleStatements: true });
  await root.query(`DROP DATABASE IF EXISTS \`${name}\`; CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4`);
  await root.end();
  const url = `${MYSQL_URL}/${name}`;
  const connection = await mysql.createConnection({ uri: url, multipleStatements: true });
  const schema = readFileSync(path.join(ROOT, 'test/fixtures/xxl-job', `tables_xxl_job-${generation}.sql`), 'utf8')
    .split('\n')
    .filter((l) => !/^\s*(CREATE\s+DATABASE|USE\s)/i.test(l))
    .join('\n');
  await connection.query(schema);
  return { name, url, connection };
}

export async function dropDb(db: Db): Promise<void> {
  await db.connection.query(`DROP DATABASE IF EXISTS \`${db.name}\``);
  await db.connection.end();
}

/** Replaces the sample rows with `count` generated jobs in three executors, and three users. */
export async function loadEstate(db: Db, generation: Generation, count: number): Promise<Record<string, unknown>[]> {
  const c = db.connection;
  await c.query('DELETE FROM xxl_job_info; DELETE FROM xxl_job_group; DELETE FROM xxl_job_user');
  const titleColumn = generation === 'master-128dd678' ? 'name' : 'title';
  for (const [id, app] of [
    [1, 'order-service'],
    [2, 'billing_service'],
    [3, 'Report.Exec'],
  ] as const) {
    await c.query(`INSERT INTO xxl_job_group (id, app_name, ${titleColumn}, address_type) VALUES (?, ?, ?, 0)`, [
      id,
      app,
      app.slice(0, 12),
    ]);
  }
  await c.query('INSERT INTO xxl_job_user (id, username, password, role, permission) VALUES ?', [
    [
      [1, 'admin', 'e10adc3949ba59abbe56e057f20f883e', 1, null],
      [2, 'alice', 'e10adc3949ba59abbe56e057f20f883e', 0, '1,3'],
      [3, 'bob', 'e10adc3949ba59abbe56e057f20f883e', 0, ''],
    ],
  ]);
  const rows = Array.from({ length: count }, (_, k) => jobRow(k + 1, count, generation));
  const columns = Object.keys(rows[0]!);
  await c.query(`INSERT INTO xxl_job_info (${columns.join(', ')}) VALUES ?`, [rows.map((r) => columns.map((col) => r[col]))]);
  return rows;
}

/** Row `i` of the estate: every dimension cycles with its own period, so combinations vary. */
function jobRow(i: number, count: number, generation: Generation): Record<string, unknown> {
  const glue = i === count ? 'GLUE_JAVA' : GLUES[i % GLUES.length]!;
  const kind = i % 5;
  const cron = CRONS[i % CRONS.length]!;
  const [scheduleType, scheduleConf] = kind === 2 ? ['FIX_RATE', String(10 + i)] : kind === 3 ? ['NONE', ''] : ['CRON', cron];
  const child = i % 6 === 0 && i + 2 <= count ? `${i + 1},${i + 2}` : i % 11 === 0 ? '99999' : '';
  const desc = i % 13 === 0 ? `数据同步任务 ${i}` : `Job number ${i} (${glue})`;
  const row: Record<string, unknown> = {
    id: i,
    job_group: 1 + (i % 3),
    author: 'XXL',
    alarm_email: i % 9 === 0 ? 'ops@example.com' : '',
    executor_route_strategy: ROUTES[i % ROUTES.length],
    executor_handler: glue === 'BEAN' ? (i % 17 === 0 ? '' : `handler${i % 40}Job`) : '',
    executor_param: PARAMS[i % PARAMS.length],
    executor_block_strategy: BLOCKS[i % BLOCKS.length],
    executor_timeout: i % 7 === 0 ? 0 : i * 3,
    executor_fail_retry_count: i % 4,
    glue_type: glue,
    glue_source: glue === 'BEAN' ? '' : `# job ${i}\necho "job ${i} param=$1 shard=$2/$3"\n`,
    glue_remark: 'init',
    child_jobid: child,
    trigger_status: i % 3 === 0 ? 0 : 1,
  };
  if (generation === 'v2.2.0') {
    row.job_desc = desc;
    row.job_cron = kind === 2 || kind === 3 ? '0 0 1 * * ?' : cron;
  } else {
    row[generation === '3.4.2' ? 'job_desc' : 'name'] = desc;
    row.schedule_type = scheduleType;
    row.schedule_conf = scheduleConf;
    row.misfire_strategy = i % 2 ? 'FIRE_ONCE_NOW' : 'DO_NOTHING';
  }
  return row;
}

/** mysqldump of the database into `file` (mysqldump's defaults: extended INSERTs without column lists). */
export function dump(db: Db, file: string): void {
  const u = new URL(MYSQL_URL);
  const args = [`-h${u.hostname}`, `-P${u.port || 3306}`, `-u${decodeURIComponent(u.username)}`, `--result-file=${file}`, db.name];
  if (u.password) args.splice(3, 0, `-p${decodeURIComponent(u.password)}`);
  const r = spawnSync('mysqldump', args, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`mysqldump failed: ${r.stderr}`);
}
