// What the definition schema cannot say, checked after it: the job name (the file's), cron expressions and time zones,
// durations (whose problem quotes the value), params as a JSON Schema of its own, a webhook URL, and one field against
// another. Each check looks only at values whose shape the schema found right (`valid`) or that it guards itself.
import type { Ajv } from 'ajv';
import { parseDuration } from '../duration.ts';
import type { Problem } from './definition-problems.ts';
import { cronProblem } from './schedule.ts';

/** Queue names become Redis key parts: no ':' and nothing a shell or URL would mangle. */
export const JOB_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/;

type Definition = Record<string, unknown>;
/** True when the schema found no problem at or under this top-level field. */
type Valid = (field: string) => boolean;

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function jobNameProblem(name: string): string | undefined {
  if (JOB_NAME.test(name)) return undefined;
  return `"${name}" is not a usable job name: rename the file to letters, digits, '-' or '_' (no ':' or '.'), at most 100 characters`;
}

function scheduleProblems(def: Definition, valid: Valid): Problem[] {
  const s = def.schedule;
  if (!isPlainObject(s) || !valid('schedule')) return [];
  if ('cron' in s) {
    const tz = s.tz as string | undefined;
    const problem = cronProblem(s.cron as string, tz);
    return problem ? [{ path: ['schedule', tz !== undefined && problem.includes('time zone') ? 'tz' : 'cron'], problem }] : [];
  }
  const ms = parseDuration(s.every);
  if (ms === null)
    return [{ path: ['schedule', 'every'], problem: `"${String(s.every)}" is not a duration (examples: '30s', '5m', 60000)` }];
  return ms < 1000 ? [{ path: ['schedule', 'every'], problem: 'must be at least 1s' }] : [];
}

/** The durations other than `schedule.every`; an absent one is fine, except rateLimit's. */
function durationProblems(def: Definition): Problem[] {
  const problems: Problem[] = [];
  const check = (path: Problem['path'], value: unknown, fix: string, min = 0) => {
    const ms = parseDuration(value);
    if (ms === null || ms < min) problems.push({ path, problem: `"${String(value)}" is not a duration ${fix}` });
  };
  if (def.timeout !== undefined) check(['timeout'], def.timeout, "(examples: '30s', '2m', 120000)");
  if (def.misfireGrace !== undefined) check(['misfireGrace'], def.misfireGrace, "(examples: '5s', '1m')");
  if (isPlainObject(def.rateLimit)) check(['rateLimit', 'duration'], def.rateLimit.duration, "(examples: '1s', '1m', 60000)", 1);
  const keep = isPlainObject(def.keep) ? def.keep : {};
  for (const which of ['completed', 'failed']) {
    const rule = keep[which];
    if (isPlainObject(rule) && rule.age !== undefined) check(['keep', which, 'age'], rule.age, "of 1s or more ('12h', '7d')", 1000);
  }
  return problems;
}

function paramsProblems(def: Definition, valid: Valid, ajv: Ajv): Problem[] {
  if (def.params === undefined || !valid('params')) return [];
  try {
    ajv.compile(def.params as object);
    return [];
  } catch (err) {
    return [{ path: ['params'], problem: `is not a valid JSON Schema: ${(err as Error).message}` }];
  }
}

function webhookProblems(def: Definition): Problem[] {
  const webhook = isPlainObject(def.alert) ? def.alert.webhook : undefined;
  if (typeof webhook !== 'string') return [];
  let url: URL | undefined;
  try {
    url = new URL(webhook);
  } catch {
    url = undefined;
  }
  return url && (url.protocol === 'http:' || url.protocol === 'https:')
    ? []
    : [{ path: ['alert', 'webhook'], problem: 'must be an http(s) URL' }];
}

/** One field against another: the per-worker cap within the cluster-wide limit, shards with an overlap they can live with. */
function crossFieldProblems(def: Definition, valid: Valid): Problem[] {
  const problems: Problem[] = [];
  const perWorker = def.concurrencyPerWorker as number | undefined;
  const concurrency = (def.concurrency as number | undefined) ?? 1;
  // Compared only with a valid concurrency (a wrong one is reported already).
  if (perWorker !== undefined && valid('concurrency') && valid('concurrencyPerWorker') && perWorker > concurrency) {
    const problem = `must not exceed concurrency (${concurrency}): concurrency is the cluster-wide limit`;
    problems.push({ path: ['concurrencyPerWorker'], problem });
  }
  if (def.shards !== undefined && def.overlap === 'replace') {
    problems.push({ path: ['shards'], problem: "a sharded job cannot have overlap: 'replace'; use 'queue' or 'skip'" });
  }
  return problems;
}

/** The problems of every check after the schema (`paramsAjv` compiles `params` as runs will be validated). */
export function checkProblems(def: Definition, valid: Valid, paramsAjv: Ajv): Problem[] {
  return [
    ...scheduleProblems(def, valid),
    ...durationProblems(def),
    ...paramsProblems(def, valid, paramsAjv),
    ...webhookProblems(def),
    ...crossFieldProblems(def, valid),
  ];
}
