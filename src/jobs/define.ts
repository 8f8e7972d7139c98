// defineJob and the validation of a definition: every problem names the field and how to fix it.
import { Ajv, type ErrorObject } from 'ajv';
import type { FromSchema, JSONSchema } from 'json-schema-to-ts';
import addFormatsModule from 'ajv-formats';
import { parseDuration } from '../duration.ts';
import { JobDefinitionError, type DefinitionProblem } from '../errors.ts';
import type { AlertEvent, JobDefinition, KeepRule, ParamsIssue, RegisteredJob, ThenStep } from '../interfaces.ts';
import { cronProblem, everyMs } from './schedule.ts';

/** The data type a params schema describes. */
export type DataOfSchema<P> = P extends JSONSchema ? FromSchema<P> : Record<string, unknown>;

/**
 * Identity at run time; gives a job file its types. With a `params` JSON Schema written inline, `ctx.data` is typed from
 * it (json-schema-to-ts); or give the data type as a generic: `defineJob<{ days: number }>({ ... })`.
 */
export function defineJob<const P extends JSONSchema, Result>(
  definition: { params: P } & Omit<JobDefinition<NoInfer<DataOfSchema<P>>, Result>, 'params'>,
): JobDefinition<DataOfSchema<P>, Result>;
export function defineJob<Data = Record<string, unknown>, Result = unknown>(
  definition: JobDefinition<Data, Result>,
): JobDefinition<Data, Result>;
export function defineJob(definition: JobDefinition): JobDefinition {
  return definition;
}

const KNOWN_KEYS = [
  'description',
  'schedule',
  'params',
  'token',
  'attempts',
  'backoff',
  'timeout',
  'concurrency',
  'concurrencyPerWorker',
  'rateLimit',
  'overlap',
  'misfire',
  'misfireGrace',
  'then',
  'shards',
  'group',
  'alert',
  'keep',
  'paused',
  'run',
] as const;

const ALERT_EVENTS = ['failed', 'timeout', 'misfire', 'recovered'] as const;
/** Worker groups and job names: the same safe alphabet (they appear in CLI flags and Redis). */
const GROUP = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const MAX_SHARDS = 1000;

/** A scheduled fire that starts later than this after its due time is a misfire (xxl-job's default policy: skip it). */
export const DEFAULT_MISFIRE_GRACE_MS = 5000;

/** Queue names become Redis key parts: no ':' and nothing a shell or URL would mangle. */
export const JOB_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/;

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;
const ajv = addFormats(new Ajv({ allErrors: true, strict: true, useDefaults: true, coerceTypes: false }));

function issuesOf(errors: ErrorObject[] | null | undefined): ParamsIssue[] {
  return (errors ?? []).map((e) => ({
    path: e.instancePath || '/',
    message:
      e.keyword === 'additionalProperties'
        ? `must NOT have additional property "${String((e.params as { additionalProperty: string }).additionalProperty)}"`
        : (e.message ?? 'is invalid'),
  }));
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Thrown by `fail` to leave the check of one field (its first problem is enough); never leaves registerDefinition. */
const STOP = Symbol('stop');

/**
 * Checks a job file's default export and derives the registered job; throws JobDefinitionError naming every problem found
 * (each field's first: the checks of one field stop at its first problem, the other fields are still checked).
 */
export function registerDefinition(name: string, file: string, raw: unknown): RegisteredJob {
  const problems: DefinitionProblem[] = [];
  const fail = (field: string | undefined, problem: string): never => {
    problems.push({ field, problem });
    throw STOP;
  };
  /** Runs the checks of one field; a problem there ends only them. */
  const section = (check: () => void): boolean => {
    const before = problems.length;
    try {
      check();
    } catch (err) {
      if (err !== STOP) throw err;
    }
    return problems.length === before;
  };
  let job: RegisteredJob | undefined;
  try {
    job = derive(name, file, raw, fail, section);
  } catch (err) {
    if (err !== STOP) throw err;
  }
  if (problems.length || !job) {
    const [first, ...more] = problems;
    throw new JobDefinitionError(file, first?.field, first?.problem ?? 'is not a valid definition', undefined, more);
  }
  return job;
}

function derive(
  name: string,
  file: string,
  raw: unknown,
  fail: (field: string | undefined, problem: string) => never,
  section: (check: () => void) => boolean,
): RegisteredJob {
  section(() => {
    if (JOB_NAME.test(name)) return;
    fail(
      undefined,
      `"${name}" is not a usable job name: rename the file to letters, digits, '-' or '_' (no ':' or '.'), at most 100 characters`,
    );
  });
  if (!isPlainObject(raw)) fail(undefined, 'the default export must be defineJob({...}); add `export default defineJob({ ... })`');
  const def = raw as unknown as JobDefinition & Record<string, unknown>;
  for (const key of Object.keys(def)) {
    section(() => {
      if (!(KNOWN_KEYS as readonly string[]).includes(key)) fail(key, `unknown field; allowed fields: ${KNOWN_KEYS.join(', ')}`);
    });
  }
  section(() => {
    if (typeof def.run !== 'function') fail('run', 'must be a function: async run(ctx) { ... }');
  });
  section(() => {
    if (def.description !== undefined && typeof def.description !== 'string') fail('description', 'must be a string');
  });

  const token = isPlainObject(def.token) ? def.token : {};
  const { audience, scope, ...extraToken } = token as Record<string, unknown>;
  section(() => {
    if (!isPlainObject(def.token)) fail('token', "is required: { audience: ['service-name'], scope: ['read'] } (least privilege)");
    if (Object.keys(extraToken).length) fail(`token.${Object.keys(extraToken)[0]}`, 'unknown field; allowed: audience, scope');
  });
  section(() => {
    if (!isPlainObject(def.token)) return;
    if (
      !Array.isArray(audience) ||
      audience.length === 0 ||
      !audience.every((a) => typeof a === 'string' && /^[A-Za-z0-9_.:/-]+$/.test(a))
    ) {
      fail('token.audience', "must be a non-empty array of service names, e.g. ['system']");
    }
  });
  section(() => {
    if (
      scope !== undefined &&
      (!Array.isArray(scope) || !scope.every((s) => typeof s === 'string' && /^[\x21\x23-\x5B\x5D-\x7E]+$/.test(s)))
    ) {
      fail('token.scope', "must be an array of scope strings without spaces, e.g. ['dict:read']");
    }
  });

  section(() => {
    if (def.schedule === undefined) return;
    const s = def.schedule as unknown as Record<string, unknown>;
    if (!isPlainObject(s)) fail('schedule', "must be { cron: '0 */5 * * * *', tz?: 'Area/City' } or { every: '30s' }");
    const keys = Object.keys(s).sort().join(',');
    if ('cron' in s) {
      if (keys !== 'cron' && keys !== 'cron,tz') fail('schedule', 'a cron schedule takes only cron and tz');
      if (typeof s.cron !== 'string') fail('schedule.cron', 'must be a string');
      if (s.tz !== undefined && typeof s.tz !== 'string') fail('schedule.tz', 'must be an IANA time zone string');
      const problem = cronProblem(s.cron as string, s.tz as string | undefined);
      if (problem) fail(s.tz !== undefined && problem.includes('time zone') ? 'schedule.tz' : 'schedule.cron', problem);
    } else if ('every' in s) {
      if (keys !== 'every') fail('schedule', 'an interval schedule takes only every');
      const ms = everyMs(s as { every: string });
      if (ms === null) fail('schedule.every', `"${String(s.every)}" is not a duration (examples: '30s', '5m', 60000)`);
      if (ms! < 1000) fail('schedule.every', 'must be at least 1s');
    } else fail('schedule', "must have cron or every: { cron: '0 */5 * * * *' } or { every: '30s' }");
  });

  let validate: RegisteredJob['validate'] = (data) => (isPlainObject(data) ? null : [{ path: '/', message: 'must be an object' }]);
  section(() => {
    if (def.params === undefined) return;
    if (!isPlainObject(def.params)) fail('params', "must be a JSON Schema object, e.g. { type: 'object', properties: {...} }");
    if (def.params.type !== 'object') fail('params.type', "must be 'object': run data is always a JSON object");
    let check: ReturnType<typeof ajv.compile>;
    try {
      check = ajv.compile(def.params);
    } catch (err) {
      return fail('params', `is not a valid JSON Schema: ${(err as Error).message}`);
    }
    validate = (data) => (check(data) ? null : issuesOf(check.errors));
  });

  const int = (field: 'attempts' | 'concurrency' | 'concurrencyPerWorker', min: number, max: number): number | undefined => {
    const v = def[field];
    if (v === undefined) return undefined;
    if (!Number.isInteger(v) || (v as number) < min || (v as number) > max) fail(field, `must be an integer from ${min} to ${max}`);
    return v as number;
  };
  let attempts = 1;
  let concurrency = 1;
  let perWorker: number | undefined;
  section(() => void (attempts = int('attempts', 1, 100) ?? 1));
  const concurrencyOk = section(() => void (concurrency = int('concurrency', 1, 1000) ?? 1));
  section(() => {
    perWorker = int('concurrencyPerWorker', 1, 1000);
    // Compared only with a valid concurrency (a wrong one is reported already).
    if (concurrencyOk && perWorker !== undefined && perWorker > concurrency) {
      fail('concurrencyPerWorker', `must not exceed concurrency (${concurrency}): concurrency is the cluster-wide limit`);
    }
  });

  let rateLimit: RegisteredJob['rateLimit'];
  section(() => {
    if (def.rateLimit === undefined) return;
    const r = def.rateLimit as unknown as Record<string, unknown>;
    if (!isPlainObject(r)) fail('rateLimit', "must be { max: 10, duration: '1m' }");
    const extra = Object.keys(r).filter((k) => k !== 'max' && k !== 'duration');
    if (extra.length) fail(`rateLimit.${extra[0]}`, 'unknown field; allowed: max, duration');
    if (!Number.isInteger(r.max) || (r.max as number) < 1) fail('rateLimit.max', 'must be an integer >= 1 (run starts per duration)');
    const ms = parseDuration(r.duration as string | number);
    if (ms === null || ms < 1) fail('rateLimit.duration', `"${String(r.duration)}" is not a duration (examples: '1s', '1m', 60000)`);
    rateLimit = { max: r.max as number, durationMs: ms! };
  });

  section(() => {
    if (def.backoff === undefined) return;
    const b = def.backoff as unknown as Record<string, unknown>;
    if (!isPlainObject(b) || (b.type !== 'fixed' && b.type !== 'exponential')) fail('backoff.type', "must be 'fixed' or 'exponential'");
    if (typeof b.delay !== 'number' || b.delay < 0) fail('backoff.delay', 'must be a number of milliseconds >= 0');
    const extra = Object.keys(b).filter((k) => !['type', 'delay', 'jitter'].includes(k));
    if (extra.length) fail(`backoff.${extra[0]}`, 'unknown field; allowed: type, delay, jitter');
    if (b.jitter !== undefined && (typeof b.jitter !== 'number' || b.jitter < 0 || b.jitter > 1))
      fail('backoff.jitter', 'must be between 0 and 1');
  });

  let timeoutMs: number | undefined;
  section(() => {
    if (def.timeout === undefined) return;
    const ms = parseDuration(def.timeout);
    if (ms === null) fail('timeout', `"${String(def.timeout)}" is not a duration (examples: '30s', '2m', 120000)`);
    timeoutMs = ms!;
  });
  section(() => {
    if (def.overlap !== undefined && !['queue', 'skip', 'replace'].includes(def.overlap)) {
      fail('overlap', "must be 'queue', 'skip' or 'replace'");
    }
  });
  section(() => {
    if (def.misfire !== undefined && def.misfire !== 'skip' && def.misfire !== 'once') fail('misfire', "must be 'skip' or 'once'");
  });
  const then: RegisteredJob['then'] = [];
  section(() => {
    if (def.then === undefined) return;
    if (!Array.isArray(def.then)) fail('then', "must be a list: ['report', { job: 'notify', data: (result, run) => ({ ... }) }]");
    (def.then as unknown[]).forEach((entry, i) => {
      if (typeof entry === 'string') return void then.push({ job: entry });
      if (!isPlainObject(entry) || typeof entry.job !== 'string')
        fail(`then[${i}]`, "must be a job name or { job: 'name', data?: (result, run) => data }");
      const e = entry as Record<string, unknown>;
      const extra = Object.keys(e).filter((k) => k !== 'job' && k !== 'data');
      if (extra.length) fail(`then[${i}].${extra[0]}`, 'unknown field; allowed: job, data');
      if (e.data !== undefined && typeof e.data !== 'function') fail(`then[${i}].data`, 'must be a function (result, run) => data');
      then.push({ job: e.job as string, data: e.data as ThenStep['data'] });
    });
  });
  let shards: RegisteredJob['shards'];
  section(() => {
    if (def.shards === undefined) return;
    if (def.shards !== 'workers' && (!Number.isInteger(def.shards) || (def.shards as number) < 1 || (def.shards as number) > MAX_SHARDS)) {
      fail('shards', `must be an integer from 1 to ${MAX_SHARDS}, or 'workers' (one shard per live worker serving the job)`);
    }
    if (def.overlap === 'replace') fail('shards', "a sharded job cannot have overlap: 'replace'; use 'queue' or 'skip'");
    shards = def.shards;
  });
  section(() => {
    if (def.group !== undefined && (typeof def.group !== 'string' || !GROUP.test(def.group))) {
      fail('group', "must be a name of letters, digits, '-' or '_' (the same as `jobscope worker --group <name>`)");
    }
  });
  let alert: RegisteredJob['alert'];
  section(() => {
    if (def.alert === undefined) return;
    const a = def.alert as unknown as Record<string, unknown>;
    if (!isPlainObject(a)) fail('alert', "must be { webhook?: 'https://...', on?: ['failed', 'timeout', 'misfire', 'recovered'] }");
    const extra = Object.keys(a).filter((k) => k !== 'webhook' && k !== 'on');
    if (extra.length) fail(`alert.${extra[0]}`, 'unknown field; allowed: webhook, on');
    if (a.webhook !== undefined) {
      let url: URL | undefined;
      try {
        url = new URL(String(a.webhook));
      } catch {
        url = undefined;
      }
      if (typeof a.webhook !== 'string' || !url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
        fail('alert.webhook', 'must be an http(s) URL');
      }
    }
    if (a.on !== undefined && (!Array.isArray(a.on) || !a.on.every((e) => (ALERT_EVENTS as readonly unknown[]).includes(e)))) {
      fail('alert.on', `must be a list of ${ALERT_EVENTS.map((e) => `'${e}'`).join(', ')}`);
    }
    alert = { webhook: a.webhook as string | undefined, on: (a.on as AlertEvent[] | undefined) ?? [...ALERT_EVENTS] };
  });
  let keep: RegisteredJob['keep'];
  section(() => {
    if (def.keep === undefined) return;
    const k = def.keep as unknown as Record<string, unknown>;
    if (!isPlainObject(k)) fail('keep', "must be { completed?: { count?: 1000, age?: '7d' }, failed?: { count?: 5000, age?: '30d' } }");
    const extra = Object.keys(k).filter((f) => f !== 'completed' && f !== 'failed');
    if (extra.length) fail(`keep.${extra[0]}`, 'unknown field; allowed: completed, failed');
    keep = {};
    for (const which of ['completed', 'failed'] as const) {
      const rule = k[which] as Record<string, unknown> | undefined;
      if (rule === undefined) continue;
      if (!isPlainObject(rule)) fail(`keep.${which}`, "must be { count?: 1000, age?: '7d' }");
      const more = Object.keys(rule).filter((f) => f !== 'count' && f !== 'age');
      if (more.length) fail(`keep.${which}.${more[0]}`, 'unknown field; allowed: count, age');
      const out: KeepRule = {};
      if (rule.count !== undefined) {
        if (!Number.isInteger(rule.count) || (rule.count as number) < 0) fail(`keep.${which}.count`, 'must be an integer >= 0 (runs kept)');
        out.count = rule.count as number;
      }
      if (rule.age !== undefined) {
        const ms = parseDuration(rule.age);
        if (ms === null || ms < 1000) fail(`keep.${which}.age`, `"${String(rule.age)}" is not a duration of 1s or more ('12h', '7d')`);
        out.age = Math.ceil(ms! / 1000);
      }
      keep![which] = out;
    }
  });
  section(() => {
    if (def.paused !== undefined && typeof def.paused !== 'boolean')
      fail('paused', 'must be true or false (the state a new job starts in)');
  });
  let misfireGraceMs = DEFAULT_MISFIRE_GRACE_MS;
  section(() => {
    if (def.misfireGrace === undefined) return;
    const ms = parseDuration(def.misfireGrace);
    if (ms === null) fail('misfireGrace', `"${String(def.misfireGrace)}" is not a duration (examples: '5s', '1m')`);
    misfireGraceMs = ms!;
  });

  return {
    name,
    file,
    definition: def,
    description: def.description ?? '',
    schedule: def.schedule,
    attempts,
    backoff: def.backoff,
    timeoutMs,
    concurrency,
    concurrencyPerWorker: perWorker ?? concurrency,
    rateLimit,
    overlap: def.overlap ?? 'queue',
    misfire: def.misfire ?? 'skip',
    misfireGraceMs,
    then,
    shards,
    group: def.group,
    alert,
    ...(keep ? { keep } : {}),
    audience: audience as string[],
    scope: (scope as string[] | undefined) ?? [],
    validate,
  };
}
