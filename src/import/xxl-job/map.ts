// One xxl_job_info row -> one planned jobscope job: its name, its definition's fields, the comments that carry what has no
// field, and the notes for the report. Pure: no files, no database; the renderer turns a plan into a job file.
import { JOB_NAME } from '../../jobs/define.ts';
import { quartzToCron } from './cron.ts';
import { int, str, type Row, type XxlEstate } from './types.ts';

export type ImportStatus = 'imported' | 'notes' | 'not-imported';

/** GLUE script types: file extension and the interpreter it runs with (xxl-job's own choices, python3 for python). */
export const SCRIPTS: Record<string, { ext: string; interpreter: string }> = {
  GLUE_SHELL: { ext: 'sh', interpreter: 'bash' },
  GLUE_PYTHON: { ext: 'py', interpreter: 'python3' },
  GLUE_NODEJS: { ext: 'js', interpreter: 'node' },
  GLUE_POWERSHELL: { ext: 'ps1', interpreter: 'pwsh' },
  GLUE_PHP: { ext: 'php', interpreter: 'php' },
};

/** The README's routing table: what each xxl-job route becomes in a pull model. */
const ROUTES: Record<string, string> = {
  FIRST: 'pull model: the first free worker takes the next run',
  LAST: 'pull model: the first free worker takes the next run',
  ROUND: 'pull model: the first free worker takes the next run',
  RANDOM: 'pull model: the first free worker takes the next run',
  LEAST_FREQUENTLY_USED: 'pull model: the first free worker takes the next run',
  LEAST_RECENTLY_USED: 'pull model: the first free worker takes the next run',
  CONSISTENT_HASH: 'give the job a `group` per kind of host; within a group the first free worker takes it',
  BUSYOVER: 'built in: a busy worker takes no runs beyond its concurrencyPerWorker',
  FAILOVER: 'built in: a run whose worker died or froze goes to another worker (stalled-run recovery)',
};

const OVERLAP: Record<string, 'queue' | 'skip' | 'replace'> = {
  SERIAL_EXECUTION: 'queue',
  DISCARD_LATER: 'skip',
  COVER_EARLY: 'replace',
};

export interface ImportOptions {
  /** The admin's time zone: every cron schedule gets it as `tz`. */
  tz: string;
  audience: string[];
  /** Names given by an earlier import (xxl-job id -> name): kept, so names are stable across re-imports. */
  pinned?: ReadonlyMap<number, string>;
  /** Job names already used by files not made by this importer. */
  taken?: ReadonlySet<string>;
}

/** What the job file's defineJob({...}) gets, in the order it is written. */
export interface PlannedDefinition {
  description: string;
  schedule?: { cron: string; tz: string } | { every: string };
  paused?: true;
  params?: Record<string, unknown>;
  token: { audience: string[] };
  attempts?: number;
  timeout?: string;
  concurrency: 1;
  overlap: 'queue' | 'skip' | 'replace';
  misfire: 'skip' | 'once';
  then?: string[];
  shards?: 'workers';
  group?: string;
}

export interface PlannedJob {
  id: number;
  name: string;
  status: ImportStatus;
  /** Why not imported, or what to look at. */
  notes: string[];
  definition?: PlannedDefinition;
  /** Comments above the definition (one string per line, without `//`). */
  comments: string[];
  /** The handler's kind: a script run with ctx.exec, or a stub that fails until ported. */
  handler?: { kind: 'script'; file: string; interpreter: string; source: string; param: ParamKind } | { kind: 'stub'; message: string };
  /** Fields of the row quoted in the file (BEAN/Groovy: what the team needs to port it). */
  quoted?: Record<string, string | number>;
  /** GLUE_GROOVY source, kept in a comment. */
  groovy?: string;
}

/** `Daily Report (v2)` -> `daily-report-v2`. */
export function slug(text: string): string {
  return text
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 60)
    .replace(/-+$/, '');
}

/** An executor's app_name as a jobscope group: kept when it is a usable group name, else slugged. */
export function groupName(app: string): string {
  return /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(app) ? app : slug(app);
}

/** Stable unique names: pinned ones first, then the handler or description, `-<id>` when taken (lowest id keeps it). */
export function nameJobs(rows: Row[], opts: Pick<ImportOptions, 'pinned' | 'taken'>): Map<number, string> {
  const names = new Map<number, string>();
  const used = new Set<string>(opts.taken ?? []);
  for (const row of rows) {
    const pinned = opts.pinned?.get(int(row, 'id'));
    if (pinned) {
      names.set(int(row, 'id'), pinned);
      used.add(pinned);
    }
  }
  for (const row of [...rows].sort((a, b) => int(a, 'id') - int(b, 'id'))) {
    const id = int(row, 'id');
    if (names.has(id)) continue;
    const handler = str(row, 'glue_type') === 'BEAN' ? str(row, 'executor_handler') : '';
    let base = slug(handler.replace(/([a-z0-9])([A-Z])/g, '$1-$2')) || slug(str(row, 'job_desc', 'name'));
    if (!base || !JOB_NAME.test(base)) base = `xxl-job-${id}`;
    const name = used.has(base) ? `${base}-${id}` : base;
    names.set(id, name);
    used.add(name);
  }
  return names;
}

/**
 * How a script gets the job parameter (xxl-job passes it as the first argument): none, the run's data as JSON (a JSON
 * object parameter), `data.param` as is (a plain string) or as JSON (any other JSON value).
 */
export type ParamKind = 'none' | 'object' | 'string' | 'value';

/** executor_param -> the params schema whose defaults are the run's default data. */
function paramsOf(param: string): { params?: Record<string, unknown>; kind: ParamKind } {
  if (param.trim() === '') return { kind: 'none' };
  let value: unknown;
  try {
    value = JSON.parse(param);
  } catch {
    return { kind: 'string', params: { type: 'object', properties: { param: { type: 'string', default: param } } } };
  }
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const properties = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, { default: v as unknown }]));
    return { kind: 'object', params: { type: 'object', properties } };
  }
  return { kind: 'value', params: { type: 'object', properties: { param: { default: value } } } };
}

type Schedule = PlannedDefinition['schedule'];

/** The schedule of a row (2.x job_cron; 2.3+ schedule_type/schedule_conf). A problem makes the job manual and is noted. */
function scheduleOf(row: Row, tz: string, notes: string[], comments: string[]): Schedule | 'invalid' {
  const type = 'job_cron' in row && !('schedule_type' in row) ? 'CRON' : str(row, 'schedule_type') || 'NONE';
  const conf = str(row, 'schedule_conf', 'job_cron').trim();
  if (type === 'NONE') return undefined;
  if (type === 'CRON') {
    const converted = quartzToCron(conf);
    if ('cron' in converted) return { cron: converted.cron, tz };
    notes.push(`schedule not converted, the job is manual until you write one: ${converted.problem}`);
    comments.push(`xxl-job schedule (not converted): CRON ${conf}`);
    return undefined;
  }
  if (type === 'FIX_RATE' || type === 'FIX_DELAY') {
    const seconds = Number(conf);
    if (!Number.isInteger(seconds) || seconds < 1) return 'invalid';
    if (type === 'FIX_DELAY')
      notes.push(
        `FIX_DELAY ${seconds}s became every '${seconds}s' (a fixed rate; overlap queues a run that comes due during the previous one)`,
      );
    return { every: `${seconds}s` };
  }
  return 'invalid';
}

/** Fields the row has and the job file quotes for whoever ports it. */
function quote(row: Row, app: string): Record<string, string | number> {
  const q: Record<string, string | number> = { id: int(row, 'id'), executor: app };
  for (const c of [
    'job_desc',
    'name',
    'author',
    'executor_handler',
    'executor_param',
    'executor_route_strategy',
    'glue_type',
    'glue_remark',
  ]) {
    if (str(row, c) !== '') q[c] = str(row, c);
  }
  return q;
}

export function planJob(row: Row, app: string, names: Map<number, string>, opts: ImportOptions): PlannedJob {
  const id = int(row, 'id');
  const name = names.get(id)!;
  const notes: string[] = [];
  const comments: string[] = [];
  const glue = str(row, 'glue_type') || 'BEAN';
  const fail = (reason: string): PlannedJob => ({ id, name, status: 'not-imported', notes: [reason], comments: [] });
  if (glue !== 'BEAN' && glue !== 'GLUE_GROOVY' && !SCRIPTS[glue]) return fail(`glue_type ${glue} is not known to the importer`);

  const schedule = scheduleOf(row, opts.tz, notes, comments);
  if (schedule === 'invalid') return fail(`schedule ${str(row, 'schedule_type')} "${str(row, 'schedule_conf')}" cannot be read`);
  const { params, kind } = paramsOf(str(row, 'executor_param'));
  const block = str(row, 'executor_block_strategy') || 'SERIAL_EXECUTION';
  let overlap = OVERLAP[block] ?? 'queue';
  if (!OVERLAP[block]) notes.push(`block strategy ${block} is unknown: overlap 'queue' (SERIAL_EXECUTION) used`);
  const route = str(row, 'executor_route_strategy') || 'FIRST';
  const broadcast = route === 'SHARDING_BROADCAST';
  if (broadcast && overlap === 'replace') {
    overlap = 'skip';
    notes.push("COVER_EARLY with SHARDING_BROADCAST: a sharded job cannot replace, overlap 'skip' used");
  }
  if (!broadcast) comments.push(`xxl-job route ${route}: ${ROUTES[route] ?? 'no counterpart; the first free worker takes the run'}`);
  const misfire = str(row, 'misfire_strategy') === 'FIRE_ONCE_NOW' ? 'once' : 'skip';

  const then: string[] = [];
  for (const child of str(row, 'child_jobid')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const childName = names.get(Number(child));
    if (childName) then.push(childName);
    else notes.push(`child job ${child} does not exist in xxl_job_info: left out of then`);
  }
  const email = str(row, 'alarm_email').trim();
  if (email) {
    comments.push(`xxl-job alarm e-mail: ${email}; jobscope alerts by webhook: set alert: { webhook } or JOBSCOPE_ALERT_WEBHOOK`);
    notes.push(`alarm e-mail ${email} not carried over (alerts go to a webhook)`);
  }
  const group = groupName(app);
  const retries = int(row, 'executor_fail_retry_count');
  const timeout = int(row, 'executor_timeout');
  const definition: PlannedDefinition = {
    description: str(row, 'job_desc', 'name') || name,
    ...(schedule ? { schedule } : {}),
    ...(int(row, 'trigger_status') === 0 ? { paused: true as const } : {}),
    ...(params ? { params } : {}),
    token: { audience: opts.audience },
    ...(retries > 0 ? { attempts: Math.min(100, retries + 1) } : {}),
    ...(timeout > 0 ? { timeout: `${timeout}s` } : {}),
    concurrency: 1,
    overlap,
    misfire,
    ...(then.length ? { then } : {}),
    ...(broadcast ? { shards: 'workers' as const } : {}),
    ...(group ? { group } : {}),
  };
  const job: PlannedJob = { id, name, status: 'imported', notes, definition, comments };
  if (glue === 'BEAN') {
    const handler = str(row, 'executor_handler') || '(no handler)';
    job.handler = { kind: 'stub', message: `not ported yet: ${handler} of executor ${app}` };
    job.quoted = quote(row, app);
    notes.push(`BEAN handler ${handler}: write its run() (the job fails until then)`);
  } else if (glue === 'GLUE_GROOVY') {
    job.handler = { kind: 'stub', message: `not ported yet: GLUE_GROOVY (Java) job ${id} of executor ${app}` };
    job.quoted = quote(row, app);
    job.groovy = str(row, 'glue_source');
    notes.push('GLUE_GROOVY is Java run inside the executor: port it by hand (its source is kept in a comment)');
  } else {
    const { ext, interpreter } = SCRIPTS[glue]!;
    job.handler = { kind: 'script', file: `_scripts/${name}.${ext}`, interpreter, source: str(row, 'glue_source'), param: kind };
  }
  if (notes.length) job.status = 'notes';
  return job;
}

/** Every row of the estate, planned. */
export function planEstate(estate: XxlEstate, opts: ImportOptions): PlannedJob[] {
  const apps = new Map(estate.groups.map((g) => [int(g, 'id'), str(g, 'app_name')]));
  const names = nameJobs(estate.jobs, opts);
  const jobs = [...estate.jobs]
    .sort((a, b) => int(a, 'id') - int(b, 'id'))
    .map((row) => planJob(row, apps.get(int(row, 'job_group')) ?? `executor-${int(row, 'job_group')}`, names, opts));
  // A child that is not imported has no job file: `then` cannot name it (the jobs folder would not load).
  const missing = new Set(jobs.filter((j) => j.status === 'not-imported').map((j) => j.name));
  for (const job of jobs) {
    const then = job.definition?.then;
    if (!then?.some((n) => missing.has(n))) continue;
    for (const n of then.filter((c) => missing.has(c))) job.notes.push(`child job ${n} is not imported: left out of then`);
    const kept = then.filter((c) => !missing.has(c));
    if (kept.length) job.definition!.then = kept;
    else delete job.definition!.then;
    job.status = 'notes';
  }
  return jobs;
}
