// The jobs folder loader on real files: .ts (no build step), .js, .mjs; each kind of bad file stops loading with its message.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { loadRegistry } from '../src/jobs/registry.ts';
import { jobsDir, removeDir } from './helpers/runtime.ts';

const dirs: string[] = [];
function folder(files: Record<string, string>): string {
  const dir = jobsDir(files);
  dirs.push(dir);
  return dir;
}
after(() => dirs.forEach(removeDir));

const valid = (extra = '') => `export default { token: { audience: ['svc'] }, ${extra} async run() { return 1; } };`;

describe('loading a jobs folder', () => {
  test('loads .ts (with types and the jobscope import), .js and .mjs; the file name is the job name', async () => {
    const dir = folder({
      'typed-job.ts': `import { defineJob } from 'jobscope';
interface Out { n: number }
export default defineJob<{ n?: number }, Out>({ token: { audience: ['svc'] }, async run(ctx): Promise<Out> { return { n: ctx.data.n ?? 1 }; } });`,
      'plain.js': valid(),
      'esm.mjs': valid(),
      '_shared.ts': 'export const helper = 1;',
      'notes.md': '# not a job',
      'types.d.ts': 'export type X = 1;',
    });
    const registry = await loadRegistry(dir);
    assert.deepEqual(registry.names, ['esm', 'plain', 'typed-job']);
  });

  const bad: [string, Record<string, string>, RegExp][] = [
    ['a syntax error', { 'broken.ts': 'export default {' }, /broken\.ts: cannot be loaded:/],
    ['no default export', { 'named.ts': 'export const job = 1;' }, /named\.ts: has no default export; add `export default defineJob/],
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
      { 'boom.ts': 'throw new Error("config missing"); export default {};' },
      /boom\.ts: cannot be loaded: config missing/,
    ],
  ];
  for (const [what, files, message] of bad) {
    test(`${what} stops loading with a message naming the file`, async () => {
      const dir = folder({ 'good.ts': valid(), ...files });
      await assert.rejects(loadRegistry(dir), (err: Error) => {
        assert.equal(err.name, 'JobDefinitionError');
        assert.match(err.message, message);
        return true;
      });
    });
  }

  test('two files with one job name stop loading', async () => {
    const dir = folder({ 'twin.ts': valid(), 'twin.js': valid() });
    await assert.rejects(loadRegistry(dir), /job name "twin" is also defined by/);
  });

  test('a missing folder is a clear error', async () => {
    await assert.rejects(loadRegistry('/nonexistent/jobs'), /the jobs folder does not exist; create it or set JOBSCOPE_JOBS/);
  });
});
