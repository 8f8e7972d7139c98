// `npm run lint` keeps the floors of src/ apart (eslint.config.js, rule no-restricted-imports): a file in a lower floor
// (control/, token/, ...) importing from runtime/ or server/ is an error; the same import from server/ is allowed. Checked
// with ESLint's Node API against the repository's own configuration, on code that is never written to disk.
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { ESLint } from 'eslint';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const eslint = new ESLint({ cwd: ROOT });

const IMPORT_WORKER = `import { Workers } from '../runtime/worker.ts';\nexport const workers: typeof Workers = Workers;\n`;

/** The messages of one rule for `code` linted as if it were the file `filePath` (relative to the repository). */
async function lint(code: string, filePath: string, rule = 'no-restricted-imports') {
  const [result] = await eslint.lintText(code, { filePath: path.join(ROOT, filePath) });
  assert.ok(result, `no lint result for ${filePath}`);
  return result.messages.filter((m) => m.ruleId === rule);
}

describe('lint: the floors of src/', () => {
  for (const file of ['src/control/x.ts', 'src/token/x.ts']) {
    test(`an import of runtime/worker.ts from ${path.dirname(file)}/ is an error`, async () => {
      const messages = await lint(IMPORT_WORKER, file);
      assert.equal(messages.length, 1, JSON.stringify(messages));
      assert.equal(messages[0].severity, 2, JSON.stringify(messages));
      assert.match(messages[0].message, /runtime\/ stands above this floor/);
    });
  }

  test('an import of server/ from control/ is an error', async () => {
    const messages = await lint(`import { apiRouter } from '../server/api.ts';\nexport const r = apiRouter;\n`, 'src/control/x.ts');
    assert.equal(messages.length, 1, JSON.stringify(messages));
    assert.match(messages[0].message, /server\/ stands above this floor/);
  });

  test('the same import of runtime/worker.ts from server/ is allowed', async () => {
    const [result] = await eslint.lintText(IMPORT_WORKER, { filePath: path.join(ROOT, 'src/server/x.ts') });
    assert.deepEqual(
      result.messages.filter((m) => m.severity === 2),
      [],
    );
  });
});
