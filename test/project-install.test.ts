// jobscope as a user gets it: the packed tarball installed into two fresh `npm init -y` projects, one CommonJS (npm's
// default) and one "type": "module", with job files of every extension; the installed CLI lists them and runs them against a
// private redis-server. Slow but bounded: each install is cut off after 4 minutes (it runs from the npm cache that the repo's
// own `npm install` filled, --prefer-offline), every command after 60 s. Packs dist/ as built (`npm test` builds it first).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { ROOT } from './helpers/runtime.ts';
import { until } from './helpers/wait.ts';

const INSTALL_TIMEOUT_MS = 4 * 60_000;
const COMMAND_TIMEOUT_MS = 60_000;

interface Done {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (bounded); never rejects on a non-zero exit, only on the time limit. */
function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs = COMMAND_TIMEOUT_MS): Promise<Done> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} did not finish in ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function ok(done: Done, what: string): Done {
  assert.equal(done.code, 0, `${what} failed (exit ${done.code})\n${done.stdout}\n${done.stderr}`);
  return done;
}

/**
 * The environment of a user's shell: nothing of this repository (its node_modules/.bin on PATH, npm's lifecycle variables,
 * the test runner's), and no jobscope or Redis settings but those a test gives.
 */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  const keepNpm = /^npm_config_(cache|userconfig|globalconfig|registry|cafile|proxy|https_proxy|noproxy|strict_ssl)$/i;
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(JOBSCOPE_|REDIS_URL$|NODE_OPTIONS$|NODE_TEST_CONTEXT$|TSX_|PORT$|HOST$)/.test(k)) continue;
    if (/^npm_/i.test(k) && !keepNpm.test(k)) continue;
    env[k] = v;
  }
  env.PATH = (process.env.PATH ?? '')
    .split(path.delimiter)
    .filter((p) => !p.includes(`node_modules${path.sep}.bin`))
    .join(path.delimiter);
  return { ...env, ...extra };
}

/** The job the README's "Use it in your project" tells a newcomer to write, exactly as printed there. */
function readmeHelloJob(): string {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Use it in your project'));
  const m = /`jobs\/hello\.ts`[\s\S]*?```ts\n([\s\S]*?)```/.exec(section);
  assert.ok(m, 'README "Use it in your project" has a ```ts block after `jobs/hello.ts`');
  return m[1]!;
}

const TYPED_TS = `import { defineJob } from 'jobscope';
import { double } from './_math.ts';

enum Op { Add = 'add', Mul = 'mul' } // an enum: compiled, not only stripped of types
interface Sum { a: number; b: number; op?: \`\${Op}\` }
const params = {
  type: 'object',
  properties: { a: { type: 'integer' }, b: { type: 'integer' }, op: { type: 'string', enum: ['add', 'mul'], default: 'add' } },
  required: ['a', 'b'],
  additionalProperties: false,
} as const;

export default defineJob({
  params,
  token: { audience: ['svc'] },
  async run(ctx): Promise<{ value: number; doubled: number }> {
    const { a, b, op } = ctx.data as unknown as Sum;
    const value: number = op === Op.Mul ? a * b : a + b;
    return { value, doubled: double(value) };
  },
});
`;
const MATH_TS = `export function double(n: number): number {
  return n * 2;
}
`;
const CTS = `import type { JobDefinition } from 'jobscope';
const { defineJob } = require('jobscope');
const { double } = require('./_math.ts');
const job: JobDefinition = defineJob({ token: { audience: ['svc'] }, async run() { return { from: 'cts', four: double(2) as number }; } });
module.exports = job;
`;
// Thrown with the runner's own RunCancelledError class, the run ends without retries; a second copy of jobscope loaded for
// the job (what tsx alone does for a CommonJS file) would make it an ordinary error, retried 3 times.
const FINAL_CTS = `const { defineJob, RunCancelledError } = require('jobscope') as typeof import('jobscope');
module.exports = defineJob({
  token: { audience: ['svc'] },
  attempts: 3,
  backoff: { type: 'fixed', delay: 10 },
  async run() { throw new RunCancelledError('stop, do not retry'); },
});
`;
const MTS = `import { defineJob } from 'jobscope';
import { double } from './_math.ts';
const seven: number = await Promise.resolve(7); // top-level await: an ES module
export default defineJob({ token: { audience: ['svc'] }, async run() { return { from: 'mts', n: double(seven) }; } });
`;
const ESM_JS = (from: string) => `import { defineJob } from 'jobscope';
export default defineJob({ token: { audience: ['svc'] }, async run() { return { from: '${from}' }; } });
`;
const CJS_JS = (from: string) => `const { defineJob } = require('jobscope');
module.exports = defineJob({ token: { audience: ['svc'] }, async run() { return { from: '${from}' }; } });
`;
const PLAIN_CJS = `module.exports = { token: { audience: ['svc'] }, async run() { return { from: 'plain' }; } };
`;

interface Project {
  dir: string;
  kind: 'commonjs' | 'module';
  jobs: Record<string, string>;
  /** what `trigger --wait` must print for each job: [data, result] */
  expect: Record<string, [unknown, unknown]>;
  env: (extra?: Record<string, string>) => NodeJS.ProcessEnv;
  runner?: ChildProcess;
  runnerLog: string;
}

const COMMON_EXPECT: Record<string, [unknown, unknown]> = {
  hello: [{ name: 'Ada' }, { greeting: 'hello, Ada' }],
  typed: [
    { a: 6, b: 7, op: 'mul' },
    { value: 42, doubled: 84 },
  ],
  count: [{}, { from: 'cts', four: 4 }],
  later: [{}, { from: 'mts', n: 14 }],
  esm: [{}, { from: 'mjs' }],
  legacy: [{}, { from: 'cjs' }],
};

let redis: TestRedis;
let work: string;
const tarballs: string[] = [];
let packedFiles: string[] = [];
const projects: Project[] = [];

/** The packages to install: jobscope and the workspace packages it depends on (published beside it). */
function packageDirs(): string[] {
  const root = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
    dependencies?: Record<string, string>;
    workspaces?: string[];
  };
  const dirs = [ROOT];
  for (const pattern of root.workspaces ?? []) {
    const parent = path.join(ROOT, pattern.replace(/\/\*$/, ''));
    if (!pattern.endsWith('/*') || !existsSync(parent)) continue;
    for (const name of readdirSync(parent)) {
      const manifest = path.join(parent, name, 'package.json');
      if (!existsSync(manifest)) continue;
      const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as { name: string };
      if (root.dependencies?.[pkg.name]) dirs.push(path.dirname(manifest));
    }
  }
  return dirs;
}

async function pack(): Promise<void> {
  assert.ok(existsSync(path.join(ROOT, 'dist', 'index.js')), 'dist/ is built (npm run build; npm test does it first)');
  const out = path.join(work, 'tarballs');
  mkdirSync(out);
  for (const dir of packageDirs()) {
    // --ignore-scripts: dist/ is already built, and a build here would race with the test run's own files.
    const { stdout } = ok(await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', out], dir, userEnv()), 'npm pack');
    const [info] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
    tarballs.push(path.join(out, path.basename(info!.filename)));
    if (dir === ROOT) packedFiles = info!.files.map((f) => f.path);
  }
}

async function createProject(kind: 'commonjs' | 'module'): Promise<Project> {
  const dir = path.join(work, kind === 'module' ? 'esm-app' : 'cjs-app');
  mkdirSync(dir);
  const prefix = `install-${kind}`;
  const project: Project = {
    dir,
    kind,
    jobs: {},
    expect: { ...COMMON_EXPECT },
    runnerLog: '',
    env: (extra = {}) =>
      userEnv({
        REDIS_URL: redis.url,
        JOBSCOPE_PREFIX: prefix,
        JOBSCOPE_STATE_DIR: path.join(dir, '.jobscope'),
        LOG_LEVEL: 'info',
        ...extra,
      }),
  };
  ok(await run('npm', ['init', '-y'], dir, userEnv()), 'npm init -y');
  if (kind === 'module') ok(await run('npm', ['pkg', 'set', 'type=module'], dir, userEnv()), 'npm pkg set type=module');
  const type = (JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { type?: string }).type;
  assert.equal(type === 'module' ? 'module' : 'commonjs', kind);
  ok(
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...tarballs], dir, userEnv(), INSTALL_TIMEOUT_MS),
    `npm install in the ${kind} project`,
  );

  project.jobs = {
    'hello.ts': readmeHelloJob(),
    'typed.ts': TYPED_TS,
    '_math.ts': MATH_TS,
    'count.cts': CTS,
    'final.cts': FINAL_CTS,
    'later.mts': MTS,
    'esm.mjs': ESM_JS('mjs'),
    'legacy.cjs': CJS_JS('cjs'),
  };
  if (kind === 'commonjs') {
    project.jobs['plain.js'] = PLAIN_CJS;
    project.expect.plain = [{}, { from: 'plain' }];
  } else {
    project.jobs['modern.js'] = ESM_JS('js');
    project.expect.modern = [{}, { from: 'js' }];
  }
  mkdirSync(path.join(dir, 'jobs'));
  for (const [file, source] of Object.entries(project.jobs)) writeFileSync(path.join(dir, 'jobs', file), source);
  return project;
}

function jobscope(project: Project, args: string[], extra?: Record<string, string>): Promise<Done> {
  return run('npx', ['--no', 'jobscope', ...args], project.dir, project.env(extra));
}

/** `npx jobscope <command>` left running until it is ready: its workers started, and for `start` its HTTP server listening. */
async function startRunner(
  project: Project,
  command: 'start' | 'worker',
  extra: Record<string, string> = {},
  args: string[] = [],
): Promise<void> {
  // Its own process group: npx runs the bin as a child, and after() stops the whole group.
  const child = spawn('npx', ['--no', 'jobscope', command, ...args], {
    cwd: project.dir,
    env: project.env(extra),
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  project.runner = child;
  child.stderr!.on('data', (d) => (project.runnerLog += d));
  const ready = () => project.runnerLog.includes('workers started') && (command === 'worker' || project.runnerLog.includes('dashboard at'));
  await until(() => ready() || child.exitCode !== null, COMMAND_TIMEOUT_MS, `jobscope ${command} to start`);
  assert.ok(ready(), `jobscope ${command} exited:\n${project.runnerLog}`);
}

before(
  async () => {
    redis = await startRedis();
    work = mkdtempSync(path.join(os.tmpdir(), 'jobscope-install-'));
    await pack();
    projects.push(...(await Promise.all([createProject('commonjs'), createProject('module')])));
  },
  { timeout: INSTALL_TIMEOUT_MS + 2 * 60_000 },
);

after(async () => {
  for (const p of projects) {
    const child = p.runner;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      process.kill(-child.pid!, 'SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // the group has already gone
      }
    }
  }
  await redis?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('jobscope installed from the packed tarball (slow: npm pack + 2 npm installs, bounded)', () => {
  test('the package ships source maps only with their sources, and every image the README shows', () => {
    const stale = packedFiles.filter(
      (f) => /^dist\/.*\.js$/.test(f) && !existsSync(path.join(ROOT, f.replace(/^dist\//, 'src/').replace(/\.js$/, '.ts'))),
    );
    assert.deepEqual(stale, [], 'dist/ holds the output of sources that are gone (a stale build): remove dist/ and build again');
    const maps = packedFiles.filter((f) => f.endsWith('.map'));
    for (const map of maps) {
      const json = JSON.parse(readFileSync(path.join(ROOT, map), 'utf8')) as { sources: string[]; sourcesContent?: (string | null)[] };
      const carried = json.sources.every(
        (s, i) => typeof json.sourcesContent?.[i] === 'string' || packedFiles.includes(path.join(path.dirname(map), s)),
      );
      assert.ok(carried, `${map} points at sources the package does not carry`);
    }
    const version = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    const images = [...readFileSync(path.join(ROOT, 'README.md'), 'utf8').matchAll(/!\[[^\]]*\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
    assert.ok(images.length > 0);
    for (const src of images) {
      // npm's page resolves relative paths only against a repository URL (the package has none): images come from the
      // published package itself, this version of it.
      const m = /^https:\/\/cdn\.jsdelivr\.net\/npm\/jobscope@([^/]+)\/(.+)$/.exec(src);
      assert.ok(
        m,
        `README image ${src} would not resolve on the npm page; link it as https://cdn.jsdelivr.net/npm/jobscope@${version}/<path>`,
      );
      assert.equal(m[1], version, `README image ${src} is of another version than package.json's ${version}`);
      assert.ok(packedFiles.includes(m[2]!), `README image ${m[2]} is not in the package ("files" in package.json)`);
    }
  });

  for (const kind of ['commonjs', 'module'] as const) {
    describe(`a "${kind}" project`, () => {
      const project = () => projects.find((p) => p.kind === kind)!;

      test('`jobscope list --json` lists every job file of every extension', async () => {
        const p = project();
        const { stdout } = ok(await jobscope(p, ['list', '--json']), 'jobscope list --json');
        const names = (JSON.parse(stdout) as { name: string }[]).map((j) => j.name).sort();
        const files = Object.keys(p.jobs).filter((f) => !f.startsWith('_'));
        assert.deepEqual(names, files.map((f) => path.basename(f, path.extname(f))).sort());
      });

      test('application code can require() and import jobscope', async () => {
        const p = project();
        const required = ok(
          await run('node', ['-e', "process.stdout.write(typeof require('jobscope').defineJob)"], p.dir, p.env()),
          'require',
        );
        assert.equal(required.stdout, 'function');
        const imported = ok(
          await run(
            'node',
            ['--input-type=module', '-e', "const j = await import('jobscope'); process.stdout.write(typeof j.defineJob)"],
            p.dir,
            p.env(),
          ),
          'import',
        );
        assert.equal(imported.stdout, 'function');
      });

      test('`jobscope trigger <job> --wait` runs each job on a runner started in the project', async () => {
        const p = project();
        if (kind === 'commonjs') {
          // The newcomer's path: `npx jobscope start --watch` with the development key it generates in .jobscope/.
          await startRunner(
            p,
            'start',
            {
              PORT: '0',
              HOST: '127.0.0.1',
              JOBSCOPE_USER: 'admin',
              JOBSCOPE_PASSWORD: 'install-test-password',
            },
            ['--watch'],
          );
          assert.match(p.runnerLog, /development key/);
          assert.ok(readdirSync(path.join(p.dir, '.jobscope')).length > 0, 'the development key is in .jobscope/');
          const url = /dashboard at (http:\/\/[^\s"]+)\/dashboard/.exec(p.runnerLog)?.[1];
          assert.ok(url, p.runnerLog);
          assert.equal((await fetch(`${url}/healthz`)).status, 200);
        } else {
          // Production's path: a generated key and workers only.
          ok(await jobscope(p, ['keys', 'generate', '--dir', 'keys']), 'keys generate');
          await startRunner(p, 'worker', { JOBSCOPE_SIGNING_KEY_FILE: 'keys' });
          assert.doesNotMatch(p.runnerLog, /development key/);
        }
        const runs = await Promise.all(
          Object.entries(p.expect).map(
            async ([job, [data]]) => [job, await jobscope(p, ['trigger', job, '--data', JSON.stringify(data), '--wait'])] as const,
          ),
        );
        for (const [job, done] of runs) {
          assert.equal(done.code, 0, `${job}: exit ${done.code}\n${done.stdout}\n${done.stderr}\nrunner:\n${p.runnerLog}`);
          const out = JSON.parse(done.stdout) as { state: string; result: unknown };
          assert.equal(out.state, 'completed', job);
          assert.deepEqual(out.result, p.expect[job]![1], job);
        }
        // The job's jobscope is the runner's: its RunCancelledError ends the run at once, no retries.
        const final = await jobscope(p, ['trigger', 'final', '--wait']);
        assert.equal(final.code, 1, final.stdout + final.stderr);
        const report = JSON.parse(final.stdout) as { outcome: string; attempts: number };
        assert.equal(report.outcome, 'cancelled');
        assert.equal(report.attempts, 1, 'a RunCancelledError from require("jobscope") is final');
      });

      test('application code triggers a run with createClient and waits for its result', async () => {
        const p = project();
        const script =
          kind === 'module'
            ? `import { createClient } from 'jobscope';\nconst c = createClient({ redisUrl: process.env.REDIS_URL, prefix: process.env.JOBSCOPE_PREFIX });\nconst r = await c.trigger('hello', { name: 'app' }, { wait: 30000 });\nprocess.stdout.write(JSON.stringify(r));\nawait c.close();\n`
            : `const { createClient } = require('jobscope');\n(async () => {\n  const c = createClient({ redisUrl: process.env.REDIS_URL, prefix: process.env.JOBSCOPE_PREFIX });\n  const r = await c.trigger('hello', { name: 'app' }, { wait: 30000 });\n  process.stdout.write(JSON.stringify(r));\n  await c.close();\n})();\n`;
        writeFileSync(path.join(p.dir, 'app.js'), script);
        const done = ok(await run('node', ['app.js'], p.dir, p.env()), 'node app.js');
        const report = JSON.parse(done.stdout) as { outcome: string; result: unknown; triggeredBy: string };
        assert.equal(report.outcome, 'completed', done.stdout);
        assert.deepEqual(report.result, { greeting: 'hello, app' });
        assert.equal(report.triggeredBy, 'client');
      });

      if (kind === 'commonjs') {
        test('under --watch, an edited job file is used by the next run without a restart', async () => {
          const p = project();
          const file = path.join(p.dir, 'jobs', 'hello.ts');
          writeFileSync(file, readFileSync(file, 'utf8').replace('`hello, ${ctx.data.name}`', '`hi again, ${ctx.data.name}`'));
          await until(() => /jobs reloaded/.test(p.runnerLog), COMMAND_TIMEOUT_MS, 'the runner to reload hello.ts');
          const done = await jobscope(p, ['trigger', 'hello', '--data', '{"name":"you"}', '--wait']);
          assert.equal(done.code, 0, done.stdout + done.stderr);
          assert.deepEqual((JSON.parse(done.stdout) as { result: unknown }).result, { greeting: 'hi again, you' });
        });
      }
    });
  }

  test('every bad job file is reported at once, load errors with file and line, and no stack trace', async () => {
    const p = projects.find((x) => x.kind === 'commonjs')!;
    const dir = path.join(p.dir, 'bad-jobs');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'good.ts'), ESM_JS('good'));
    writeFileSync(
      path.join(dir, 'broken.ts'),
      `import { defineJob } from 'jobscope';\n\nexport default defineJob({\n  token: { audience: ['svc'] ,\n});\n`,
    );
    writeFileSync(path.join(dir, 'boom.cts'), `const url: string = 'x';\nthrow new Error('SERVICE_URL is not set');\n`);
    writeFileSync(path.join(dir, 'strict.mjs'), `export default {};\nconst let = 1;\n`);
    writeFileSync(
      path.join(dir, 'typo.js'),
      `module.exports = { token: { audience: ['svc'] }, shedule: { every: '1m' }, async run() {} };\n`,
    );
    const done = await jobscope(p, ['list'], { JOBSCOPE_JOBS: 'bad-jobs' });
    assert.equal(done.code, 1, done.stdout + done.stderr);
    const err = done.stderr;
    assert.match(err, /4 job files need fixing/);
    assert.match(err, /bad-jobs\/broken\.ts:5:\d+: cannot be loaded: /);
    assert.match(err, /bad-jobs\/boom\.cts:2:\d+: cannot be loaded: SERVICE_URL is not set/);
    assert.match(err, /bad-jobs\/strict\.mjs:2:\d+: cannot be loaded: SyntaxError: /);
    assert.match(err, /bad-jobs\/typo\.js: shedule: unknown field/);
    assert.doesNotMatch(err, /good\.ts/);
    assert.doesNotMatch(err, /^\s+at /m, 'no stack trace');
  });

  test('a reader that goes away ends `jobscope list` quietly with exit code 0 (EPIPE)', async () => {
    const p = projects.find((x) => x.kind === 'commonjs')!;
    const bin = path.join(p.dir, 'node_modules', '.bin', 'jobscope');
    const done = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(bin, ['list'], { cwd: p.dir, env: p.env(), stdio: ['ignore', 'pipe', 'pipe'] });
      // Closed before the command prints anything: every line it writes hits a pipe with no reader.
      child.stdout.destroy();
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`jobscope list did not end\n${stderr}`));
      }, COMMAND_TIMEOUT_MS);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });
    assert.equal(done.code, 0, done.stderr);
    assert.equal(done.stderr, '');
    // As a shell runs it.
    const piped = ok(await run('sh', ['-c', 'npx --no jobscope list | head -1'], p.dir, p.env()), 'jobscope list | head -1');
    assert.equal(piped.stdout.trim().split('\n').length, 1);
    assert.doesNotMatch(piped.stderr, /EPIPE|Error/);
  });
});
