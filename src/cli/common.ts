// What the commands of the command line share: output, usage errors, the environment and the control plane.
import os from 'node:os';
import path from 'node:path';
import { loadConfig, readDotEnv, type Config } from '../config.ts';
import { Control } from '../control/control.ts';
import { JobscopeError } from '../errors.ts';
import type { Registry } from '../jobs/registry.ts';
import { createLogger, type Logger } from '../log.ts';

export interface CliIO {
  out(line: string): void;
  err(line: string): void;
}

export class UsageError extends JobscopeError {
  constructor(message: string) {
    super('ERR_USAGE', message);
  }
}

export interface Env {
  config: Config;
  logger: Logger;
}

export function environment(level?: string): Env {
  const config = loadConfig(readDotEnv(path.resolve('.env'), process.env));
  // Logs go to stderr, so stdout stays clean for the JSON that `trigger --wait` and `list --json` print.
  const logger = createLogger(level ?? config.logLevel, { write: (s: string) => process.stderr.write(s) });
  return { config, logger };
}

/** What list, trigger, cancel, pause and resume need: the control plane alone (one connection, no keys, nothing on disk). */
export async function openControl({ config, logger }: Env, registry: Registry): Promise<Control> {
  const { redisUrl, prefix, project, retention } = config;
  const control = new Control({ redisUrl, prefix, registry, logger, retention, project });
  try {
    await control.ready();
    // Another project's runners on this prefix would run (or have run) what this command touches: refuse.
    await control.checkProject(false);
  } catch (err) {
    await control.close();
    throw err;
  }
  return control;
}

export const list_ = (value: string | undefined) =>
  value
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);

export function osUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return 'unknown';
  }
}
