#!/usr/bin/env node
// Registers tsx so TypeScript job files load without a build step, then runs the CLI (compiled if built, else from source).
import { existsSync } from 'node:fs';
import { register } from 'tsx/esm/api';

register();
const built = new URL('../dist/cli.js', import.meta.url);
const { main } = await import(existsSync(built) ? built.href : new URL('../src/cli.ts', import.meta.url).href);
const code = await main(process.argv.slice(2));
process.exitCode = code;
// The command is done; if a stray handle (a connection still closing) would keep the process alive, exit anyway.
setTimeout(() => process.exit(code), 2000).unref();
