// Reads an xxl-job admin database with mysql2: three SELECTs in a read-only transaction, nothing else.
import { redactUrl } from '../../redact.ts';
import type { Row, XxlEstate } from './types.ts';

const TABLES = { groups: 'xxl_job_group', jobs: 'xxl_job_info', users: 'xxl_job_user' } as const;

export async function readDatabase(url: string): Promise<XxlEstate> {
  const mysql = await import('mysql2/promise');
  // dateStrings: datetimes as written, not shifted into this machine's zone; no multipleStatements.
  const connection = await mysql.createConnection({ uri: url, dateStrings: true, supportBigNumbers: true, bigNumberStrings: false });
  try {
    await connection.query('START TRANSACTION READ ONLY');
    const read = async (table: string, optional = false): Promise<Row[]> => {
      try {
        const [rows] = await connection.query(`SELECT * FROM \`${table}\` ORDER BY 1`);
        return rows as Row[];
      } catch (err) {
        if (optional && (err as { code?: string }).code === 'ER_NO_SUCH_TABLE') return [];
        throw err;
      }
    };
    const estate: XxlEstate = {
      source: redactUrl(url),
      groups: await read(TABLES.groups),
      jobs: await read(TABLES.jobs),
      users: await read(TABLES.users, true),
    };
    await connection.query('COMMIT');
    return estate;
  } finally {
    await connection.end();
  }
}
