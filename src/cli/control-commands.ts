// `jobscope list | workers | pause | resume | cancel`: questions and orders for the control plane, which each command opens
// for itself (one connection, no keys, nothing on disk) and closes when it is done.
import type { Control } from '../control/control.ts';
import { loadRegistry } from '../jobs/registry.ts';
import { describeSchedule } from '../jobs/schedule.ts';
import { openControl, UsageError, type CliIO, type Env } from './common.ts';

async function withControl(env: Env, use: (control: Control) => Promise<number>): Promise<number> {
  const registry = await loadRegistry(env.config.jobsDir);
  const control = await openControl(env, registry);
  try {
    return await use(control);
  } finally {
    await control.close();
  }
}

export function listCommand(env: Env, json: boolean, io: CliIO): Promise<number> {
  return withControl(env, async (control) => {
    const jobs = await control.summaries();
    if (json) {
      io.out(JSON.stringify(jobs, null, 2));
      return 0;
    }
    for (const j of jobs) {
      io.out(`${j.name}${j.paused ? ' (paused)' : ''}`);
      if (j.description) io.out(`  ${j.description}`);
      io.out(`  schedule: ${describeSchedule(j.schedule ?? undefined)}`);
      if (j.nextRuns.length) io.out(`  next: ${j.nextRuns.slice(0, 3).join(', ')}`);
    }
    if (jobs.length === 0) io.out(`no jobs in ${env.config.jobsDir}`);
    return 0;
  });
}

export function workersCommand(env: Env, json: boolean, io: CliIO): Promise<number> {
  return withControl(env, async (control) => {
    const workers = await control.liveWorkers();
    if (json) {
      io.out(JSON.stringify(workers, null, 2));
      return 0;
    }
    if (workers.length === 0) io.out('no worker has sent a heartbeat in the last day');
    for (const w of workers) {
      io.out(`${w.alive ? 'alive' : 'DEAD '}  ${w.host} pid ${w.pid}  jobscope ${w.versions.jobscope}, node ${w.versions.node}`);
      io.out(`       groups: ${w.groups.join(', ') || '(none)'}; jobs: ${w.jobs.join(', ') || '(none)'}`);
      io.out(`       active: ${w.active.join(', ') || '(none)'}; started ${w.startedAt}; last seen ${w.lastSeen}`);
    }
    return 0;
  });
}

export function pauseCommand(env: Env, command: 'pause' | 'resume', name: string | undefined, io: CliIO): Promise<number> {
  if (!name) throw new UsageError(`usage: jobscope ${command} <job>`);
  return withControl(env, async (control) => {
    await (command === 'pause' ? control.pause(name) : control.resume(name));
    io.out(`${name}: ${command === 'pause' ? 'paused' : 'resumed'}`);
    return 0;
  });
}

export function cancelCommand(env: Env, runId: string | undefined, io: CliIO): Promise<number> {
  if (!runId) throw new UsageError('usage: jobscope cancel <runId>');
  return withControl(env, async (control) => {
    io.out(JSON.stringify(await control.cancel(runId, 'cancelled from the CLI')));
    return 0;
  });
}
