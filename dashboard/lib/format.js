// Times, durations and retention as text for people.

/** The browser's time zone (what `when` shows). */
export const LOCAL_TZ = Intl.DateTimeFormat().resolvedOptions().timeZone;

/** "in 5m", "3h ago": how far a time is from now. */
function fromNow(secs) {
  const abs = Math.abs(secs);
  const rel =
    abs < 60
      ? `${abs}s`
      : abs < 3600
        ? `${Math.round(abs / 60)}m`
        : abs < 86400
          ? `${Math.round(abs / 3600)}h`
          : `${Math.round(abs / 86400)}d`;
  return `${secs >= 0 ? 'in ' : ''}${rel}${secs < 0 ? ' ago' : ''}`;
}

/** A time in the browser's zone, and how far from now it is. */
export function when(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  const secs = Math.round((d.getTime() - Date.now()) / 1000);
  if (Math.abs(secs) < 2) return `${d.toLocaleString()} (just now)`;
  return `${d.toLocaleString()} (${fromNow(secs)})`;
}

/** 1.23 s, 4m 05s, 2h 10m: a duration for people. */
export function dur(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)}m ${String(Math.round((ms % 60_000) / 1000)).padStart(2, '0')}s`;
  if (ms < 86_400_000) return `${Math.floor(ms / 3_600_000)}h ${String(Math.round((ms % 3_600_000) / 60_000)).padStart(2, '0')}m`;
  const hours = Math.round((ms % 86_400_000) / 3_600_000);
  return `${Math.floor(ms / 86_400_000)}d${hours ? ` ${hours}h` : ''}`;
}

/** A time in a given zone: "2026-12-03 02:30:00 Asia/Shanghai". */
export function inZone(iso, tz) {
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone: tz,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  }).formatToParts(new Date(iso));
  const v = (t) => parts.find((p) => p.type === t)?.value ?? '';
  return `${v('year')}-${v('month')}-${v('day')} ${v('hour')}:${v('minute')}:${v('second')} ${tz}`;
}

/** datetime-local value <-> ISO (the browser's time zone). */
export function localValue(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
}

/** What Redis keeps of a job's runs. */
export function keepText(retention) {
  const rule = (r) =>
    [r.count !== undefined ? `${r.count} runs` : null, r.age !== undefined ? `${dur(r.age * 1000)}` : null].filter(Boolean).join(', ') ||
    'all';
  return `completed: ${rule(retention.completed)} · failed: ${rule(retention.failed)} · ${retention.logs} log lines per run`;
}

/** A job's run limits: "attempts 3 · concurrency 1 · overlap skip". */
export function limitsText(job) {
  return `attempts ${job.attempts} · concurrency ${job.concurrency} · overlap ${job.overlap}`;
}
