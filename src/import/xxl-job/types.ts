// What the importer reads from an xxl-job admin database (the same shape whether it came from MySQL or from a dump).
// Column names differ across xxl-job generations (2.x `job_cron`; 2.3+ `schedule_type`/`schedule_conf`/`misfire_strategy`;
// `job_desc` became `name` and the group's `title` became `name` on master): rows keep every column they were read with,
// and the mapping asks for each field by all its names.

/** One row as read: column name -> value (strings, numbers, null; dates as strings). */
export type Row = Record<string, string | number | null>;

export interface XxlEstate {
  /** Where it came from, for the report (a URL without its password, or a file path). */
  source: string;
  groups: Row[];
  jobs: Row[];
  users: Row[];
}

/** A value of a row as a string ('' for null or absent). */
export function str(row: Row, ...columns: string[]): string {
  for (const c of columns) {
    const v = row[c];
    if (v !== null && v !== undefined) return String(v);
  }
  return '';
}

/** A value of a row as an integer (`fallback` for null, absent or not a number). */
export function int(row: Row, column: string, fallback = 0): number {
  const v = Number(row[column]);
  return row[column] === null || row[column] === undefined || !Number.isFinite(v) ? fallback : Math.trunc(v);
}
