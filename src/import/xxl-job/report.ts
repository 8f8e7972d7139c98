// The import's report: every xxl_job_info row as imported, imported with notes, or not imported (with the reason), what
// happened to each file, the users, and the totals. Printed for people; written as JSON with --report.
import type { ImportStatus, PlannedJob } from './map.ts';
import type { UserOutcome } from './users.ts';
import type { FileOutcome } from './write.ts';

export interface ReportRow {
  id: number;
  name: string;
  status: ImportStatus;
  notes: string[];
  files: FileOutcome[];
}

export interface ImportReport {
  source: string;
  out: string;
  dryRun: boolean;
  tz: string;
  audience: string[];
  totals: { rows: number; imported: number; importedWithNotes: number; notImported: number; filesWritten: number; filesKeptEdited: number };
  jobs: ReportRow[];
  /** Files edited since the last import (or never the importer's): left as they are. */
  kept: string[];
  users?: { file: string; outcomes: UserOutcome[]; note: string };
}

export function buildReport(
  base: Pick<ImportReport, 'source' | 'out' | 'dryRun' | 'tz' | 'audience'>,
  jobs: PlannedJob[],
  files: Map<number, FileOutcome[]>,
): ImportReport {
  const rows: ReportRow[] = jobs.map((j) => ({ id: j.id, name: j.name, status: j.status, notes: j.notes, files: files.get(j.id) ?? [] }));
  const all = rows.flatMap((r) => r.files);
  const kept = all.filter((f) => f.action === 'kept-edited' || f.action === 'kept-not-ours').map((f) => f.file);
  return {
    ...base,
    totals: {
      rows: rows.length,
      imported: rows.filter((r) => r.status === 'imported').length,
      importedWithNotes: rows.filter((r) => r.status === 'notes').length,
      notImported: rows.filter((r) => r.status === 'not-imported').length,
      filesWritten: all.filter((f) => f.action === 'created' || f.action === 'updated').length,
      filesKeptEdited: kept.length,
    },
    jobs: rows,
    kept,
  };
}

const LABEL: Record<ImportStatus, string> = { imported: 'imported', notes: 'imported with notes', 'not-imported': 'NOT imported' };

/** The report as lines for the terminal. */
export function formatReport(report: ImportReport): string[] {
  const out: string[] = [`xxl-job import from ${report.source} into ${report.out}${report.dryRun ? ' (dry run: nothing written)' : ''}`];
  for (const row of report.jobs) {
    const changed = row.files.filter((f) => f.action !== 'unchanged').map((f) => `${f.file} ${f.action}`);
    out.push(`  #${row.id} ${row.name}: ${LABEL[row.status]}${changed.length ? ` (${changed.join(', ')})` : ''}`);
    for (const note of row.notes) out.push(`      - ${note}`);
  }
  if (report.kept.length) {
    out.push('', 'Edited since the last import (or not written by it), left as they are:');
    for (const f of report.kept) out.push(`  ${f}`);
  }
  if (report.users) {
    out.push('', `Users (${report.users.file}): ${report.users.note}`);
    for (const u of report.users.outcomes) {
      const what =
        u.action === 'added' ? `${u.role}${u.groups ? ` of ${u.groups.join(', ')}` : ''}, no password yet` : `${u.action}: ${u.reason}`;
      out.push(`  ${u.name}: ${what}`);
    }
  }
  const t = report.totals;
  out.push(
    '',
    `${t.rows} rows: ${t.imported} imported, ${t.importedWithNotes} imported with notes, ${t.notImported} not imported; ` +
      `${t.filesWritten} file(s) ${report.dryRun ? 'to write' : 'written'}, ${t.filesKeptEdited} kept as edited`,
  );
  return out;
}
