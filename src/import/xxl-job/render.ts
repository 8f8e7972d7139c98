// A planned job -> the text of its job file: TypeScript as a person would write it (Prettier's layout: single quotes,
// 140 columns, trailing commas), with the xxl-job fields that have no jobscope field kept as comments.
import type { PlannedDefinition, PlannedJob } from './map.ts';

const WIDTH = 140;
const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** A string literal the way Prettier writes it: single quotes unless that needs more escapes than double quotes. */
export function quoteString(s: string): string {
  const json = JSON.stringify(s).slice(1, -1).replace(/\\"/g, '"');
  const singles = (s.match(/'/g) ?? []).length;
  const doubles = (s.match(/"/g) ?? []).length;
  return singles > doubles ? `"${json.replace(/"/g, '\\"')}"` : `'${json.replace(/'/g, "\\'")}'`;
}

/** Columns a text takes in an editor (and for Prettier): East Asian wide characters take two. */
export function textWidth(text: string): number {
  let width = 0;
  for (const ch of text)
    width +=
      /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]/u.test(ch) ||
      ch.codePointAt(0)! > 0x1ffff
        ? 2
        : 1;
  return width;
}

const key = (k: string) => (IDENT.test(k) ? k : quoteString(k));

/** A JSON value as a TypeScript literal at `indent`, `used` columns already taken on its first line (and 1 for a comma). */
export function literal(value: unknown, indent: string, used: number): string {
  const inline = inlineLiteral(value);
  if (inline !== null && indent.length + used + textWidth(inline) + 1 <= WIDTH) return inline;
  const inner = indent + '  ';
  if (Array.isArray(value)) {
    return `[\n${value.map((v) => `${inner}${literal(v, inner, 0)},\n`).join('')}${indent}]`;
  }
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value);
    return `{\n${entries.map(([k, v]) => `${inner}${key(k)}: ${literal(v, inner, key(k).length + 2)},\n`).join('')}${indent}}`;
  }
  return inline ?? 'null';
}

function inlineLiteral(value: unknown): string | null {
  if (typeof value === 'string') return quoteString(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  if (Array.isArray(value)) {
    const parts = value.map(inlineLiteral);
    return parts.includes(null) ? null : `[${parts.join(', ')}]`;
  }
  if (typeof value === 'object') {
    const entries = Object.entries(value as object);
    if (entries.length === 0) return '{}';
    const parts = entries.map(([k, v]) => {
      const text = inlineLiteral(v);
      return text === null || text.includes('\n') ? null : `${key(k)}: ${text}`;
    });
    return parts.includes(null) ? null : `{ ${parts.join(', ')} }`;
  }
  return null;
}

const comment = (lines: string[], indent = ''): string =>
  lines
    .flatMap((l) => l.replace(/\r/g, '').split('\n'))
    .map((l) => `${indent}//${l ? ` ${l}` : ''}`.trimEnd() + '\n')
    .join('');

/** The definition's fields, one per line, with the comments that explain them. */
function fields(job: PlannedJob, def: PlannedDefinition): string {
  const I = '  ';
  const out: string[] = [];
  const field = (name: string, value: unknown, note?: string) => {
    if (value === undefined) return;
    if (note) out.push(comment([note], I));
    out.push(`${I}${name}: ${literal(value, I, name.length + 2)},\n`);
  };
  field('description', def.description);
  field('schedule', def.schedule);
  field('paused', def.paused, `Stopped in xxl-job: imported paused; it does not fire until \`jobscope resume ${job.name}\`.`);
  field('params', def.params, "xxl-job's executor_param: the run's default data.");
  field('token', def.token, 'Narrow this to the services the job calls, with the scopes it needs.');
  field('attempts', def.attempts, 'executor_fail_retry_count + 1');
  field('timeout', def.timeout);
  field('concurrency', def.concurrency);
  field('overlap', def.overlap);
  field('misfire', def.misfire);
  field('then', def.then);
  field('shards', def.shards, 'SHARDING_BROADCAST: one shard run per live worker (ctx.shard = { index, total }).');
  field('group', def.group, `the xxl-job executor: served by \`jobscope worker --group ${def.group ?? ''}\``);
  return out.join('');
}

/** The argument a script gets as $1 (xxl-job passes the job parameter, then the shard index and total). */
const PARAM_ARG: Record<string, string> = {
  none: "''",
  object: 'JSON.stringify(ctx.data)',
  string: "String(ctx.data.param ?? '')",
  value: 'JSON.stringify(ctx.data.param)',
};

function runFunction(job: PlannedJob): string {
  const h = job.handler!;
  if (h.kind === 'stub') {
    return `  async run() {\n    throw new Error(${quoteString(h.message)});\n  },\n`;
  }
  const args = `[SCRIPT, ${PARAM_ARG[h.param]}, String(ctx.shard?.index ?? 0), String(ctx.shard?.total ?? 1)]`;
  return (
    `  async run(ctx) {\n` +
    `    // As xxl-job runs a GLUE script: the job parameter, the shard index and the shard total as arguments. The script's\n` +
    `    // environment has JOBSCOPE_TOKEN and JOBSCOPE_SERVICE_<NAME>_URL to call services with.\n` +
    `    return ctx.exec(${quoteString(h.interpreter)}, ${args});\n  },\n`
  );
}

function header(job: PlannedJob): string {
  const lines = [
    `Imported from xxl-job (job ${job.id}) by \`jobscope import xxl-job\`. Edit freely: a re-import leaves an edited file alone.`,
  ];
  if (job.quoted) {
    lines.push('', 'The xxl-job fields, for whoever ports it:');
    for (const [k, v] of Object.entries(job.quoted)) lines.push(`  ${k}: ${String(v).replace(/\s*\n\s*/g, ' ')}`);
  }
  if (job.comments.length) lines.push('', ...job.comments);
  if (job.groovy !== undefined)
    lines.push('', 'GLUE_GROOVY source (Java, runs inside an xxl-job executor; port it to run() below):', '', ...job.groovy.split('\n'));
  return comment(lines);
}

/** The job file's text. */
export function renderJob(job: PlannedJob): string {
  const def = job.definition!;
  const script = job.handler?.kind === 'script';
  return (
    header(job) +
    (script ? `import { fileURLToPath } from 'node:url';\n` : '') +
    `import { defineJob } from 'jobscope';\n\n` +
    (script
      ? `const SCRIPT = fileURLToPath(new URL(${quoteString(`./${(job.handler as { file: string }).file}`)}, import.meta.url));\n\n`
      : '') +
    `export default defineJob({\n${fields(job, def)}${runFunction(job)}});\n`
  );
}

/** The script file's text: the GLUE source as xxl-job stored it, ending with a newline. */
export function renderScript(job: PlannedJob): string | undefined {
  if (job.handler?.kind !== 'script') return undefined;
  const source = job.handler.source.replace(/\r\n/g, '\n');
  return source.endsWith('\n') ? source : source + '\n';
}
