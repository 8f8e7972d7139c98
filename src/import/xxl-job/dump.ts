// Reads an xxl-job admin database from a SQL dump: `mysqldump` output (one multi-row INSERT per table, with or without
// column lists, `/*!40101 ... */` conditional comments, LOCK TABLES) or xxl-job's own `doc/db/tables_xxl_job.sql`
// (column lists, multi-line strings, `now()`). Only two kinds of statement matter: CREATE TABLE (for the column order of
// an INSERT without a column list) and INSERT INTO one of the three tables; everything else is skipped up to its `;`.
//
// A small scanner rather than node-sql-parser: the importer needs the literal values of INSERTs alone, must read every
// mysqldump variant (conditional comments, `_binary` and hex literals, escapes) without failing on statements it does not
// care about (SET, LOCK TABLES, DELIMITER blocks of other tables), and a full SQL AST of a dump with large GLUE sources
// is slow and would fail the whole import on one statement the parser's grammar does not know.
import { readFileSync } from 'node:fs';
import type { Row, XxlEstate } from './types.ts';

type Value = string | number | null;

/** Table name (lower case) -> which list of the estate it fills. 1.x/2.0 named them XXL_JOB_QRTZ_TRIGGER_*. */
const TABLES: Record<string, keyof Omit<XxlEstate, 'source'>> = {
  xxl_job_group: 'groups',
  xxl_job_info: 'jobs',
  xxl_job_user: 'users',
  xxl_job_qrtz_trigger_group: 'groups',
  xxl_job_qrtz_trigger_info: 'jobs',
};

export class DumpSyntaxError extends Error {
  constructor(message: string, text: string, at: number) {
    const line = text.slice(0, at).split('\n').length;
    super(`line ${line}: ${message}`);
    this.name = 'DumpSyntaxError';
  }
}

const ESCAPES: Record<string, string> = { '0': '\0', b: '\b', n: '\n', r: '\r', t: '\t', Z: '\x1a' };

class Scanner {
  pos = 0;
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
  fail(message: string): never {
    throw new DumpSyntaxError(message, this.text, this.pos);
  }
  get done(): boolean {
    this.skipSpace();
    return this.pos >= this.text.length;
  }
  /** Skips whitespace and comments (`-- `, `#`, `/* *\/`, mysqldump's `/*!40101 ... *\/` included). */
  skipSpace(): void {
    const t = this.text;
    for (;;) {
      while (this.pos < t.length && /\s/.test(t[this.pos]!)) this.pos++;
      if (t.startsWith('--', this.pos) || t[this.pos] === '#') {
        const end = t.indexOf('\n', this.pos);
        this.pos = end < 0 ? t.length : end + 1;
      } else if (t.startsWith('/*', this.pos)) {
        const end = t.indexOf('*/', this.pos + 2);
        this.pos = end < 0 ? t.length : end + 2;
      } else return;
    }
  }
  /** Consumes `word` (case-insensitive, whole word) if it comes next. */
  keyword(word: string): boolean {
    this.skipSpace();
    const next = this.text.substr(this.pos, word.length);
    if (next.toLowerCase() !== word.toLowerCase() || /\w/.test(this.text[this.pos + word.length] ?? '')) return false;
    this.pos += word.length;
    return true;
  }
  punct(ch: string): boolean {
    this.skipSpace();
    if (this.text[this.pos] !== ch) return false;
    this.pos++;
    return true;
  }
  expect(ch: string): void {
    if (!this.punct(ch)) this.fail(`expected "${ch}"`);
  }
  /** An identifier, `quoted` or bare, possibly `db`.`table` (the last part is returned). */
  identifier(): string {
    this.skipSpace();
    let name: string;
    if (this.text[this.pos] === '`') {
      const end = this.text.indexOf('`', this.pos + 1);
      if (end < 0) this.fail('unterminated `identifier`');
      name = this.text.slice(this.pos + 1, end);
      this.pos = end + 1;
    } else {
      const m = /^[A-Za-z0-9_$]+/.exec(this.text.slice(this.pos, this.pos + 200));
      if (!m) this.fail('expected a name');
      name = m[0];
      this.pos += name.length;
    }
    return this.text[this.pos] === '.' ? (this.pos++, this.identifier()) : name;
  }
  /** A quoted string with MySQL escapes ('' and \x). */
  string(): string {
    const quote = this.text[this.pos]!;
    let out = '';
    for (let i = this.pos + 1; i < this.text.length; i++) {
      const c = this.text[i]!;
      if (c === '\\') {
        const n = this.text[++i]!;
        out += ESCAPES[n] ?? n;
      } else if (c === quote) {
        if (this.text[i + 1] === quote) {
          out += quote;
          i++;
        } else {
          this.pos = i + 1;
          return out;
        }
      } else out += c;
    }
    return this.fail('unterminated string');
  }
  /** One literal of a VALUES tuple: string, number, NULL, hex, or an expression such as now() (read as null). */
  value(): Value {
    this.skipSpace();
    const t = this.text;
    const c = t[this.pos]!;
    if (c === "'" || c === '"') return this.string();
    if (this.keyword('_binary') || this.keyword('_utf8mb4') || this.keyword('_utf8')) return this.value();
    const rest = t.slice(this.pos, this.pos + 400);
    const num = /^-?\d+(\.\d+)?([eE][-+]?\d+)?/.exec(rest);
    if (num && !/^0x/i.test(rest)) {
      this.pos += num[0].length;
      return Number(num[0]);
    }
    const hex = /^0x([0-9A-Fa-f]*)|^[xX]'([0-9A-Fa-f]*)'/.exec(rest);
    if (hex) {
      this.pos += hex[0].length;
      return Buffer.from(hex[1] ?? hex[2] ?? '', 'hex').toString('utf8');
    }
    if (this.keyword('NULL')) return null;
    // A function call or keyword (now(), CURRENT_TIMESTAMP): not a literal the importer needs.
    this.identifier();
    if (this.punct('(')) this.skipParens();
    return null;
  }
  /** Skips to the `)` that closes an already opened `(`. */
  skipParens(): void {
    for (let depth = 1; depth > 0;) {
      this.skipSpace();
      const c = this.text[this.pos];
      if (c === undefined) this.fail('unbalanced parentheses');
      if (c === "'" || c === '"') this.string();
      else {
        if (c === '(') depth++;
        if (c === ')') depth--;
        this.pos++;
      }
    }
  }
  /** Skips the rest of a statement, up to and including its `;` (strings and comments respected). */
  skipStatement(): void {
    for (;;) {
      this.skipSpace();
      const c = this.text[this.pos];
      if (c === undefined) return;
      if (c === "'" || c === '"') this.string();
      else if (c === '`') this.identifier();
      else {
        this.pos++;
        if (c === ';') return;
      }
    }
  }
}

/** The column names of a CREATE TABLE body, in order. */
function createTable(s: Scanner): { table: string; columns: string[] } {
  if (s.keyword('IF') && s.keyword('NOT')) s.keyword('EXISTS');
  const table = s.identifier();
  s.expect('(');
  const columns: string[] = [];
  for (;;) {
    s.skipSpace();
    const isColumn =
      s.text[s.pos] === '`' || !/^(PRIMARY|UNIQUE|KEY|INDEX|CONSTRAINT|FULLTEXT|FOREIGN|CHECK)\b/i.test(s.text.slice(s.pos, s.pos + 12));
    if (isColumn) columns.push(s.identifier());
    // The rest of this column or key definition, up to a top-level ',' or the closing ')'.
    for (;;) {
      s.skipSpace();
      const c = s.text[s.pos];
      if (c === undefined) s.fail('unterminated CREATE TABLE');
      if (c === "'" || c === '"') s.string();
      else if (c === '`') s.identifier();
      else if (c === '(') {
        s.pos++;
        s.skipParens();
      } else {
        s.pos++;
        if (c === ',') break;
        if (c === ')') {
          s.skipStatement();
          return { table, columns };
        }
      }
    }
  }
}

function insert(s: Scanner, columnsOf: Map<string, string[]>): { table: string; rows: Row[] } {
  s.keyword('IGNORE');
  s.keyword('INTO');
  const table = s.identifier().toLowerCase();
  if (!TABLES[table]) {
    s.skipStatement();
    return { table, rows: [] };
  }
  let columns: string[] | undefined;
  if (s.punct('(')) {
    columns = [];
    do columns.push(s.identifier());
    while (s.punct(','));
    s.expect(')');
  }
  if (!s.keyword('VALUES') && !s.keyword('VALUE')) s.fail(`INSERT INTO ${table}: only INSERT ... VALUES is read`);
  columns ??= columnsOf.get(table);
  const rows: Row[] = [];
  do {
    s.expect('(');
    const values: Value[] = [];
    if (!s.punct(')')) {
      do values.push(s.value());
      while (s.punct(','));
      s.expect(')');
    }
    if (!columns) s.fail(`INSERT INTO ${table} without a column list, and no CREATE TABLE ${table} before it`);
    if (values.length !== columns.length) s.fail(`INSERT INTO ${table}: ${values.length} values for ${columns.length} columns`);
    rows.push(Object.fromEntries(columns.map((c, i) => [c, values[i]!])));
  } while (s.punct(','));
  s.skipStatement();
  return { table, rows };
}

/** Every row of the three xxl-job tables a dump's INSERTs hold. */
export function parseDump(text: string, source: string): XxlEstate {
  const estate: XxlEstate = { source, groups: [], jobs: [], users: [] };
  const columnsOf = new Map<string, string[]>();
  const s = new Scanner(text);
  while (!s.done) {
    if (s.keyword('CREATE') && (s.keyword('TABLE') || (s.keyword('TEMPORARY') && s.keyword('TABLE')))) {
      const { table, columns } = createTable(s);
      columnsOf.set(table.toLowerCase(), columns);
    } else if (s.keyword('INSERT') || s.keyword('REPLACE')) {
      const { table, rows } = insert(s, columnsOf);
      const list = TABLES[table];
      if (list) estate[list].push(...rows);
    } else s.skipStatement();
  }
  return estate;
}

export function readDump(file: string): XxlEstate {
  return parseDump(readFileSync(file, 'utf8'), file);
}
