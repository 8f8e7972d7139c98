#!/usr/bin/env node
// Runs the CLI (compiled if built, else from source through tsx). Job files, TypeScript included, are loaded by the jobs
// loader (src/jobs/registry.ts), which registers tsx itself in whatever npm project this runs in.
import { existsSync } from 'node:fs';

// A reader that goes away (`jobscope list | head -1`) ends the command quietly with exit code 0, as other Unix tools do,
// instead of an unhandled EPIPE; a closed stderr only silences the logs of a process that goes on with its work.
const CLOSED = new Set(['EPIPE', 'EOF', 'ERR_STREAM_DESTROYED', 'ERR_STREAM_WRITE_AFTER_END']);
process.stdout.on('error', (err) => {
  if (!CLOSED.has(err.code)) throw err;
  process.exit(0);
});
process.stderr.on('error', (err) => {
  if (!CLOSED.has(err.code)) throw err;
});

const built = new URL('../dist/cli/main.js', import.meta.url);
let cli = built.href;
if (!existsSync(built)) {
  const { register } = await import('tsx/esm/api');
  register();
  cli = new URL('../src/cli/main.ts', import.meta.url).href;
}
const { main } = await import(cli);
const code = await main(process.argv.slice(2));
process.exitCode = code;
// The command is done; if a stray handle (a connection still closing) would keep the process alive, exit anyway.
setTimeout(() => process.exit(code), 2000).unref();
