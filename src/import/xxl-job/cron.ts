// Quartz cron (what xxl-job schedules with) -> jobscope's cron (cron-parser, 6 fields with seconds).
// Quartz: `sec min hour day-of-month month day-of-week [year]`, `?` for "no specific value" in one of the two day fields,
// day-of-week 1-7 = SUN-SAT (cron-parser: 0-6 = SUN-SAT), `L`, `W`, `#` in the day fields. The year field has no
// counterpart (kept only when it is `*`). `L`, `W` and `#` are kept only where cron-parser gives the same fire days as
// Quartz over the next years (checked here against a small Quartz day matcher), otherwise the row is reported.
import { CronExpressionParser } from 'cron-parser';

export type CronConversion = { cron: string; note?: string } | { problem: string };

const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
const DAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];

/** Quartz day-of-week number (1 = SUN) -> cron-parser's (0 = SUN); names are the same in both. */
function dowNumber(token: string): string {
  return /^\d+$/.test(token) ? String(Number(token) - 1) : token;
}

/** A Quartz day-of-week field in cron-parser's numbering: every number shifted, steps kept. */
export function convertDow(field: string): string {
  return field
    .split(',')
    .map((part) => {
      const [range, step] = part.split('/');
      const hash = /^(\w+)#(\d)$/.exec(range!);
      if (hash) return `${dowNumber(hash[1]!)}#${hash[2]}`;
      const last = /^(\w+)L$/.exec(range!);
      if (last) return `${dowNumber(last[1]!)}L`;
      const converted = range!.split('-').map(dowNumber).join('-');
      return step === undefined ? converted : `${converted}/${step}`;
    })
    .join(',');
}

/** The values a plain field (numbers, names, `*`, ranges, steps, lists) matches. */
function fieldSet(field: string, min: number, max: number, names: string[] = [], offset = 0): Set<number> | null {
  const out = new Set<number>();
  const num = (t: string): number => {
    const i = names.indexOf(t.toUpperCase());
    return i >= 0 ? i + offset : Number(t);
  };
  for (const part of field.split(',')) {
    const m = /^(\*|\?|\w+)(?:-(\w+))?(?:\/(\d+))?$/.exec(part);
    if (!m) return null;
    const from = m[1] === '*' || m[1] === '?' ? min : num(m[1]!);
    const to = m[2] !== undefined ? num(m[2]) : m[3] !== undefined || m[1] === '*' || m[1] === '?' ? max : from;
    const step = m[3] !== undefined ? Number(m[3]) : 1;
    if (![from, to, step].every(Number.isInteger) || step < 1) return null;
    for (let v = from; v <= to; v += step) out.add(v);
  }
  return out;
}

const daysIn = (y: number, m: number) => new Date(Date.UTC(y, m + 1, 0)).getUTCDate();
const weekday = (y: number, m: number, d: number) => new Date(Date.UTC(y, m, d)).getUTCDay();

/** The weekday nearest to `day` in the same month (Quartz `W`). */
function nearestWeekday(y: number, m: number, day: number): number {
  const last = daysIn(y, m);
  const d = Math.min(day, last);
  const wd = weekday(y, m, d);
  if (wd === 6) return d === 1 ? 3 : d - 1;
  if (wd === 0) return d === last ? d - 2 : d + 1;
  return d;
}

/** Does Quartz fire on this day (month index 0-11)? Day fields with L, W, #; null when a field is not understood. */
export function quartzDay(dom: string, dow: string, month: string, y: number, m: number, d: number): boolean | null {
  const months = fieldSet(month, 1, 12, MONTHS, 1);
  if (!months) return null;
  if (!months.has(m + 1)) return false;
  const last = daysIn(y, m);
  if (dom !== '?' && dom !== '*') {
    if (dom === 'L') return d === last;
    if (dom === 'LW') return d === nearestWeekday(y, m, last);
    const offset = /^L-(\d+)$/.exec(dom);
    if (offset) return d === last - Number(offset[1]);
    const w = /^(\d+)W$/.exec(dom);
    if (w) return d === nearestWeekday(y, m, Number(w[1]));
    return fieldSet(dom, 1, 31)?.has(d) ?? null;
  }
  if (dow === '?' || dow === '*') return true;
  const wd = weekday(y, m, d) + 1; // Quartz numbering
  const name = (t: string) => (/^\d+$/.test(t) ? Number(t) : DAYS.indexOf(t.toUpperCase()) + 1);
  const hash = /^(\w+)#(\d)$/.exec(dow);
  if (hash) return wd === name(hash[1]!) && Math.ceil(d / 7) === Number(hash[2]);
  const lastOf = /^(\w+)L$/.exec(dow);
  if (lastOf) return wd === name(lastOf[1]!) && d + 7 > last;
  return fieldSet(dow, 1, 7, DAYS, 1)?.has(wd) ?? null;
}

/** Does cron-parser fire on the same days as Quartz for the next 3 years (from a fixed date)? */
function sameDays(cron: string, q: { dom: string; dow: string; month: string }): boolean {
  const days = new Set<string>();
  try {
    const it = CronExpressionParser.parse(cron, { tz: 'UTC', currentDate: new Date(Date.UTC(2026, 0, 1)) });
    for (let i = 0; i < 5000 && it.hasNext(); i++) {
      const t = it.next().toDate();
      if (t.getUTCFullYear() >= 2029) break;
      days.add(t.toISOString().slice(0, 10));
    }
  } catch {
    return false;
  }
  for (let t = Date.UTC(2026, 0, 1); t < Date.UTC(2029, 0, 1); t += 86_400_000) {
    const date = new Date(t);
    const fires = quartzDay(q.dom, q.dow, q.month, date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate());
    if (fires === null || fires !== days.has(date.toISOString().slice(0, 10))) return false;
  }
  return true;
}

const converted = new Map<string, CronConversion>();

/** The conversion of one Quartz expression (remembered: an estate repeats a handful of expressions many times). */
export function quartzToCron(expression: string): CronConversion {
  let result = converted.get(expression);
  if (!result) converted.set(expression, (result = convert(expression)));
  return result;
}

function convert(expression: string): CronConversion {
  const fields = expression.trim().split(/\s+/);
  if (fields.length < 6 || fields.length > 7) {
    return { problem: `Quartz cron "${expression}" has ${fields.length} fields; Quartz needs 6 or 7 (sec min hour dom month dow [year])` };
  }
  const [sec, min, hour, dom, month, dow, year] = fields as [string, string, string, string, string, string, string?];
  if (year !== undefined && year !== '*' && year !== '?') {
    return {
      problem: `the year field "${year}" of "${expression}" has no counterpart in jobscope's cron; trigger it by hand or rewrite it`,
    };
  }
  if (dom !== '?' && dow !== '?') {
    return { problem: `"${expression}" sets both day-of-month and day-of-week; Quartz needs "?" in one of them` };
  }
  const cron = [sec, min, hour, dom === '?' ? '*' : dom, month, dow === '?' ? '*' : convertDow(dow)].join(' ');
  const special = /[LW#]/.test(dom + dow.replace(/[A-Za-z]{3}/g, ''));
  try {
    CronExpressionParser.parse(cron, { tz: 'UTC', strict: false });
  } catch (err) {
    return { problem: `"${expression}" (as "${cron}") is not accepted by jobscope's cron parser: ${(err as Error).message}` };
  }
  if (special && !sameDays(cron, { dom, dow, month })) {
    return { problem: `"${expression}": jobscope's cron parser does not fire on the same days as Quartz for ${dom !== '?' ? dom : dow}` };
  }
  return { cron };
}
