// `jobscope import xxl-job --from <mysql://...|dump.sql> [--out jobs] [--dry-run] [--tz Z] [--audience a,b] [--report f.json]
// [--users]`: reads the estate, plans one job per row, writes files idempotently, reports.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { JobscopeError } from '../errors.ts';
import { readDatabase } from './xxl-job/db.ts';
import { readDump } from './xxl-job/dump.ts';
import { planEstate } from './xxl-job/map.ts';
import { buildReport, formatReport, type ImportReport } from './xxl-job/report.ts';
import { importUsers } from './xxl-job/users.ts';
import { foreignNames, readManifest, writeJobs } from './xxl-job/write.ts';

export interface ImportFlags {
  from?: string;
  out?: string;
  'dry-run'?: boolean;
  tz?: string;
  audience?: string;
  report?: string;
  users?: boolean;
}

export class ImportUsageError extends JobscopeError {
  constructor(message: string) {
    super('ERR_USAGE', message);
  }
}

export const IMPORT_USAGE =
  'usage: jobscope import xxl-job --from <mysql://user:pass@host:3306/xxl_job | dump.sql> [--out jobs] [--dry-run] [--tz Area/City] [--audience svc,...] [--report file.json] [--users]';

/** Runs the import; `usersFile` is where --users writes (JOBSCOPE_USERS_FILE, default ./users.json). */
export async function importCommand(
  rest: string[],
  flags: ImportFlags,
  usersFile: string | undefined,
  io: { out(line: string): void },
): Promise<ImportReport> {
  if (rest[0] !== 'xxl-job' || rest.length > 1 || !flags.from) throw new ImportUsageError(IMPORT_USAGE);
  const tz = flags.tz ?? Intl.DateTimeFormat().resolvedOptions().timeZone;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
  } catch {
    throw new ImportUsageError(`--tz "${tz}" is not an IANA time zone (example: Asia/Shanghai)`);
  }
  const audience = (flags.audience ?? 'system')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const out = path.resolve(flags.out ?? 'jobs');
  const dryRun = Boolean(flags['dry-run']);
  const estate = /^(mysql|mariadb):\/\//.test(flags.from)
    ? await readDatabase(flags.from.replace(/^mariadb:/, 'mysql:'))
    : readDump(flags.from);
  const manifest = readManifest(out);
  const pinned = new Map(Object.entries(manifest.jobs).map(([id, name]) => [Number(id), name]));
  const jobs = planEstate(estate, { tz, audience, pinned, taken: foreignNames(out, manifest) });
  const files = writeJobs(out, jobs, manifest, dryRun);
  const report = buildReport({ source: estate.source, out, dryRun, tz, audience }, jobs, files);
  if (flags.users) {
    const file = path.resolve(usersFile ?? 'users.json');
    report.users = {
      file,
      outcomes: importUsers(file, estate, dryRun),
      note: 'passwords are not carried over (xxl-job keeps unsalted hashes): each user logs in once a password is set with `jobscope users add <name> --role <role>`',
    };
  }
  for (const line of formatReport(report)) io.out(line);
  if (flags.report) writeFileSync(path.resolve(flags.report), JSON.stringify(report, null, 2) + '\n');
  return report;
}
