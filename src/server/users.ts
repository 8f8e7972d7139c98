// The users file (JOBSCOPE_USERS_FILE): dashboard and API logins beside the environment pair, each with a role and, if it
// has `groups`, only the jobs of those groups. Passwords are stored as scrypt hashes (node:crypto, PHC string format), never
// in clear. The file is JSON, written by `jobscope users add` (or by hand):
//
//   { "users": [ { "name": "ops", "role": "operator", "groups": ["billing"], "hash": "$scrypt$ln=15,r=8,p=1$...$..." } ] }
//
// A running server re-reads it when it changes (checked at most once a second, when someone logs in), so an added, changed
// or removed user takes effect without a restart; a file that stops being valid is reported and the last good one kept.
import { createHmac, randomBytes, scrypt as scryptCb, timingSafeEqual, type BinaryLike, type ScryptOptions } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { stat, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../errors.ts';
import type { Logger } from '../log.ts';

export const ROLES = ['admin', 'operator', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

/** Who a request is: its login name, role, and the job groups it is limited to (absent: every job). */
export interface Login {
  user: string;
  role: Role;
  groups?: readonly string[];
}

/** One entry of the file. */
export interface UserEntry {
  name: string;
  role: Role;
  groups?: string[];
  /** null: no password yet (imported from xxl-job): the user cannot log in until `jobscope users add` sets one. */
  hash: string | null;
}

/** Login names: no ':' (HTTP Basic splits on it), nothing a log line or a shell would need quoting for. */
export const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
/** The same alphabet as a job's `group` (src/jobs/define.ts). */
export const GROUP_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
export const MIN_PASSWORD = 12;

// scrypt with N = 2^15, r = 8, p = 1 (about 32 MiB and tens of milliseconds per check): a stolen file resists guessing, and
// the server checks each login's password once (see UsersFile's cache), not on every request of the pages' polling.
const COST = { ln: 15, r: 8, p: 1 };
const KEY_LENGTH = 32;
const PHC = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]{16,})\$([A-Za-z0-9+/]{32,})$/;

function scrypt(password: BinaryLike, salt: BinaryLike, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

const b64 = (buf: Buffer) => buf.toString('base64').replace(/=+$/, '');
const memoryFor = (ln: number, r: number, p: number) => 256 * 2 ** ln * r * p;

/** A PHC scrypt string for this password: `$scrypt$ln=15,r=8,p=1$<salt>$<hash>` (base64 without padding). */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const { ln, r, p } = COST;
  const key = await scrypt(password.normalize('NFC'), salt, KEY_LENGTH, { N: 2 ** ln, r, p, maxmem: memoryFor(ln, r, p) });
  return `$scrypt$ln=${ln},r=${r},p=${p}$${b64(salt)}$${b64(key)}`;
}

interface ParsedHash {
  ln: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

function parseHash(hash: string): ParsedHash | null {
  const m = PHC.exec(hash);
  if (!m) return null;
  const [ln, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  // Bounds keep a hand-edited file from making each login take minutes or gigabytes.
  if (ln < 10 || ln > 20 || r < 1 || r > 32 || p < 1 || p > 4) return null;
  return { ln, r, p, salt: Buffer.from(m[4], 'base64'), key: Buffer.from(m[5], 'base64') };
}

/** Checks a password against a PHC scrypt string in constant time (for a given hash). */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const parsed = parseHash(hash);
  if (!parsed) return false;
  const { ln, r, p, salt, key } = parsed;
  const derived = await scrypt(password.normalize('NFC'), salt, key.length, { N: 2 ** ln, r, p, maxmem: memoryFor(ln, r, p) });
  return timingSafeEqual(derived, key);
}

/** Validates the file's text; every problem names the file and the entry, so it can be fixed at once. */
export function parseUsers(text: string, file: string, reserved: readonly string[] = []): UserEntry[] {
  const fail = (problem: string): never => {
    throw new ConfigError(`JOBSCOPE_USERS_FILE ${file}: ${problem}`);
  };
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    return fail(`not valid JSON (${(err as Error).message})`);
  }
  const list = (doc as { users?: unknown } | null)?.users;
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc) || !Array.isArray(list)) {
    return fail('expected { "users": [ { "name", "role", "groups"?, "hash" } ] }');
  }
  const seen = new Set<string>();
  return list.map((raw: unknown, i) => {
    const at = `users[${i}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return fail(`${at} is not an object`);
    const entry = raw as Record<string, unknown>;
    const extra = Object.keys(entry).filter((k) => !['name', 'role', 'groups', 'hash'].includes(k));
    if (extra.length) fail(`${at}: unknown field "${extra[0]}" (allowed: name, role, groups, hash)`);
    const { name, role, groups, hash } = entry;
    if (typeof name !== 'string' || !USER_NAME.test(name)) {
      fail(`${at}: "name" must be 1-64 letters, digits, '.', '_', '@' or '-' (no ':')`);
    }
    const who = `${at} ("${name as string}")`;
    if (seen.has(name as string)) fail(`${who} is listed twice`);
    if (reserved.includes(name as string)) {
      fail(`${who} is also a login from the environment (JOBSCOPE_USER or JOBSCOPE_VIEWER_USER): one name, one password`);
    }
    seen.add(name as string);
    if (!ROLES.includes(role as Role)) fail(`${who}: "role" must be one of ${ROLES.join(', ')}`);
    if (groups !== undefined) {
      if (!Array.isArray(groups) || groups.length === 0 || !groups.every((g) => typeof g === 'string' && GROUP_NAME.test(g))) {
        fail(`${who}: "groups" must be a non-empty list of group names (letters, digits, '-', '_'); leave it out for every job`);
      }
    }
    if (hash !== null && (typeof hash !== 'string' || !parseHash(hash))) {
      fail(`${who}: "hash" is not a scrypt hash ($scrypt$ln=..,r=..,p=..$salt$hash): set passwords with jobscope users add`);
    }
    return { name, role, ...(groups ? { groups: [...new Set(groups as string[])] } : {}), hash } as UserEntry;
  });
}

export function readUsers(file: string, reserved: readonly string[] = []): UserEntry[] {
  if (!existsSync(file)) {
    throw new ConfigError(`JOBSCOPE_USERS_FILE ${file}: no such file (create it with: jobscope users add <name> --role admin)`);
  }
  return parseUsers(readFileSync(file, 'utf8'), file, reserved);
}

/**
 * Adds (or with `replace`, replaces) one user and writes the file atomically (a temporary file renamed over it, mode 0600):
 * a server reading it at the same moment sees the old or the new file, never half of one.
 */
export async function addUser(
  file: string,
  user: { name: string; role: Role; groups?: string[]; password: string },
  opts: { replace?: boolean } = {},
): Promise<'added' | 'replaced'> {
  if (!USER_NAME.test(user.name)) throw new ConfigError(`"${user.name}" is not a login name: 1-64 letters, digits, '.', '_', '@' or '-'`);
  if (!ROLES.includes(user.role)) throw new ConfigError(`role must be one of ${ROLES.join(', ')}`);
  if (user.groups && (user.groups.length === 0 || !user.groups.every((g) => GROUP_NAME.test(g)))) {
    throw new ConfigError(`--groups must be group names (letters, digits, '-', '_') separated by commas`);
  }
  if (user.password.length < MIN_PASSWORD) throw new ConfigError(`the password must be at least ${MIN_PASSWORD} characters`);
  const users = existsSync(file) ? parseUsers(readFileSync(file, 'utf8'), file) : [];
  const at = users.findIndex((u) => u.name === user.name);
  // An entry without a password (imported) gets one without --replace.
  if (at >= 0 && !opts.replace && users[at]!.hash !== null) {
    throw new ConfigError(`user "${user.name}" already exists in ${file}; add --replace to set a new password, role and groups`);
  }
  const entry: UserEntry = {
    name: user.name,
    role: user.role,
    ...(user.groups ? { groups: [...new Set(user.groups)] } : {}),
    hash: await hashPassword(user.password),
  };
  if (at >= 0) users[at] = entry;
  else users.push(entry);
  writeUsers(file, users);
  return at >= 0 ? 'replaced' : 'added';
}

/** Removes one user (a server reading the file forgets its login at once); the file's users left are returned. */
export function removeUser(file: string, name: string): UserEntry[] {
  const users = readUsers(file);
  const left = users.filter((u) => u.name !== name);
  if (left.length === users.length) {
    throw new ConfigError(`no user "${name}" in ${file}; its users: ${users.map((u) => u.name).join(', ') || '(none)'}`);
  }
  writeUsers(file, left);
  return left;
}

/** Writes the file atomically (a temporary file renamed over it, mode 0600). */
function writeUsers(file: string, users: UserEntry[]): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  writeFileSync(tmp, JSON.stringify({ users }, null, 2) + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

const signature = (s: { mtimeMs: number; size: number; ino: number }) => `${s.mtimeMs}:${s.size}:${s.ino}`;
/** How long a checked password is remembered (per name and password); a change to the file forgets every one at once. */
const CACHE_MS = 10 * 60_000;
const CACHE_MAX = 1000;

/**
 * The users of one file, kept current. `login(name, password)` is the only question it answers. A password is checked with
 * scrypt once, then remembered for a while under an HMAC (with a key of this process) of name and password, so the pages'
 * polling does not run scrypt on every request; a wrong password is never remembered (it goes through scrypt each time,
 * and the login limiter caps how often). An unknown name costs a scrypt too, so timing does not tell names apart.
 */
export class UsersFile {
  readonly file: string;
  private users = new Map<string, UserEntry>();
  private seenAs = '';
  private checkedAt = 0;
  private refreshing: Promise<void> | undefined;
  private readonly verified = new Map<string, { login: Login; until: number }>();
  private readonly checking = new Map<string, Promise<Login | null>>();
  private readonly cacheKey = randomBytes(32);
  private dummyHash: Promise<string> | undefined;
  private readonly reserved: readonly string[];
  private readonly logger: Logger | undefined;

  /** Reads the file now: a missing or invalid file stops start-up with the reason. */
  constructor(file: string, opts: { reserved?: readonly string[]; logger?: Logger } = {}) {
    this.file = path.resolve(file);
    this.reserved = opts.reserved ?? [];
    this.logger = opts.logger;
    const users = readUsers(this.file, this.reserved);
    this.replace(users, signature(statSync(this.file)));
    this.checkedAt = Date.now();
  }

  /** The names in the file (for messages and tests). */
  get names(): string[] {
    return [...this.users.keys()];
  }

  async login(name: string, password: string): Promise<Login | null> {
    await this.refresh();
    const cacheKey = createHmac('sha256', this.cacheKey).update(name).update('\0').update(password).digest('base64');
    const hit = this.verified.get(cacheKey);
    if (hit && hit.until > Date.now()) return hit.login;
    // A page load asks for several files at once with the same login: one scrypt for all of them.
    const pending = this.checking.get(cacheKey);
    if (pending) return pending;
    const check = this.check(name, password, cacheKey).finally(() => this.checking.delete(cacheKey));
    this.checking.set(cacheKey, check);
    return check;
  }

  private async check(name: string, password: string, cacheKey: string): Promise<Login | null> {
    const entry = this.users.get(name);
    if (!entry || entry.hash === null) {
      // As slow as a wrong password, so a probe cannot tell which names exist.
      await verifyPassword(password, await (this.dummyHash ??= hashPassword(randomBytes(16).toString('hex'))));
      return null;
    }
    const version = this.seenAs;
    if (!(await verifyPassword(password, entry.hash!))) return null;
    const login: Login = { user: entry.name, role: entry.role, ...(entry.groups ? { groups: entry.groups } : {}) };
    // The file changed while scrypt ran: answer with what was checked, remember nothing.
    if (version === this.seenAs) {
      if (this.verified.size >= CACHE_MAX) this.verified.clear();
      this.verified.set(cacheKey, { login, until: Date.now() + CACHE_MS });
    }
    return login;
  }

  /** Re-reads the file if it changed (checked at most once a second). */
  async refresh(force = false): Promise<void> {
    if (!force && Date.now() - this.checkedAt < 1000) return;
    this.refreshing ??= this.reread().finally(() => {
      this.refreshing = undefined;
      this.checkedAt = Date.now();
    });
    await this.refreshing;
  }

  private async reread(): Promise<void> {
    let seen: string;
    try {
      seen = signature(await stat(this.file));
    } catch {
      // Deleted: nobody from the file may log in any more.
      if (this.seenAs !== 'gone') {
        this.logger?.warn({ file: this.file }, 'the users file is gone: its users can no longer log in');
        this.replace([], 'gone');
      }
      return;
    }
    if (seen === this.seenAs) return;
    try {
      this.replace(parseUsers(await readFile(this.file, 'utf8'), this.file, this.reserved), seen);
      this.logger?.info({ file: this.file, users: this.users.size }, 'users file reloaded');
    } catch (err) {
      // Keep the last good file: a half-edited file must not lock everyone out (or let anyone in).
      this.logger?.error({ file: this.file, err: (err as Error).message }, 'users file not reloaded; the previous version stays in use');
      this.seenAs = seen;
    }
  }

  private replace(users: UserEntry[], seenAs: string): void {
    this.users = new Map(users.map((u) => [u.name, u]));
    this.seenAs = seenAs;
    this.verified.clear();
  }
}
