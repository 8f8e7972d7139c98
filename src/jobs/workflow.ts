// Checks that cross job files: every `then` names a loaded job, and `then` never leads back to where it started (a cycle
// would start runs forever). Messages name the files on the way.
import { JobDefinitionError } from '../errors.ts';
import type { RegisteredJob } from '../interfaces.ts';

export function workflowProblems(jobs: readonly RegisteredJob[]): JobDefinitionError[] {
  const byName = new Map(jobs.map((j) => [j.name, j]));
  const problems: JobDefinitionError[] = [];
  for (const job of jobs) {
    job.then.forEach((step, i) => {
      if (!byName.has(step.job)) {
        problems.push(
          new JobDefinitionError(job.file, `then[${i}]`, `no job named "${step.job}"; known jobs: ${[...byName.keys()].join(', ')}`),
        );
      }
    });
  }
  // Depth-first search over `then`; a job on the current path met again is a cycle.
  const done = new Set<string>();
  const reported = new Set<string>();
  const visit = (name: string, path: string[]): void => {
    const at = path.indexOf(name);
    if (at >= 0) {
      const cycle = [...path.slice(at), name];
      const key = [...cycle].slice(0, -1).sort().join(',');
      if (!reported.has(key)) {
        reported.add(key);
        const first = byName.get(cycle[0])!;
        const files = cycle.slice(0, -1).map((n) => byName.get(n)!.file);
        problems.push(
          new JobDefinitionError(
            first.file,
            'then',
            `a cycle: ${cycle.join(' -> ')} would start runs forever (files: ${files.join(', ')})`,
          ),
        );
      }
      return;
    }
    if (done.has(name)) return;
    const job = byName.get(name);
    if (!job) return;
    for (const step of job.then) visit(step.job, [...path, name]);
    done.add(name);
  };
  for (const job of jobs) visit(job.name, []);
  return problems;
}
