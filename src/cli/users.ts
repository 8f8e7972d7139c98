// `jobscope users`: the logins of JOBSCOPE_USERS_FILE.
import { list_, UsageError, type CliIO, type Env } from './common.ts';

async function readStdin(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin) {
    text += String(chunk);
    if (text.length > 4096) throw new UsageError('--password-stdin: expected one password line');
  }
  return text.replace(/\r?\n$/, '');
}

export async function usersCommand(
  env: Env,
  rest: string[],
  flags: { role?: string; groups?: string; 'password-stdin'?: boolean; replace?: boolean },
  io: CliIO,
): Promise<number> {
  const usage = 'usage: jobscope users add <name> --role admin|operator|viewer [--groups a,b] [--password-stdin] [--replace]';
  const [sub, name, ...extra] = rest;
  if (sub !== 'add' || !name || extra.length) throw new UsageError(usage);
  const file = env.config.usersFile;
  if (!file) throw new UsageError('set JOBSCOPE_USERS_FILE to the users file to write (for example JOBSCOPE_USERS_FILE=./users.json)');
  const { ROLES, addUser } = await import('../server/users.ts');
  const role = flags.role as (typeof ROLES)[number];
  if (!ROLES.includes(role)) throw new UsageError(`--role must be one of ${ROLES.join(', ')}\n${usage}`);
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
