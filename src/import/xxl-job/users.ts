// xxl_job_user -> the users file (src/server/users.ts): admin (role 1) -> admin; normal (role 0) -> operator limited to the
// groups of the executors in its `permission`. Passwords are never carried over (xxl-job keeps unsalted MD5/SHA-256): each
// entry has no password ("hash": null) and cannot log in until `jobscope users add <name> --role ...` sets one.
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { USER_NAME, parseUsers, type UserEntry } from '../../server/users.ts';
import { groupName } from './map.ts';
import { int, str, type XxlEstate } from './types.ts';

export interface UserOutcome {
  name: string;
  role?: string;
  groups?: string[];
  /** added: written without a password; kept: already in the file; skipped: not carried over (reason). */
  action: 'added' | 'kept' | 'skipped';
  reason?: string;
}

export function planUsers(estate: XxlEstate, existing: UserEntry[]): { entries: UserEntry[]; outcomes: UserOutcome[] } {
  const groupOf = new Map(estate.groups.map((g) => [int(g, 'id'), groupName(str(g, 'app_name'))]));
  const have = new Set(existing.map((u) => u.name));
  const entries: UserEntry[] = [];
  const outcomes: UserOutcome[] = [];
  for (const row of estate.users) {
    const name = str(row, 'username');
    if (!USER_NAME.test(name)) {
      outcomes.push({ name, action: 'skipped', reason: 'not a usable login name (letters, digits, ".", "_", "@", "-")' });
      continue;
    }
    const admin = int(row, 'role') === 1;
    const ids = str(row, 'permission').split(',').map(Number).filter(Number.isInteger);
    const groups = [...new Set(ids.map((id) => groupOf.get(id)).filter((g): g is string => Boolean(g)))];
    if (!admin && groups.length === 0) {
      outcomes.push({ name, action: 'skipped', reason: 'a normal user with no executor permission: add it by hand with --groups' });
      continue;
    }
    const entry: UserEntry = admin ? { name, role: 'admin', hash: null } : { name, role: 'operator', groups, hash: null };
    if (have.has(name)) {
      outcomes.push({ name, role: entry.role, action: 'kept', reason: 'already in the users file' });
      continue;
    }
    entries.push(entry);
    outcomes.push({ name, role: entry.role, ...(entry.groups ? { groups: entry.groups } : {}), action: 'added' });
  }
  return { entries, outcomes };
}

/** Adds the estate's users to `file` (kept entries untouched); written atomically, mode 0600, unless dryRun. */
export function importUsers(file: string, estate: XxlEstate, dryRun: boolean): UserOutcome[] {
  const existing = existsSync(file) ? parseUsers(readFileSync(file, 'utf8'), file) : [];
  const { entries, outcomes } = planUsers(estate, existing);
  if (!dryRun && entries.length) {
    const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
    writeFileSync(tmp, JSON.stringify({ users: [...existing, ...entries] }, null, 2) + '\n', { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, file);
  }
  return outcomes;
}
