// Is this process's Redis usable, and if not why: the one verdict the runner's GET /readyz and an embedded worker's
// status() give.
import type { RedisErrorLog, RedisState } from './connect.ts';

/** What is asked: the process's Redis error log, and a PING on its main connection (the control plane has both). */
export interface RedisProbe {
  readonly redisLog?: RedisErrorLog;
  redisUp(timeoutMs?: number): Promise<boolean>;
}

export interface RedisReadiness {
  /** The error log's state; `up` is false as well when the PING got no answer in time. */
  state: RedisState;
  /** Why Redis is not usable, in a sentence (undefined when it is). */
  reason?: string;
}

/**
 * Down while the process's Redis log says lost (one connection answering is not enough) or when a PING gets no answer
 * within `timeoutMs`.
 */
export async function redisReadiness(probe: RedisProbe, timeoutMs = 1000): Promise<RedisReadiness> {
  const state = probe.redisLog?.state() ?? { up: true };
  if (!state.up) {
    let reason = `Redis unreachable for ${Math.round((state.downMs ?? 0) / 1000)} s (${state.reconnectAttempts ?? 0} reconnect attempts)`;
    if (state.reason) reason += `: ${state.reason}`;
    return { state, reason };
  }
  if (!(await probe.redisUp(timeoutMs))) {
    const reason = `Redis did not answer a PING within ${timeoutMs / 1000} s${state.reason ? `: ${state.reason}` : ''}`;
    return { state: { ...state, up: false, reason: state.reason ?? `no answer to a PING within ${timeoutMs / 1000} s` }, reason };
  }
  return { state };
}
