// `jobscope users add | list | remove`: the logins of JOBSCOPE_USERS_FILE.
import { list_, UsageError, type CliIO, type Env } from './common.ts';

const USAGE = `usage: jobscope users add <name> --role admin|operator|viewer [--groups a,b] [--password-stdin] [--replace]
       jobscope users list [--json]
       jobscope users remove <name>`;

async function readStdin(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin) {
    text += String(chunk);
    if (text.length > 4096) throw new UsageError('--password-stdin: expected one password line');
  }
  return text.replace(/\r?\n$/, '');
}

interface UsersFlags {
  role?: string;
  groups?: string;
  'password-stdin'?: boolean;
  replace?: boolean;
  json?: boolean;
}

export async function usersCommand(env: Env, rest: string[], flags: UsersFlags, io: CliIO): Promise<number> {
  const [sub, name, ...extra] = rest;
  const file = env.config.usersFile;
  if (!file) throw new UsageError('set JOBSCOPE_USERS_FILE to the users file (for example JOBSCOPE_USERS_FILE=./users.json)');
  if (sub === 'list' && !name) return listUsers(file, Boolean(flags.json), io);
  if (!name || extra.length) throw new UsageError(USAGE);
  if (sub === 'remove') {
    const { removeUser } = await import('../server/users.ts');
    const left = removeUser(file, name);
    io.out(`removed user "${name}" from ${file} (${left.length} left); a running server refuses its login from now on`);
    return 0;
  }
  if (sub !== 'add') throw new UsageError(USAGE);
  const { ROLES, addUser } = await import('../server/users.ts');
  const role = flags.role as (typeof ROLES)[number];
  if (!ROLES.includes(role)) throw new UsageError(`--role must be one of ${ROLES.join(', ')}\n${USAGE}`);
  const generated = !flags['password-stdin'];
  const { randomBytes } = await import('node:crypto');
  const password = generated ? randomBytes(18).toString('base64url') : await readStdin();
  const groups = list_(flags.groups);
  const done = await addUser(file, { name, role, ...(groups?.length ? { groups } : {}), password }, { replace: flags.replace });
  io.out(`${done} user "${name}" (${role}${groups?.length ? `, groups: ${groups.join(', ')}` : ', every job'}) in ${file}`);
  // Printed once: only the scrypt hash is kept.
  if (generated) io.out(`password: ${password}`);
  return 0;
}

/** Names, roles and groups; never a hash. */
async function listUsers(file: string, json: boolean, io: CliIO): Promise<number> {
  const { readUsers } = await import('../server/users.ts');
  const users = readUsers(file).map((u) => ({ name: u.name, role: u.role, groups: u.groups ?? null }));
  if (json) io.out(JSON.stringify(users, null, 2));
  else if (users.length === 0) io.out(`no users in ${file}`);
  else for (const u of users) io.out(`${u.name}  ${u.role}  ${u.groups ? `groups: ${u.groups.join(', ')}` : 'every job'}`);
  return 0;
}
