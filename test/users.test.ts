// Users and roles: JOBSCOPE_USERS_FILE (scrypt hashes; admin, operator, viewer; optional job groups) beside the environment's
// admin and viewer, `jobscope users add`, what each role may do on the API and on Bull Board, what a login limited to job
// groups sees and may touch, the file re-read while the server runs, and one audit line per change naming the user. Real
// Redis, real HTTP on 127.0.0.1, the real CLI in a child process.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Runtime } from '../src/runtime/runtime.ts';
import { createApp } from '../src/server/app.ts';
import { addUser, hashPassword, parseUsers, verifyPassword, type UserEntry } from '../src/server/users.ts';
import { jobscopeFixture, until, type Fixture } from './helpers/fixture.ts';
import type { LogCapture } from './helpers/runtime.ts';
import { ADMIN, TestServer, VIEWER } from './helpers/server.ts';
import { runCli, type CliResult } from './helpers/cli.ts';

let fx: Fixture;
let tmp: string;
let usersFile: string;
let runtime: Runtime;
let logs: LogCapture;
let srv: TestServer;

const PW = {
  ops: 'ops-password-0001',
  billingOps: 'billing-ops-password',
  billingAdmin: 'billing-admin-password',
  auditor: 'auditor-password-01',
  boss: 'boss-password-000001',
};
const OPS = { user: 'ops', password: PW.ops };
const BILLING_OPS = { user: 'billing-ops', password: PW.billingOps };
const BILLING_ADMIN = { user: 'billing-admin', password: PW.billingAdmin };
const AUDITOR = { user: 'auditor', password: PW.auditor };
const BOSS = { user: 'boss', password: PW.boss };

const JOBS = {
  'billing-sync.ts': `export default { group: 'billing', token: { audience: ['svc'] }, async run() { return 'billed'; } };`,
  'billing-slow.ts': `export default { group: 'billing', token: { audience: ['svc'] },
      async run(ctx) { await new Promise((resolve, reject) => { const t = setTimeout(resolve, 5000);
        ctx.signal.addEventListener('abort', () => { clearTimeout(t); reject(ctx.signal.reason); }); }); } };`,
  'hr-export.ts': `export default { group: 'hr', token: { audience: ['svc'] }, async run() { return 'exported'; } };`,
  'plain.ts': `export default { token: { audience: ['svc'] }, async run() { return 'plain'; } };`,
};

before(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'jobscope-users-'));
  usersFile = path.join(tmp, 'users.json');
  await addUser(usersFile, { name: 'ops', role: 'operator', password: PW.ops });
  await addUser(usersFile, { name: 'billing-ops', role: 'operator', groups: ['billing'], password: PW.billingOps });
  await addUser(usersFile, { name: 'billing-admin', role: 'admin', groups: ['billing'], password: PW.billingAdmin });
  await addUser(usersFile, { name: 'auditor', role: 'viewer', groups: ['hr', 'legal'], password: PW.auditor });
  await addUser(usersFile, { name: 'boss', role: 'admin', password: PW.boss });
  fx = await jobscopeFixture({
    jobs: JOBS,
    env: { JOBSCOPE_PREFIX: 'usr' },
    workers: ['billing-sync', 'billing-slow', 'hr-export', 'plain'],
    // Refused logins are part of these tests (removed users, a deleted file): the login limiter is not the subject here.
    server: { usersFile, loginLimit: { max: 1000, windowMs: 60_000 } },
  });
  ({ runtime, logs, server: srv } = fx);
});

after(async () => {
  await fx?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** The real bin in a child process with this environment (and PATH) and stdin. */
function cli(args: string[], env: Record<string, string>, stdin = ''): Promise<CliResult> {
  return runCli(args, { PATH: process.env.PATH ?? '', ...env }, 30_000, stdin);
}

const entries = (): UserEntry[] => (JSON.parse(readFileSync(usersFile, 'utf8')) as { users: UserEntry[] }).users;
const auditLines = () =>
  logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'audit') as Record<string, unknown>[];

describe('the users file', () => {
  test('passwords are scrypt hashes (PHC strings), salted, checked in constant time; the file is 0600 and holds no password', async () => {
    const hash = await hashPassword('correct horse battery');
    assert.match(hash, /^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    assert.notEqual(hash, await hashPassword('correct horse battery'), 'a fresh salt each time');
    assert.equal(await verifyPassword('correct horse battery', hash), true);
    assert.equal(await verifyPassword('correct horse batterY', hash), false);
    assert.equal(
      await verifyPassword('x', '$scrypt$ln=30,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$' + 'A'.repeat(43)),
      false,
      'absurd costs refused',
    );
    const text = readFileSync(usersFile, 'utf8');
    for (const pw of Object.values(PW)) assert.ok(!text.includes(pw), 'a password in the file');
    assert.equal(statSync(usersFile).mode & 0o777, 0o600);
    assert.deepEqual(
      entries().map((u) => [u.name, u.role, u.groups]),
      [
        ['ops', 'operator', undefined],
        ['billing-ops', 'operator', ['billing']],
        ['billing-admin', 'admin', ['billing']],
        ['auditor', 'viewer', ['hr', 'legal']],
        ['boss', 'admin', undefined],
      ],
    );
  });

  test('a bad file is refused with the file, the entry and the fix', async () => {
    const good = entries()[0];
    const bad =
      (users: unknown, reserved: string[] = []) =>
      () =>
        parseUsers(JSON.stringify({ users }), '/etc/users.json', reserved);
    const cases: [() => unknown, RegExp][] = [
      [() => parseUsers('{', '/etc/users.json'), /\/etc\/users\.json: not valid JSON/],
      [() => parseUsers('[]', '/etc/users.json'), /expected \{ "users": \[/],
      [bad([{ ...good, role: 'root' }]), /users\[0\] \("ops"\): "role" must be one of admin, operator, viewer/],
      [bad([good, good]), /users\[1\] \("ops"\) is listed twice/],
      [bad([{ ...good, name: 'a:b' }]), /users\[0\]: "name" must be/],
      [bad([{ ...good, groups: [] }]), /"groups" must be a non-empty list/],
      [bad([{ ...good, groups: ['ok', 'not ok'] }]), /"groups" must be/],
      [bad([{ ...good, hash: 'plaintext-password' }]), /"hash" is not a scrypt hash .*jobscope users add/],
      [bad([{ ...good, group: 'billing' }]), /unknown field "group"/],
      [bad([good], ['ops']), /also a login from the environment/],
    ];
    for (const [parse, message] of cases) assert.throws(parse, message);
    // At start-up: a missing file, or a name that is also the environment's admin, stops the server.
    assert.throws(
      () => createApp({ ...runtime.serverParts(), logger: runtime.logger, admin: ADMIN, usersFile: path.join(tmp, 'missing.json') }),
      /no such file \(create it with: jobscope users add <name> --role admin\)/,
    );
    assert.throws(
      () => createApp({ ...runtime.serverParts(), logger: runtime.logger, admin: { user: 'ops', password: 'x' }, usersFile }),
      /"ops"\) is also a login from the environment/,
    );
  });

  test('the environment logins keep working beside the file; every login gets its role', async () => {
    const me = async (auth: { user: string; password: string }) => (await srv.request('/api/me', { auth })).body;
    assert.deepEqual(await me(ADMIN), { user: 'admin', role: 'admin' });
    assert.deepEqual(await me(VIEWER), { user: 'viewer', role: 'viewer' });
    assert.equal((await me(OPS)).role, 'operator');
    assert.equal((await me(BOSS)).role, 'admin');
    assert.equal((await me(AUDITOR)).role, 'viewer');
    for (const auth of [
      { user: 'ops', password: PW.boss },
      { user: 'nobody', password: PW.ops },
      { user: 'ops', password: '' },
    ]) {
      assert.equal((await srv.request('/api/jobs', { auth })).status, 401, auth.user);
    }
  });

  test('/api/me names the groups of a limited login', async () => {
    assert.deepEqual((await srv.request('/api/me', { auth: AUDITOR })).body, { user: 'auditor', role: 'viewer', groups: ['hr', 'legal'] });
    assert.deepEqual((await srv.request('/api/me', { auth: OPS })).body, { user: 'ops', role: 'operator' });
  });
});

describe('roles', () => {
  test('operators trigger, pause, resume and cancel through the API; viewers from the file get 403', async () => {
    const trigger = await srv.request('/api/jobs/plain/runs', { method: 'POST', auth: OPS, json: { data: {} } });
    assert.equal(trigger.status, 202, trigger.text);
    assert.equal((await fx.wait(trigger.body.runId)).triggeredBy, 'user:ops');
    assert.equal((await srv.request('/api/jobs/plain/pause', { method: 'POST', auth: OPS })).status, 200);
    assert.equal((await fx.api.job('plain')).paused, true);
    assert.equal((await srv.request('/api/jobs/plain/resume', { method: 'POST', auth: OPS })).status, 200);
    const slow = await srv.request('/api/jobs/billing-slow/runs', { method: 'POST', auth: OPS, json: { data: {} } });
    await fx.waitFor(slow.body.runId, (r) => r.state === 'active', 5000, 'billing-slow active');
    const cancel = await srv.request(`/api/runs/${slow.body.runId}/cancel`, { method: 'POST', auth: OPS });
    assert.equal(cancel.status, 200, cancel.text);
    await fx.wait(slow.body.runId);
    const viewer = await srv.request('/api/jobs/hr-export/runs', { method: 'POST', auth: AUDITOR, json: { data: {} } });
    assert.equal(viewer.status, 403);
    assert.match(viewer.body.message, /read-only user: this action needs an operator or admin login/);
  });

  test('operators use the full Bull Board but not its settings (concurrency, rate limit) nor obliterate; admins may', async () => {
    const board = '/dashboard/queues/api/queues';
    const queues = await srv.request(board, { auth: OPS });
    assert.equal(queues.body.queues.find((q: { name: string }) => q.name === 'plain').readOnlyMode, false);
    const add = await srv.request(`${board}/plain/add`, { method: 'POST', auth: OPS, json: { name: 'x', data: {} } });
    assert.equal(add.status, 200, add.text);
    await fx.wait(`plain:${add.body.job.id}`);
    assert.equal((await srv.request(`${board}/plain/pause`, { method: 'PUT', auth: OPS })).status, 200);
    assert.equal((await fx.api.job('plain')).paused, true);
    assert.equal((await srv.request(`${board}/plain/resume`, { method: 'PUT', auth: OPS })).status, 200);
    for (const [route, json] of [
      ['concurrency', { concurrency: 7 }],
      ['rate-limit', { max: 1, duration: 1000 }],
      ['obliterate', {}],
    ] as const) {
      const res = await srv.request(`${board}/plain/${route}`, { method: 'PUT', auth: OPS, json });
      assert.equal(res.status, 403, route);
      assert.equal(res.body.code, 'forbidden');
      assert.match(res.body.message, /needs an admin login/);
    }
    assert.notEqual(await fx.queue('plain').getGlobalConcurrency(), 7);
    assert.ok(await fx.api.run(`plain:${add.body.job.id}`), 'not obliterated');
    const admin = await srv.request(`${board}/plain/concurrency`, { method: 'PUT', auth: BOSS, json: { concurrency: 7 } });
    assert.equal(admin.status, 200, admin.text);
    assert.equal(await fx.queue('plain').getGlobalConcurrency(), 7);
    await fx.queue('plain').setGlobalConcurrency(1);
    // Viewers from the file get the read-only board.
    const viewerBoard = await srv.request(board, { auth: AUDITOR });
    assert.ok(viewerBoard.body.queues.every((q: { readOnlyMode: boolean }) => q.readOnlyMode));
  });
});

describe('job groups', () => {
  test('a login limited to a group acts only on its jobs: others answer 404 on the API, as if they did not exist', async () => {
    const ok = await srv.request('/api/jobs/billing-sync/runs', { method: 'POST', auth: BILLING_ADMIN, json: { data: {} } });
    assert.equal(ok.status, 202, ok.text);
    await fx.wait(ok.body.runId);
    const hrRun = await fx.trigger('hr-export');
    await fx.wait(hrRun);
    const before = (await fx.api.job('hr-export')).counts;
    for (const [method, p] of [
      ['POST', '/api/jobs/hr-export/runs'],
      ['POST', '/api/jobs/plain/runs'], // no group: only logins without groups see it
      ['POST', '/api/jobs/hr-export/pause'],
      ['GET', '/api/jobs/hr-export'],
      ['GET', '/api/jobs/hr-export/runs'],
      ['GET', '/api/jobs/nope'],
      ['GET', '/api/runs?job=hr-export'],
      ['GET', `/api/runs/${hrRun}`],
      ['GET', `/api/runs/${encodeURIComponent(hrRun)}`],
      ['POST', `/api/runs/${hrRun}/cancel`],
    ]) {
      const res = await srv.request(p, { method, auth: BILLING_ADMIN, ...(method === 'POST' ? { json: { data: {} } } : {}) });
      assert.equal(res.status, 404, `${method} ${p}: ${res.text}`);
      assert.match(res.body.error, /^unknown_(job|run)$/);
      assert.doesNotMatch(res.text, /hr-export"; jobs you can see: .*hr-export|plain,/, 'never lists jobs it cannot see');
    }
    const unknown = await srv.request('/api/jobs/hr-export', { auth: BILLING_ADMIN });
    assert.equal(unknown.body.message, 'unknown job "hr-export"; jobs you can see: billing-slow, billing-sync');
    assert.deepEqual((await fx.api.job('hr-export')).counts, before, 'nothing enqueued');
    assert.equal((await fx.api.job('hr-export')).paused, false);
    assert.equal((await srv.request('/api/jobs/billing-sync', { auth: BILLING_ADMIN })).status, 200);
    assert.equal((await srv.request(`/api/runs/${ok.body.runId}`, { auth: BILLING_ADMIN })).status, 200);
    // A viewer limited to hr sees hr-export and nothing else.
    assert.equal((await srv.request('/api/jobs/hr-export', { auth: AUDITOR })).status, 200);
    assert.equal((await srv.request(`/api/runs/${hrRun}`, { auth: AUDITOR })).status, 200);
    assert.equal((await srv.request('/api/jobs/billing-sync', { auth: AUDITOR })).status, 404);
    // /metrics names every job: refused to limited logins.
    assert.equal((await srv.request('/metrics', { auth: AUDITOR })).status, 403);
    assert.equal((await srv.request('/metrics', { auth: OPS })).status, 200);
  });

  test('lists show a limited login only its jobs', async () => {
    const names = async (auth: { user: string; password: string }) =>
      ((await srv.request('/api/jobs', { auth })).body as { name: string }[]).map((j) => j.name).sort();
    assert.deepEqual(await names(BILLING_OPS), ['billing-slow', 'billing-sync']);
    assert.deepEqual(await names(AUDITOR), ['hr-export']);
    assert.deepEqual(await names(OPS), ['billing-slow', 'billing-sync', 'hr-export', 'plain']);
    const slow = { runId: await fx.trigger('billing-slow') };
    await until(async () => (await fx.api.tokens()).some((t) => t.run === slow.runId), 5000, 'a live token');
    assert.deepEqual((await srv.request('/api/tokens', { auth: AUDITOR })).body, [], 'tokens of other groups are hidden');
    assert.ok((await srv.request('/api/tokens', { auth: BILLING_OPS })).body.some((t: { run: string }) => t.run === slow.runId));
    await fx.client.cancel(slow.runId);
  });

  test("on Bull Board a limited login sees only its groups' queues; the others answer 404; pause all pauses only its own", async () => {
    const board = '/dashboard/queues/api/queues';
    const list = await srv.request(board, { auth: BILLING_OPS });
    assert.deepEqual(list.body.queues.map((q: { name: string }) => q.name).sort(), ['billing-slow', 'billing-sync']);
    const before = (await fx.api.job('hr-export')).counts;
    for (const [method, p, json] of [
      ['POST', `${board}/hr-export/add`, { name: 'x', data: {} }],
      ['POST', `${board}/plain/add`, { name: 'x', data: {} }],
      ['PUT', `${board}/hr-export/pause`, undefined],
      ['PUT', `${board}/hr-export/retry/failed`, undefined],
      ['GET', `${board}/hr-export/1`, undefined],
    ] as const) {
      const res = await srv.request(p, { method, auth: BILLING_OPS, ...(json ? { json } : {}) });
      assert.equal(res.status, 404, `${method} ${p}: ${res.text}`);
    }
    assert.deepEqual((await fx.api.job('hr-export')).counts, before);
    assert.equal((await srv.request(`${board}/pause`, { method: 'PUT', auth: BILLING_OPS })).status, 200);
    assert.equal((await fx.api.job('billing-sync')).paused, true);
    assert.equal((await fx.api.job('hr-export')).paused, false, 'pause all stopped at the groups of the login');
    assert.equal((await fx.api.job('plain')).paused, false);
    assert.equal((await srv.request(`${board}/resume`, { method: 'PUT', auth: BILLING_OPS })).status, 200);
    assert.equal((await fx.api.job('billing-sync')).paused, false);
    const viewer = await srv.request(board, { auth: AUDITOR });
    assert.deepEqual(
      viewer.body.queues.map((q: { name: string }) => q.name),
      ['hr-export'],
    );
  });
});

describe('jobscope users add, and the file re-read while the server runs', () => {
  const env = () => ({ JOBSCOPE_USERS_FILE: usersFile, LOG_LEVEL: 'silent' });

  test('a generated password is printed once and works at once; --replace changes the role; removal and bad files', async () => {
    const added = await cli(['users', 'add', 'late', '--role', 'operator', '--groups', 'hr,billing'], env());
    assert.equal(added.code, 0, added.stderr);
    const password = /^password: (\S+)$/m.exec(added.stdout)?.[1];
    assert.ok(password && password.length >= 20, added.stdout);
    assert.match(added.stdout, /^added user "late" \(operator, groups: hr, billing\) in .*users\.json$/m);
    assert.ok(!readFileSync(usersFile, 'utf8').includes(password));
    const late = { user: 'late', password };
    // Re-read within about a second, without a restart.
    await until(async () => (await srv.request('/api/me', { auth: late })).status === 200, 5000, 'the new user');
    assert.equal((await srv.request('/api/me', { auth: late })).body.role, 'operator');

    const again = await cli(['users', 'add', 'late', '--role', 'viewer'], env());
    assert.equal(again.code, 1);
    assert.match(again.stderr, /user "late" already exists in .*; add --replace/);
    const replaced = await cli(['users', 'add', 'late', '--role', 'viewer', '--password-stdin', '--replace'], env(), `${password}\n`);
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.doesNotMatch(replaced.stdout, /password:/, 'a password from stdin is not printed');
    assert.match(replaced.stdout, /^replaced user "late" \(viewer, every job\)/m);
    // A remembered login is forgotten when the file changes: the new role shows at once.
    await until(async () => (await srv.request('/api/me', { auth: late })).body.role === 'viewer', 5000, 'the new role');

    // A broken file keeps the last good one (and says so in the log); a removed entry can no longer log in.
    const good = readFileSync(usersFile, 'utf8');
    const goodUsers = (JSON.parse(good) as { users: UserEntry[] }).users;
    writeFileSync(usersFile, good.slice(0, good.length / 2)); // half-written
    // (The file is looked at when someone from it logs in.)
    await until(
      async () => (await srv.request('/api/me', { auth: late })).status === 200 && logs.text.includes('users file not reloaded'),
      5000,
      'the reload error',
    );
    assert.equal((await srv.request('/api/me', { auth: late })).status, 200);
    writeFileSync(usersFile, JSON.stringify({ users: goodUsers.filter((u) => u.name !== 'late') }));
    await until(async () => (await srv.request('/api/me', { auth: late })).status === 401, 5000, 'the removed user refused');
    // The file gone: its users are out, the environment's admin is not.
    writeFileSync(usersFile, good);
    await until(async () => (await srv.request('/api/me', { auth: late })).status === 200, 5000, 'restored');
    unlinkSync(usersFile);
    await until(async () => (await srv.request('/api/me', { auth: late })).status === 401, 5000, 'file users out');
    assert.equal((await srv.request('/api/me', { auth: OPS })).status, 401);
    assert.equal((await srv.request('/api/me', { auth: ADMIN })).status, 200);
    writeFileSync(usersFile, JSON.stringify({ users: goodUsers.filter((u) => u.name !== 'late') }), { mode: 0o600 });
    await until(async () => (await srv.request('/api/me', { auth: OPS })).status === 200, 5000, 'file back');
  });

  test('the command refuses what it cannot do, with the fix', async () => {
    const noFile = await cli(['users', 'add', 'x', '--role', 'viewer'], { LOG_LEVEL: 'silent' });
    assert.equal(noFile.code, 2);
    assert.match(noFile.stderr, /set JOBSCOPE_USERS_FILE/);
    const badRole = await cli(['users', 'add', 'x', '--role', 'root'], env());
    assert.equal(badRole.code, 2);
    assert.match(badRole.stderr, /--role must be one of admin, operator, viewer/);
    const badName = await cli(['users', 'add', 'x:y', '--role', 'viewer'], env());
    assert.equal(badName.code, 1);
    assert.match(badName.stderr, /not a login name/);
    const short = await cli(['users', 'add', 'x', '--role', 'viewer', '--password-stdin'], env(), 'short\n');
    assert.equal(short.code, 1);
    assert.match(short.stderr, /at least 12 characters/);
    const badGroups = await cli(['users', 'add', 'x', '--role', 'viewer', '--groups', 'a b'], env());
    assert.equal(badGroups.code, 1);
    assert.ok(!entries().some((u) => u.name === 'x'), 'nothing written');
    const usage = await cli(['users', 'rename', 'x'], env());
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /usage: jobscope users add <name> --role admin\|operator\|viewer/);
    assert.match(usage.stderr, /jobscope users list \[--json\]/);
    const unknown = await cli(['users', 'remove', 'nobody'], env());
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no user "nobody" in .*users\.json; its users: /);
  });

  test('users list shows names, roles and groups (never a hash); users remove takes a login away at once', async () => {
    const added = await cli(['users', 'add', 'temp', '--role', 'viewer', '--groups', 'hr'], env());
    assert.equal(added.code, 0, added.stderr);
    const temp = { user: 'temp', password: /^password: (\S+)$/m.exec(added.stdout)![1] };
    await until(async () => (await srv.request('/api/me', { auth: temp })).status === 200, 5000, 'the new user');

    const listed = await cli(['users', 'list', '--json'], env());
    assert.equal(listed.code, 0, listed.stderr);
    const users = JSON.parse(listed.stdout) as { name: string; role: string; groups: string[] | null }[];
    assert.deepEqual(
      users.find((u) => u.name === 'temp'),
      { name: 'temp', role: 'viewer', groups: ['hr'] },
    );
    assert.doesNotMatch(listed.stdout, /scrypt|hash/);
    const text = await cli(['users', 'list'], env());
    assert.match(text.stdout, /^temp {2}viewer {2}groups: hr$/m);

    const removed = await cli(['users', 'remove', 'temp'], env());
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stdout, /^removed user "temp" from .*users\.json/);
    assert.ok(!entries().some((u) => u.name === 'temp'));
    await until(async () => (await srv.request('/api/me', { auth: temp })).status === 401, 5000, 'the removed login refused');
  });
});

describe('audit', () => {
  test('every change through the API or Bull Board leaves one audit line: user, role, action, job, run, status', async () => {
    const from = auditLines().length;
    const trigger = await srv.request('/api/jobs/billing-sync/runs', { method: 'POST', auth: BOSS, json: { data: {} } });
    await fx.wait(trigger.body.runId);
    await srv.request('/api/jobs/billing-sync/pause', { method: 'POST', auth: BOSS });
    await srv.request('/api/jobs/billing-sync/resume', { method: 'POST', auth: BOSS });
    await srv.request(`/api/runs/${trigger.body.runId}/cancel`, { method: 'POST', auth: BOSS });
    const add = await srv.request('/dashboard/queues/api/queues/billing-sync/add', {
      method: 'POST',
      auth: BILLING_OPS,
      json: { name: 'x', data: {} },
    });
    await fx.wait(`billing-sync:${add.body.job.id}`);
    await srv.request(`/dashboard/queues/api/queues/billing-sync/${add.body.job.id}/retry`, { method: 'PUT', auth: BILLING_OPS });
    await srv.request('/api/jobs/hr-export/runs', { method: 'POST', auth: AUDITOR, json: { data: {} } });
    const lines = auditLines().slice(from);
    const pick = (l: Record<string, unknown>) => [l.user, l.role, l.action, l.job, l.run, l.status];
    assert.deepEqual(lines.map(pick), [
      ['boss', 'admin', 'trigger', 'billing-sync', trigger.body.runId, 202],
      ['boss', 'admin', 'pause', 'billing-sync', undefined, 200],
      ['boss', 'admin', 'resume', 'billing-sync', undefined, 200],
      ['boss', 'admin', 'cancel', 'billing-sync', trigger.body.runId, 409],
      ['billing-ops', 'operator', 'board add', 'billing-sync', `billing-sync:${add.body.job.id}`, 200],
      ['billing-ops', 'operator', 'board retry', 'billing-sync', `billing-sync:${add.body.job.id}`, 204],
      ['auditor', 'viewer', 'trigger', 'hr-export', undefined, 403],
    ]);
    assert.ok(lines.every((l) => typeof l.reqId === 'string' && l.audit === true));
    // Reads are not audited.
    await srv.request('/api/jobs', { auth: BOSS });
    assert.equal(auditLines().length, from + lines.length);
  });
});
