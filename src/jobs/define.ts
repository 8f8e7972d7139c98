// defineJob, and a job file's definition made a registered job: checked against its schema (definition-schema.ts) and the
// checks after it (definition-checks.ts), every problem naming the field and how to fix it; then the defaults applied.
import { Ajv, type ErrorObject } from 'ajv';
import type { FromSchema, JSONSchema } from 'json-schema-to-ts';
import addFormatsModule from 'ajv-formats';
import { parseDuration } from '../duration.ts';
import { JobDefinitionError, type DefinitionProblem } from '../errors.ts';
import type { AlertEvent, JobDefinition, KeepRule, ParamsIssue, RegisteredJob, ThenStep } from '../interfaces.ts';
import { checkProblems, isPlainObject, jobNameProblem } from './definition-checks.ts';
import { fieldName, reportable, schemaProblems, type Problem } from './definition-problems.ts';
import { ALERT_EVENTS } from './definition-schema.ts';

export { JOB_NAME } from './definition-checks.ts';

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

/** A scheduled fire that starts later than this after its due time is a misfire (xxl-job's default policy: skip it). */
export const DEFAULT_MISFIRE_GRACE_MS = 5000;

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;
/** Compiles each job's `params`: run data is validated against it, its defaults applied. */
const paramsAjv = addFormats(new Ajv({ allErrors: true, strict: true, useDefaults: true, coerceTypes: false }));

function issuesOf(errors: ErrorObject[] | null | undefined): ParamsIssue[] {
  return (errors ?? []).map((e) => ({
    path: e.instancePath || '/',
    message:
      e.keyword === 'additionalProperties'
        ? `must NOT have additional property "${String((e.params as { additionalProperty: string }).additionalProperty)}"`
        : (e.message ?? 'is invalid'),
  }));
}

/** Every problem of a definition: each field's first, in report order; the job name's and a non-object's first of all. */
function problemsOf(name: string, raw: unknown): DefinitionProblem[] {
  const nameProblem = jobNameProblem(name);
  const first = nameProblem ? [{ field: undefined, problem: nameProblem }] : [];
  if (!isPlainObject(raw)) {
    return [
      ...first,
      { field: undefined, problem: 'the default export must be defineJob({...}); add `export default defineJob({ ... })`' },
    ];
  }
  const found = schemaProblems(raw);
  const valid = (field: string) => !found.some((p) => p.path[0] === field);
  const problems: Problem[] = [...found, ...checkProblems(raw, valid, paramsAjv)];
  return [...first, ...reportable(problems).map((p) => ({ field: fieldName(p.path), problem: p.problem }))];
}

/**
 * Checks a job file's default export and derives the registered job; throws JobDefinitionError naming every problem found
 * (each field's first: the checks of one field stop at its first problem, the other fields are still checked).
 */
export function registerDefinition(name: string, file: string, raw: unknown): RegisteredJob {
  const problems = problemsOf(name, raw);
  if (problems.length) {
    const [first, ...more] = problems;
    throw new JobDefinitionError(file, first!.field, first!.problem, undefined, more);
  }
  return derive(name, file, raw as JobDefinition);
}

/** A duration the checks found valid, in milliseconds. */
const ms = (value: string | number) => parseDuration(value)!;

function keepOf(keep: JobDefinition['keep']): RegisteredJob['keep'] {
  if (!keep) return undefined;
  const out: NonNullable<RegisteredJob['keep']> = {};
  for (const which of ['completed', 'failed'] as const) {
    const rule = keep[which];
    if (!rule) continue;
    const kept: KeepRule = {};
    if (rule.count !== undefined) kept.count = rule.count;
    // BullMQ takes ages in seconds.
    if (rule.age !== undefined) kept.age = Math.ceil(ms(rule.age) / 1000);
    out[which] = kept;
  }
  return out;
}

/** The registered job of a valid definition: durations in milliseconds, defaults applied, `then` steps normalised. */
function derive(name: string, file: string, def: JobDefinition): RegisteredJob {
  const check = def.params === undefined ? undefined : paramsAjv.compile(def.params);
  const concurrency = def.concurrency ?? 1;
  const keep = keepOf(def.keep);
  return {
    name,
    file,
    definition: def,
    description: def.description ?? '',
    schedule: def.schedule,
    attempts: def.attempts ?? 1,
    backoff: def.backoff,
    timeoutMs: def.timeout === undefined ? undefined : ms(def.timeout),
    concurrency,
    concurrencyPerWorker: def.concurrencyPerWorker ?? concurrency,
    rateLimit: def.rateLimit && { max: def.rateLimit.max, durationMs: ms(def.rateLimit.duration) },
    overlap: def.overlap ?? 'queue',
    misfire: def.misfire ?? 'skip',
    misfireGraceMs: def.misfireGrace === undefined ? DEFAULT_MISFIRE_GRACE_MS : ms(def.misfireGrace),
    then: (def.then ?? []).map((step): ThenStep =>
      typeof step === 'string' ? { job: step } : { job: step.job, data: step.data as ThenStep['data'] },
    ),
    shards: def.shards,
    group: def.group,
    alert: def.alert && { webhook: def.alert.webhook, on: (def.alert.on as AlertEvent[] | undefined) ?? [...ALERT_EVENTS] },
    ...(keep ? { keep } : {}),
    audience: def.token.audience,
    scope: def.token.scope ?? [],
    validate: check
      ? (data) => (check(data) ? null : issuesOf(check.errors))
      : (data) => (isPlainObject(data) ? null : [{ path: '/', message: 'must be an object' }]),
  };
}
