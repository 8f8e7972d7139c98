// An independent reference of Quartz cron semantics (org.quartz.CronExpression, what xxl-job fires by), written for the
// tests from the Quartz documentation and not sharing code with the importer's converter: it walks the calendar day by
// day in a fixed-offset zone and lists the fire times of the day's hours, minutes and seconds.
//   sec min hour day-of-month month day-of-week [year]; day-of-week 1-7 = SUN-SAT; `?` no specific value;
//   L (last day / last <weekday> of the month), L-n, nW (nearest weekday), LW, n#k (k-th <weekday> of the month).

const MONTH_NAMES = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
const DAY_NAMES = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];

function valueOf(token: string, names: string[], base: number): number {
  const i = names.indexOf(token.toUpperCase());
  return i >= 0 ? i + base : parseInt(token, 10);
}

/** All values of a plain Quartz field between lo and hi. */
function expand(field: string, lo: number, hi: number, names: string[] = [], base = 0): number[] {
  if (field === '*' || field === '?') return range(lo, hi, 1);
  const out: number[] = [];
  for (const item of field.split(',')) {
    const [head, stepText] = item.split('/');
    const step = stepText ? parseInt(stepText, 10) : 1;
    let start: number;
    let end: number;
    if (head === '*') [start, end] = [lo, hi];
    else if (head!.includes('-')) {
      const [a, b] = head!.split('-');
      [start, end] = [valueOf(a!, names, base), valueOf(b!, names, base)];
    } else {
      start = valueOf(head!, names, base);
      end = stepText ? hi : start;
    }
    out.push(...range(start, end, step));
  }
  return [...new Set(out)].sort((a, b) => a - b);
}

function range(a: number, b: number, step: number): number[] {
  const r: number[] = [];
  for (let v = a; v <= b; v += step) r.push(v);
  return r;
}

function lastDayOf(year: number, month: number): number {
  return [31, year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]!;
}

/** Day of week, Quartz numbering (1 = Sunday), by Zeller-free counting from 1970-01-01 (a Thursday, 5). */
function quartzWeekday(year: number, month: number, day: number): number {
  const days = Math.floor(Date.UTC(year, month - 1, day) / 86_400_000);
  return ((((days + 4) % 7) + 7) % 7) + 1;
}

function weekdayNear(year: number, month: number, target: number): number {
  const last = lastDayOf(year, month);
  const d = Math.min(target, last);
  const wd = quartzWeekday(year, month, d);
  if (wd === 7) return d > 1 ? d - 1 : d + 2; // Saturday: Friday before, or Monday after the 1st
  if (wd === 1) return d < last ? d + 1 : d - 2; // Sunday: Monday after, or Friday before the last day
  return d;
}

function dayMatches(dom: string, dow: string, year: number, month: number, day: number): boolean {
  const last = lastDayOf(year, month);
  if (dow === '?') {
    if (dom === 'L') return day === last;
    if (dom === 'LW') return day === weekdayNear(year, month, last);
    if (dom.startsWith('L-')) return day === last - parseInt(dom.slice(2), 10);
    if (dom.endsWith('W')) return day === weekdayNear(year, month, parseInt(dom, 10));
    return expand(dom, 1, 31).includes(day);
  }
  const wd = quartzWeekday(year, month, day);
  if (dow.includes('#')) {
    const [d, nth] = dow.split('#');
    return wd === valueOf(d!, DAY_NAMES, 1) && Math.floor((day - 1) / 7) + 1 === parseInt(nth!, 10);
  }
  if (dow.endsWith('L') && dow.length > 1) return wd === valueOf(dow.slice(0, -1), DAY_NAMES, 1) && day > last - 7;
  return expand(dow, 1, 7, DAY_NAMES, 1).includes(wd);
}

/** The next `count` fire times after `from` of a Quartz expression in a zone `offsetHours` ahead of UTC. */
export function quartzNext(expression: string, offsetHours: number, from: Date, count: number): Date[] {
  const [s, mi, h, dom, mon, dow, year = '*'] = expression.trim().split(/\s+/) as string[];
  const secs = expand(s!, 0, 59);
  const mins = expand(mi!, 0, 59);
  const hours = expand(h!, 0, 23);
  const months = expand(mon!, 1, 12, MONTH_NAMES, 1);
  const years = year === '*' ? null : expand(year, 1970, 2199);
  const out: Date[] = [];
  const offsetMs = offsetHours * 3_600_000;
  const local = new Date(from.getTime() + offsetMs);
  for (let t = Date.UTC(local.getUTCFullYear(), local.getUTCMonth(), local.getUTCDate()); out.length < count; t += 86_400_000) {
    const d = new Date(t);
    const [y, m, day] = [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate()];
    if (y > 2199) break;
    if (years && !years.includes(y)) continue;
    if (!months.includes(m) || !dayMatches(dom!, dow!, y, m, day)) continue;
    for (const hh of hours)
      for (const mm of mins)
        for (const ss of secs) {
          const at = new Date(t + ((hh * 60 + mm) * 60 + ss) * 1000 - offsetMs);
          if (at > from && out.length < count) out.push(at);
        }
  }
  return out;
}
