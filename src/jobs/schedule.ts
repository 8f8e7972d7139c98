// Schedules: validation, the BullMQ job-scheduler options they become, and a preview of the next fire times.
import { CronExpressionParser } from 'cron-parser';
import { parseDuration } from '../duration.ts';
import type { Schedule } from '../interfaces.ts';

/** Returns a problem description, or null when the cron expression and time zone are usable. */
export function cronProblem(cron: string, tz?: string): string | null {
  const fields = cron.trim().split(/\s+/).length;
  if (fields < 5 || fields > 6) return `"${cron}" has ${fields} fields; use 5 (min hour dom mon dow) or 6 (sec min hour dom mon dow)`;
  if (tz !== undefined) {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: tz });
    } catch {
      return `"${tz}" is not an IANA time zone (example: Asia/Shanghai)`;
    }
  }
  try {
    CronExpressionParser.parse(cron, { tz, strict: false });
  } catch (err) {
    return `"${cron}" is not a valid cron expression (${(err as Error).message})`;
  }
  return null;
}

export function everyMs(schedule: Schedule): number | null {
  return 'every' in schedule ? parseDuration(schedule.every) : null;
}

/** The repeat options for `queue.upsertJobScheduler`. */
export function schedulerRepeat(schedule: Schedule): { pattern: string; tz?: string } | { every: number } {
  if ('cron' in schedule) return schedule.tz ? { pattern: schedule.cron, tz: schedule.tz } : { pattern: schedule.cron };
  return { every: everyMs(schedule)! };
}

/** Next fire times after `from`. For `every`, BullMQ aligns to the scheduler's start, so pass `anchorMs` when known. */
export function nextRuns(schedule: Schedule, count: number, from = new Date(), anchorMs?: number): Date[] {
  if ('cron' in schedule) {
    const it = CronExpressionParser.parse(schedule.cron, { tz: schedule.tz, currentDate: from });
    return it.take(count).map((d) => d.toDate());
  }
  const every = everyMs(schedule)!;
  const anchor = anchorMs ?? Math.ceil(from.getTime() / every) * every;
  let next = anchor;
  if (next <= from.getTime()) next += Math.ceil((from.getTime() - next + 1) / every) * every;
  return Array.from({ length: count }, (_, i) => new Date(next + i * every));
}

/** "every 30s" / "cron 0 *\/5 * * * * (Asia/Shanghai)": a short human description. */
export function describeSchedule(schedule: Schedule | undefined): string {
  if (!schedule) return 'manual';
  if ('cron' in schedule) return `cron ${schedule.cron}${schedule.tz ? ` (${schedule.tz})` : ''}`;
  return `every ${typeof schedule.every === 'number' ? `${schedule.every}ms` : schedule.every}`;
}
