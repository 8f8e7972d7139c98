// The standalone verifier package as a service would get it: packed with `npm pack`, installed alone into an empty project
// outside this repository, and run with plain `node` (no tsx, no jobscope) against a real runner: its JWKS route over HTTP
// and its Redis, with tokens the runner minted for real runs.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { heldToken, heldTokenJob, jobscopeFixture, type Fixture } from './helpers/fixture.ts';
import { ROOT } from './helpers/runtime.ts';

const run = promisify(execFile);
const PREFIX = 'pkg';
const PACKAGE_DIR = path.join(ROOT, 'packages', 'verify');
/** What a service that only checks tokens must not have to install. */
const NOT_WANTED = ['jobscope', 'bullmq', 'express', 'got', 'tsx', 'esbuild', '@bull-board/api', 'pino', 'ajv'];

let fx: Fixture;
let tmp: string;
let project: string;
let tarball: string;
let installed: string[] = [];

/** A live token of a real run of `job`, which keeps its token and runs until cancelled. */
const liveToken = async (job: string) => heldToken(await fx.trigger(job));

// A service's whole verifier: ESM, as the README shows it. The token comes in through the environment, and only the
// verdict goes out.
const SCRIPT_ESM = `import { createJobTokenVerifier } from '@jobscope/verify';
const verifier = createJobTokenVerifier({
  audience: 'svc',
  jwksUrl: process.env.JWKS_URL,
  redis: process.env.REDIS_URL,
  prefix: process.env.PREFIX,
  scope: 'data:read',
});
try {
  const claims = await verifier.verify(process.env.TOKEN);
  console.log(JSON.stringify({ ok: true, jti: claims.jti, sub: claims.sub }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, code: err.code, status: err.status }));
} finally {
  await verifier.close();
}
`;
// The same from CommonJS (require of an ES module, Node >= 20.19).
const SCRIPT_CJS = `const { verifyJobToken } = require('@jobscope/verify');
verifyJobToken(process.env.TOKEN, { audience: 'svc', jwksUrl: process.env.JWKS_URL, redis: process.env.REDIS_URL, prefix: process.env.PREFIX })
  .then((c) => console.log(JSON.stringify({ ok: true, jti: c.jti })), (e) => console.log(JSON.stringify({ ok: false, code: e.code })));
`;

async function verifyThere(
  script: string,
  token: string,
): Promise<{ ok: boolean; jti?: string; sub?: string; code?: string; status?: number }> {
  const { stdout, stderr } = await run(process.execPath, [script], {
    cwd: project,
    timeout: 20_000,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      TOKEN: token,
      JWKS_URL: `${fx.server.url}/.well-known/jwks.json`,
      REDIS_URL: fx.redisUrl,
      PREFIX,
    },
  });
  assert.ok(!stdout.includes(token) && !stderr.includes(token), 'the token is never printed');
  return JSON.parse(stdout.trim()) as { ok: boolean; jti?: string; code?: string };
}

before(async () => {
  fx = await jobscopeFixture({
    jobs: {
      'noop.ts': heldTokenJob(`token: { audience: ['svc'], scope: ['data:read'] }`),
      'unscoped.ts': heldTokenJob(`token: { audience: ['svc'] }`),
    },
    env: { JOBSCOPE_PREFIX: PREFIX },
    workers: true,
    server: true,
  });
  tmp = mkdtempSync(path.join(os.tmpdir(), 'jobscope-verify-pkg-'));
  project = path.join(tmp, 'service');
});

after(async () => {
  await fx?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('@jobscope/verify, packed and installed alone', () => {
  test('npm pack ships the built package only', async () => {
    // prepack builds dist/ from src/ first.
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: PACKAGE_DIR, timeout: 120_000 });
    const [packed] = JSON.parse(stdout.slice(stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
    const files = packed.files.map((f) => f.path).sort();
    assert.ok(files.includes('dist/index.js') && files.includes('dist/index.d.ts'), files.join(' '));
    assert.ok(
      files.every((f) => f === 'package.json' || f === 'README.md' || f.startsWith('dist/')),
      files.join(' '),
    );
    tarball = path.join(tmp, packed.filename);
  });

  test('installs into an empty project with jsonwebtoken, jwks-rsa and ioredis, and nothing of the runner', async (t) => {
    assert.ok(tarball, 'packed by the test above');
    mkdirSync(project);
    await run('npm', ['init', '-y'], { cwd: project, timeout: 30_000 });
    await run('npm', ['install', '--no-audit', '--no-fund', tarball], { cwd: project, timeout: 180_000 });
    const lock = JSON.parse(readFileSync(path.join(project, 'node_modules', '.package-lock.json'), 'utf8')) as {
      packages: Record<string, unknown>;
    };
    installed = Object.keys(lock.packages)
      .filter((p) => p.startsWith('node_modules/'))
      .map((p) => p.slice('node_modules/'.length));
    for (const wanted of ['@jobscope/verify', 'jsonwebtoken', 'jwks-rsa', 'ioredis']) assert.ok(installed.includes(wanted), wanted);
    for (const unwanted of NOT_WANTED) assert.ok(!installed.includes(unwanted), `${unwanted} was installed`);
    // The README states this number (33 with npm 11 in November 2026): a jump means a new heavy dependency.
    assert.ok(installed.length <= 40, `${installed.length} packages: ${installed.join(' ')}`);
    t.diagnostic(`@jobscope/verify installs ${installed.length} packages`);
  });

  test('plain node verifies a real runner token (JWKS over HTTP, liveness in Redis), then refuses it once revoked', async () => {
    assert.ok(installed.length > 0, 'installed by the test above');
    writeFileSync(path.join(project, 'verify.mjs'), SCRIPT_ESM);
    writeFileSync(path.join(project, 'verify.cjs'), SCRIPT_CJS);
    const minted = await liveToken('noop');
    assert.deepEqual(await verifyThere('verify.mjs', minted.raw), { ok: true, jti: minted.claims.jti, sub: 'job:noop' });
    assert.deepEqual(await verifyThere('verify.cjs', minted.raw), { ok: true, jti: minted.claims.jti });
    const noScope = await liveToken('unscoped');
    assert.deepEqual(await verifyThere('verify.mjs', noScope.raw), { ok: false, code: 'insufficient_scope', status: 403 });
    // Cancelling its run revokes the token at once.
    await fx.client.cancel(minted.runId, 'test');
    assert.deepEqual(await verifyThere('verify.mjs', minted.raw), { ok: false, code: 'revoked', status: 401 });
    assert.deepEqual(await verifyThere('verify.mjs', 'not-a-token'), { ok: false, code: 'malformed', status: 401 });
  });
});
