// The jobs folder loader on real files: every extension, in an ES module package (this repository) and in a CommonJS one;
// bad files are all reported in one error, a file that cannot be loaded with its line.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { JobDefinitionError, JobFilesError } from '../src/errors.ts';
import { loadRegistry, moduleFormat } from '../src/jobs/registry.ts';
import { jobsDir, removeDir } from './helpers/runtime.ts';

const dirs: string[] = [];
function folder(files: Record<string, string>): string {
  const dir = jobsDir(files);
  dirs.push(dir);
  return dir;
}
after(() => dirs.forEach(removeDir));

const valid = (extra = '') => `export default { token: { audience: ['svc'] }, ${extra} async run() { return 1; } };`;
const validCjs = (value: unknown = 1) =>
  `module.exports = { token: { audience: ['svc'] }, async run() { return ${JSON.stringify(value)}; } };`;

/** The one JobFilesError a folder's bad files produce, and its text. */
async function problems(dir: string): Promise<{ err: JobFilesError; text: string }> {
  let caught: unknown;
  await loadRegistry(dir).catch((err: unknown) => (caught = err));
  assert.ok(caught instanceof JobFilesError, `expected a JobFilesError, got ${String(caught)}`);
  for (const e of caught.errors) assert.ok(e instanceof JobDefinitionError);
  return { err: caught, text: caught.message };
}

describe('loading a jobs folder', () => {
  test('loads every extension in an ES module package; the file name is the job name', async () => {
    const dir = folder({
      'typed-job.ts': `import { defineJob } from 'jobscope';
interface Out { n: number }
export default defineJob<{ n?: number }, Out>({ token: { audience: ['svc'] }, async run(ctx): Promise<Out> { return { n: ctx.data.n ?? 1 }; } });`,
      'esm-ts.mts': `import { double } from './_shared.ts';\nconst n: number = await Promise.resolve(double(2));\n${valid()}`,
      'cjs-ts.cts': `const { defineJob } = require('jobscope');
const n: number = 1;
module.exports = defineJob({ token: { audience: ['svc'] }, async run() { return n; } });`,
      'plain.js': valid(),
      'esm.mjs': valid(),
      'old.cjs': validCjs(),
      '_shared.ts': 'export const double = (n: number): number => n * 2;',
      'notes.md': '# not a job',
      'types.d.ts': 'export type X = 1;',
      'types.d.mts': 'export type Y = 1;',
    });
    const registry = await loadRegistry(dir);
    assert.deepEqual(registry.names, ['cjs-ts', 'esm-ts', 'esm', 'old', 'plain', 'typed-job']);
  });

  test('loads every extension in a CommonJS package (npm init -y), ESM syntax in .ts included', async () => {
    const dir = folder({
      'package.json': JSON.stringify({ name: 'app', type: 'commonjs' }),
      'esm-syntax.ts': `import { double } from './_shared.ts';\nconst two: number = double(1);\nexport default { token: { audience: ['svc'] }, async run() { return two; } };`,
      'cjs-syntax.ts': `const { double } = require('./_shared.ts');\n${validCjs()}`,
      'plain.js': validCjs(),
      'compiled.js': `"use strict";\nObject.defineProperty(exports, "__esModule", { value: true });\nexports.default = { token: { audience: ['svc'] }, async run() { return 1; } };`,
      'esm.mjs': valid(),
      'awaits.mts': `const n: number = await Promise.resolve(1);\n${valid()}`,
      'typed.cts': `const n: number = 1;\n${validCjs()}`,
      '_shared.ts': 'export const double = (n: number): number => n * 2;',
    });
    assert.equal(moduleFormat(path.join(dir, 'esm-syntax.ts')), 'commonjs');
    assert.equal(moduleFormat(path.join(dir, 'awaits.mts')), 'module');
    const registry = await loadRegistry(dir);
    assert.deepEqual(registry.names, ['awaits', 'cjs-syntax', 'compiled', 'esm-syntax', 'esm', 'plain', 'typed']);
    assert.equal(await registry.get('esm-syntax').definition.run({} as never), 2);
  });

  const bad: [string, Record<string, string>, RegExp][] = [
    ['a syntax error', { 'broken.ts': 'const a = 1;\nexport default {' }, /broken\.ts:2:\d+: cannot be loaded: /],
    ['no default export', { 'named.ts': 'export const job = 1;' }, /named\.ts: has no default export; add `export default defineJob/],
    [
      'a CommonJS file that exports nothing',
      { 'empty.cjs': 'const x = 1;' },
      /empty\.cjs: has no default export; .*module\.exports = defineJob/,
    ],
    ['an unknown field', { 'typo.ts': valid('shedule: { every: "1m" },') }, /typo\.ts: shedule: unknown field; allowed fields:/],
    [
      'a bad cron',
      { 'cron.ts': valid('schedule: { cron: "0 0 25 * * *" },') },
      /cron\.ts: schedule\.cron: .* is not a valid cron expression/,
    ],
    ['a bad duration', { 'dur.ts': valid('timeout: "soon",') }, /dur\.ts: timeout: "soon" is not a duration/],
    [
      'params that are not a JSON Schema',
      { 'p.ts': valid('params: { type: "object", properties: { a: { type: 7 } } },') },
      /p\.ts: params: is not a valid JSON Schema/,
    ],
    ['a name BullMQ cannot use', { 'a.b.ts': valid() }, /a\.b\.ts: "a\.b" is not a usable job name/],
    [
      'a throwing module',
      { 'boom.ts': 'const a: number = 1;\n\nthrow new Error("config missing");\nexport default {};' },
      /boom\.ts:3:7: cannot be loaded: config missing/,
    ],
    [
      'a throw in a helper the job imports',
      {
        'uses.ts': `import { x } from './_helper.ts';\nexport default { token: { audience: ['svc'] }, async run() { return x; } };`,
        '_helper.ts': 'export const x = 1;\nthrow new TypeError("helper broke");',
      },
      /uses\.ts: cannot be loaded: TypeError: helper broke \(at .*_helper\.ts:2:7\)/,
    ],
    [
      'a native syntax error in an ES module',
      { 'strict.mjs': `${valid()}\nconst let = 1;` },
      /strict\.mjs:2:\d+: cannot be loaded: SyntaxError: /,
    ],
    [
      'top-level await in a CommonJS file',
      { 'wait.cts': 'const a: number = 1;\nawait Promise.resolve();\nmodule.exports = {};' },
      /wait\.cts:2:\d+: cannot be loaded: .*top-level await needs an ES module: name the file \.mts/,
    ],
  ];
  for (const [what, files, message] of bad) {
    test(`${what} stops loading with a message naming the file`, async () => {
      const dir = folder({ 'good.ts': valid(), ...files });
      const { err, text } = await problems(dir);
      assert.equal(err.errors.length, 1, text);
      assert.match(text, message);
      assert.doesNotMatch(text, /good\.ts/);
    });
  }

  test('every bad file is reported in one error, each with its file (and line when it cannot be loaded)', async () => {
    const dir = folder({
      'good.ts': valid(),
      'broken.ts': 'const a = 1;\n\nexport default {\n  token: ,\n};',
      'boom.cjs': 'const a = 1;\nthrow new Error("SERVICE_URL is not set");',
      'typo.ts': valid('shedule: { every: "1m" },'),
    });
    const { err, text } = await problems(dir);
    assert.equal(err.errors.length, 3);
    assert.match(text, /^3 job files need fixing:\n/);
    assert.match(text, /\n {2}.*boom\.cjs:2:7: cannot be loaded: SERVICE_URL is not set/);
    assert.match(text, /\n {2}.*broken\.ts:4:\d+: cannot be loaded: /);
    assert.match(text, /\n {2}.*typo\.ts: shedule: unknown field/);
    assert.deepEqual(
      err.errors.map((e) => [path.basename(e.file), e.line]),
      [
        ['boom.cjs', 2],
        ['broken.ts', 4],
        ['typo.ts', undefined],
      ],
    );
  });

  test('two files with one job name stop loading', async () => {
    const dir = folder({ 'twin.ts': valid(), 'twin.js': valid() });
    await assert.rejects(loadRegistry(dir), /job name "twin" is also defined by/);
  });

  test('a missing folder is a clear error', async () => {
    await assert.rejects(loadRegistry('/nonexistent/jobs'), /the jobs folder does not exist; create it or set JOBSCOPE_JOBS/);
  });
});
