// Runs the real `jobscope` bin as a child process (bounded in time) and collects its output.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './runtime.ts';

export const BIN = path.join(ROOT, 'bin', 'jobscope.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `env` is the child's whole environment (nothing is inherited unless passed); `stdin` is written to its standard input;
 * `cwd` is where it runs (default: the repository).
 */
export function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 30_000, stdin = '', cwd = ROOT): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`jobscope ${args.join(' ')} did not finish in ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(stdin);
  });
}
