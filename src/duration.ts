// Durations in job files and the environment: '500ms', '30s', '2m', '1h', '1d', or plain milliseconds.
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Returns milliseconds, or null when the value is not a positive duration. */
export function parseDuration(value: unknown): number | null {
  if (typeof value === 'number') return Number.isFinite(value) && value > 0 ? Math.round(value) : null;
  if (typeof value !== 'string') return null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(value);
  if (!m) return null;
  const ms = Number(m[1]) * UNITS[m[2] ?? 'ms'];
  return ms > 0 ? Math.round(ms) : null;
}
