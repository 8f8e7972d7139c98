// The command line: parses the arguments, finds the command in one table and turns its outcome into an exit code. Each
// command is a small function beside this file that asks control/ (or starts runtime/ and the server, for start, worker and
// server); nothing here opens a connection or a queue itself.
import { parseArgs } from 'node:util';
import { JobscopeError } from '../errors.ts';
import { enableTracing } from '../trace.ts';
import { environment, UsageError, type CliIO } from './common.ts';
import { cancelCommand, listCommand, pauseCommand, workersCommand } from './control-commands.ts';
import { keysGenerateCommand, verifyCommand } from './key-commands.ts';
import { serve, type ServeMode } from './serve.ts';
import { trigger } from './trigger.ts';
import { usersCommand } from './users.ts';

export type { CliIO } from './common.ts';

const USAGE = `jobscope <command>

  start [--watch]               workers + scheduler + HTTP server (dashboard, API, JWKS); --watch reloads changed job files
  worker [--only a,b] [--group g,h] [--watch]
                                workers only (scale out: run many); --group: the jobs of these worker groups
  workers [--json]              the worker processes (heartbeats): host, pid, versions, groups, jobs, active runs
  server                        HTTP server + scheduler sync only
  list [--json]                 the registered jobs, schedules and next fire times
  trigger <job> [--data JSON] [--delay 5m | --at ISO] [--priority N] [--key K] [--wait] [--timeout 5m]
                                enqueue a run; --wait prints the result as JSON, exit 0 on success, 1 on any
                                other outcome; exit 3 when overlap 'skip' refuses it; with no worker serving the
                                job, --wait says so at once and gives up after 30 s unless --timeout is given
  token verify <jwt> [--audience A]
                                verify a token as a service would; exit 0 valid, 1 invalid with the reason
  pause <job> | resume <job>    stop/start a job's schedule and queue (survives restarts)
  cancel <runId>                cancel a waiting or running run, on whichever host runs it
  keys generate [--dir DIR]     write a new P-256 signing key (rotation)
  import xxl-job --from <mysql://...|dump.sql> [--out jobs] [--dry-run] [--tz Z] [--audience svc] [--report f.json] [--users]
                                one job file per xxl-job job (idempotent; edited files are kept); see README
  users add <name> --role admin|operator|viewer [--groups a,b] [--password-stdin] [--replace]
                                add a login to JOBSCOPE_USERS_FILE (scrypt hash); without --password-stdin a password is
                                generated and printed once; --groups limits it to the jobs of those groups
  users list [--json]           the logins of JOBSCOPE_USERS_FILE: name, role, groups (never a hash)
  users remove <name>           remove a login from JOBSCOPE_USERS_FILE (a running server refuses it at once)

Configuration: environment variables (and a .env file); see README.md.`;

const OPTIONS = {
  data: { type: 'string' },
  delay: { type: 'string' },
  at: { type: 'string' },
  priority: { type: 'string' },
  key: { type: 'string' },
  wait: { type: 'boolean' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  only: { type: 'string' },
  group: { type: 'string' },
  watch: { type: 'boolean' },
  audience: { type: 'string' },
  dir: { type: 'string' },
  role: { type: 'string' },
  groups: { type: 'string' },
  'password-stdin': { type: 'boolean' },
  replace: { type: 'boolean' },
  from: { type: 'string' },
  out: { type: 'string' },
  'dry-run': { type: 'boolean' },
  tz: { type: 'string' },
  report: { type: 'string' },
  users: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

interface Command {
  /** Traced when OTEL_EXPORTER_OTLP_ENDPOINT is set (trace.ts): the commands that start runs or run them. */
  traced?: boolean;
  run(rest: string[], values: Values, io: CliIO): Promise<number> | number;
}

const serveCommand = (mode: ServeMode): Command => ({
  traced: true,
  run: (_rest, values, io) => serve(environment(), mode, { only: values.only, group: values.group, watch: values.watch }, io),
});

const COMMANDS = new Map<string, Command>([
  ['start', serveCommand('start')],
  ['worker', serveCommand('worker')],
  ['server', serveCommand('server')],
  ['workers', { run: (_rest, values, io) => workersCommand(environment('warn'), Boolean(values.json), io) }],
  ['list', { run: (_rest, values, io) => listCommand(environment('warn'), Boolean(values.json), io) }],
  ['trigger', { traced: true, run: ([job], values, io) => trigger(environment('warn'), job, values, io) }],
  ['pause', { run: ([job], _values, io) => pauseCommand(environment('warn'), 'pause', job, io) }],
  ['resume', { run: ([job], _values, io) => pauseCommand(environment('warn'), 'resume', job, io) }],
  ['cancel', { run: ([runId], _values, io) => cancelCommand(environment('warn'), runId, io) }],
  [
    'token',
    {
      run: ([sub, token], values, io) => {
        if (sub !== 'verify') throw new UsageError('usage: jobscope token verify <jwt> [--audience A]');
        return verifyCommand(environment('warn'), token, values.audience, io);
      },
    },
  ],
  [
    'keys',
    {
      run: ([sub], values, io) => {
        if (sub !== 'generate') throw new UsageError('usage: jobscope keys generate [--dir DIR]');
        return keysGenerateCommand(values.dir, io);
      },
    },
  ],
  [
    'import',
    {
      run: async (rest, values, io) => {
        const { importCommand } = await import('../import/cli.ts');
        await importCommand(rest, values, environment('warn').config.usersFile, io);
        return 0;
      },
    },
  ],
  ['users', { run: (rest, values, io) => usersCommand(environment('warn'), rest, values, io) }],
]);

const stdio: CliIO = {
  out: (l) => process.stdout.write(l + '\n'),
  err: (l) => process.stderr.write(l + '\n'),
};

/** Runs `jobscope <argv>`; resolves with the exit code (0 done, 1 failed, 2 a usage error; trigger adds 3). */
export async function main(argv: string[], io: CliIO = stdio): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS });
  } catch (err) {
    io.err(`jobscope: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [name, ...rest] = positionals;
  if (!name || values.help) {
    io.out(USAGE);
    return name || values.help ? 0 : 2;
  }
  const command = COMMANDS.get(name);
  // OTEL_EXPORTER_OTLP_ENDPOINT set: trace the runs, attempts and calls of this process; flushed at the end.
  const tracing = command?.traced ? await enableTracing() : undefined;
  try {
    if (!command) throw new UsageError(`unknown command "${name}"\n\n${USAGE}`);
    return await command.run(rest, values, io);
  } catch (err) {
    return failed(err, name, io);
  } finally {
    await tracing?.shutdown().catch(() => undefined);
  }
}

/** A command's error on stderr: exit 2 for a usage error, 1 otherwise (trigger also prints invalid data's issues as JSON). */
function failed(err: unknown, command: string, io: CliIO): number {
  if (err instanceof UsageError || (err instanceof JobscopeError && err.code === 'ERR_USAGE')) {
    io.err(`jobscope: ${err.message}`);
    return 2;
  }
  if (err instanceof JobscopeError) {
    const issues = (err as { issues?: { path: string; message: string }[] }).issues;
    io.err(`jobscope: ${err.message}`);
    if (issues && command === 'trigger') io.out(JSON.stringify({ error: err.code, issues }, null, 2));
    return 1;
  }
  io.err(`jobscope: ${(err as Error).message}`);
  return 1;
}
