// The run history across jobs (GET /api/runs): runs of every job, newest first, filtered, a page at a time. Read-only over
// BullMQ's own structures and the run index (run-index.ts):
// - Finished runs are listed from BullMQ's per-job `completed` and `failed` sorted sets (score: finishedOn). Retention
//   (removeOnComplete/removeOnFail) removes runs from exactly those sets, so a removed run can never be listed from them.
// - Filters BullMQ cannot answer (outcome timeout/cancelled/..., trigger, triggered-by) read the index, brought up to date
//   first; each candidate it gives is checked against BullMQ's set.
// - Unfinished runs (active, waiting, delayed, prioritized, waiting for children) come from BullMQ's lists and sets.
// Every row is the read model's (run/model.ts), from the hash fields a row needs.
import type { Redis } from 'ioredis';
import type { RunOutcome, RunState } from '../interfaces.ts';
import type { Registry } from '../jobs/registry.ts';
import { hashOf, parseJson, parseRunId, ROW_FIELDS, rowOf, runIdOf, runOf, runRow, type RunRow } from '../run/model.ts';
import { FAILED_OUTCOMES, OUTCOMES } from '../run/outcome.ts';
import { RUN_FIELDS, UNFINISHED_PLACES, type RedisKeys } from '../run/redis-keys.ts';
import { bound, FINISHED, indexPart, type Finished, type RunIndex } from './run-index.ts';

export const UNFINISHED_STATES = ['active', 'waiting', 'prioritized', 'delayed', 'waiting-children'];
/** Unfinished runs listed per job and state: the newest this many (a backlog deeper than that is in Bull Board). */
export const UNFINISHED_CAP = 200;
/** A query looks at no more candidates than this; past it, it answers what it found and a cursor to go on. */
const MAX_SCAN = 20_000;
export const MAX_LIMIT = 200;

export interface RunQuery {
  jobs?: string[];
  /** Outcomes (completed, failed, timeout, cancelled, skipped, misfire) and unfinished states; 'finished', 'unfinished'. */
  states?: string[];
  triggers?: string[];
  /** Exactly who triggered: 'user:<login>', 'cli:<user>', 'client', 'schedule', or 'run:<parent run id>'. */
  by?: string;
  /** Epoch ms: a finished run's finish time, an unfinished run's creation time. */
  from?: number;
  to?: number;
  cursor?: string;
  limit?: number;
}

export interface RunPage {
  runs: RunRow[];
  /** Pass as `cursor` for the next page; null at the end. */
  next: string | null;
}

export class RunQueryError extends Error {
  readonly code = 'ERR_RUN_QUERY';
  readonly status = 400;
  constructor(message: string) {
    super(message);
    this.name = 'RunQueryError';
  }
}

/** The position of a row in the listing: unfinished runs first (rank 1, by creation), then finished ones (by finish). */
interface Key {
  rank: 0 | 1;
  t: number;
  id: string;
}

/** > 0 when `a` is listed before `b`. */
function compare(a: Key, b: Key): number {
  return a.rank - b.rank || a.t - b.t || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export function encodeCursor(k: Key): string {
  return Buffer.from(JSON.stringify([k.rank, k.t, k.id])).toString('base64url');
}

export function decodeCursor(cursor: string): Key {
  const raw = parseJson<unknown>(Buffer.from(cursor, 'base64url').toString());
  if (!Array.isArray(raw) || (raw[0] !== 0 && raw[0] !== 1) || typeof raw[1] !== 'number' || typeof raw[2] !== 'string') {
    throw new RunQueryError('cursor: not a cursor this server handed out');
  }
  return { rank: raw[0], t: raw[1], id: raw[2] };
}

// Many small reads of many sets in one command: a query over 100 jobs touches hundreds of sets, and one command per set

interface Candidate {
  job: string;
  state: Finished;
  id: string;
  score: number;
  /** The index set it came from (null: BullMQ's own set, nothing to check). */
  index: string | null;
}

interface Source {
  job: string;
  state: Finished;
  key: string;
  index: boolean;
}

/** What a merge of the sources needs to know of the query. */
interface MergeOptions {
  from: number;
  to: number;
  bound: Key | null;
  limit: number;
  rows: RunRow[];
  outcomes: RunOutcome[];
  matches: (row: RunRow) => boolean;
}

/** One source of a merge, read a chunk at a time. */
interface SourceRead {
  source: Source;
  buf: Candidate[];
  /** Where the next read starts (exclusive): the last entry read, or the query's cursor. */
  after: Key | null;
  done: boolean;
  chunk: number;
}

const keyOf = (c: Candidate): Key => ({ rank: 0, t: c.score, id: runIdOf(c.job, c.id) });

export class RunHistory {
  private readonly redis: Redis;
  private readonly keys: RedisKeys;
  private readonly registry: Registry;
  private readonly index: RunIndex;

  constructor(redis: Redis, keys: RedisKeys, registry: Registry, index: RunIndex) {
    this.redis = redis;
    this.keys = keys;
    this.registry = registry;
    this.index = index;
  }

  /** Runs across jobs, newest first (unfinished ones on top), filtered, one page at a time. */
  async query(q: RunQuery): Promise<RunPage> {
    const limit = Math.min(MAX_LIMIT, Math.max(1, Math.floor(q.limit ?? 50)));
    const jobs = q.jobs?.length ? q.jobs : this.registry.names;
    for (const job of jobs) if (!this.registry.has(job)) throw new RunQueryError(`job: no job named "${job}"`);
    const states = new Set(q.states ?? []);
    for (const s of states) {
      if (!OUTCOMES.includes(s as RunOutcome) && !UNFINISHED_STATES.includes(s) && s !== 'finished' && s !== 'unfinished') {
        throw new RunQueryError(`state: "${s}" is not one of ${[...OUTCOMES, ...UNFINISHED_STATES, 'finished', 'unfinished'].join(', ')}`);
      }
    }
    const all = states.size === 0;
    const outcomes = OUTCOMES.filter((o) => all || states.has('finished') || states.has(o));
    const unfinished = UNFINISHED_STATES.filter((s) => all || states.has('unfinished') || states.has(s));
    const from = q.from ?? -Infinity;
    const to = q.to ?? Infinity;
    const cursor = q.cursor ? decodeCursor(q.cursor) : null;
    const matches = (row: RunRow) =>
      (!q.triggers?.length || q.triggers.includes(row.trigger)) && (q.by === undefined || row.triggeredBy === q.by);

    if (q.by?.startsWith('run:')) return this.childrenOf(q.by.slice(4), { jobs, outcomes, unfinished, from, to, cursor, limit, matches });

    const rows: RunRow[] = [];
    if (unfinished.length && (!cursor || cursor.rank === 1)) {
      for (const row of await this.unfinished(jobs, unfinished)) {
        const t = Date.parse(row.createdAt ?? '') || 0;
        if (t < from || t > to || !matches(row)) continue;
        if (cursor && compare({ rank: 1, t, id: row.runId }, cursor) >= 0) continue;
        rows.push(row);
        if (rows.length === limit) return { runs: rows, next: encodeCursor({ rank: 1, t, id: row.runId }) };
      }
    }
    if (!outcomes.length) return { runs: rows, next: null };
    // The index is brought up to date only for the queries that read it (BullMQ's own sets are always current).
    if (this.needsIndex(outcomes, q)) await this.index.sync();
    const sources = await this.sources(jobs, outcomes, q, from, to);
    const bound = cursor?.rank === 0 ? cursor : null;
    return this.merge(sources, { from, to, bound, limit, rows, outcomes, matches });
  }

  private needsIndex(outcomes: RunOutcome[], q: RunQuery): boolean {
    const failed = FAILED_OUTCOMES.filter((o) => outcomes.includes(o)).length;
    return Boolean(q.triggers?.length || q.by !== undefined || (failed > 0 && failed < FAILED_OUTCOMES.length));
  }

  /** Picks the smallest way in: BullMQ's finished sets, or the index sets of one filtered attribute. */
  private async sources(jobs: string[], outcomes: RunOutcome[], q: RunQuery, from: number, to: number): Promise<Source[]> {
    const states = FINISHED.filter((s) => (s === 'completed' ? outcomes.includes('completed') : outcomes.some((o) => o !== 'completed')));
    const options: Source[][] = [
      jobs.flatMap((job) => states.map((state) => ({ job, state, key: this.keys.finished(job, state), index: false }))),
    ];
    const failedWanted = FAILED_OUTCOMES.filter((o) => outcomes.includes(o));
    if (failedWanted.length && failedWanted.length < FAILED_OUTCOMES.length) {
      options.push(
        jobs.flatMap((job) => [
          ...(outcomes.includes('completed')
            ? [{ job, state: 'completed' as const, key: this.keys.finished(job, 'completed'), index: false }]
            : []),
          ...failedWanted.map((o) => ({
            job,
            state: 'failed' as const,
            key: this.keys.runIndex(job, 'failed', 'outcome', o),
            index: true,
          })),
        ]),
      );
    }
    const byAttr = (attr: string, values: string[]) =>
      jobs.flatMap((job) =>
        states.flatMap((state) =>
          values.map((v) => ({ job, state, key: this.keys.runIndex(job, state, attr, indexPart(v)), index: true })),
        ),
      );
    if (q.triggers?.length) options.push(byAttr('trigger', q.triggers));
    if (q.by !== undefined) options.push(byAttr('by', [q.by]));
    if (options.length === 1) return options[0];
    const counts = await this.index.many<number>(
      'count',
      options.flatMap((option) => option.map((s) => s.key)),
      [bound(from), bound(to)],
    );
    let k = 0;
    const sizes = options.map((option) => option.reduce((sum) => sum + Number(counts[k++] ?? 0), 0));
    return options[sizes.indexOf(Math.min(...sizes))];
  }

  /**
   * A k-way merge of the sources, newest first: each source is read a chunk at a time (its chunk doubling each time it is
   * read again), and a candidate is taken only while every source that may hold more has entries buffered, so nothing
  /**
   * A k-way merge of the sources, newest first: each source is read a chunk at a time (its chunk doubling each time it is
   * read again), and a candidate is taken only while every source that may hold more has entries buffered, so nothing
   * unread can come before it. Candidates are checked and filtered in batches until the page is full.
   */
  private async merge(sources: Source[], o: MergeOptions): Promise<RunPage> {
    const { rows, limit } = o;
    const reads: SourceRead[] = sources.map((source) => ({
      source,
      buf: [],
      after: o.bound,
      done: false,
      chunk: Math.min(limit, Math.max(5, Math.ceil((limit * 2) / sources.length))),
    }));
    await this.refill(reads, o);
    let scanned = 0;
    for (;;) {
      // Take candidates in order while it is safe; stop to refill a source that ran dry but may have more.
      const batch: Candidate[] = [];
      const want = Math.max(20, (limit - rows.length) * 2);
      let dry: SourceRead[] = [];
      while (batch.length < want) {
        dry = reads.filter((r) => !r.buf.length && !r.done);
        if (dry.length) break;
        let best: SourceRead | undefined;
        for (const r of reads) if (r.buf.length && (!best || compare(keyOf(r.buf[0]), keyOf(best.buf[0])) > 0)) best = r;
        if (!best) break;
        batch.push(best.buf.shift()!);
      }
      if (batch.length) {
        const checked = await this.check(batch);
        for (let j = 0; j < batch.length; j++) {
          const row = checked[j];
          if (row && o.outcomes.includes(row.outcome as RunOutcome) && o.matches(row)) {
            rows.push(row);
            if (rows.length === limit) return { runs: rows, next: encodeCursor(keyOf(batch[j])) };
          }
        }
        scanned += batch.length;
        if (scanned >= MAX_SCAN) return { runs: rows, next: encodeCursor(keyOf(batch[batch.length - 1])) };
      }
      if (dry.length) await this.refill(dry, o);
      else if (!batch.length) return { runs: rows, next: null };
    }
  }

  /** Reads the next chunk of each source in `list` (one MANY call), after where it stopped. */
  private async refill(list: SourceRead[], o: MergeOptions): Promise<void> {
    const answers = await this.index.many<[string[], string[]]>(
      'read',
      list.map((r) => r.source.key),
      [bound(o.from), bound(o.to)],
      (i) => [list[i].after ? String(list[i].after!.t) : '', list[i].chunk],
    );
    list.forEach((r, i) => {
      const [ties, rest] = answers[i];
      const take = (flat: string[], tie: boolean) => {
        for (let j = 0; j < flat.length; j += 2) {
          const c: Candidate = {
            job: r.source.job,
            state: r.source.state,
            id: flat[j],
            score: Number(flat[j + 1]),
            index: r.source.index ? r.source.key : null,
          };
          if (tie && !(runIdOf(c.job, c.id) < r.after!.id)) continue;
          r.buf.push(c);
        }
      };
      take(ties, true);
      take(rest, false);
      r.done = rest.length / 2 < r.chunk;
      const last = r.buf[r.buf.length - 1];
      if (last) r.after = keyOf(last);
      r.chunk = Math.min(r.chunk * 2, 1000);
    });
  }

  /** Reads the candidates' rows; an index entry whose run left BullMQ's set (removed, retried) is dropped from the index. */
  private async check(batch: Candidate[]): Promise<(RunRow | null)[]> {
    const read = this.redis.pipeline();
    for (const c of batch) {
      read.hmget(this.keys.bullJob(c.job, c.id), ...ROW_FIELDS);
      if (c.index) read.zscore(this.keys.finished(c.job, c.state), c.id);
    }
    const answers = (await read.exec()) ?? [];
    const stale = this.redis.pipeline();
    let k = 0;
    const rows = batch.map((c) => {
      const [, values] = answers[k++] as [Error | null, (string | null)[]];
      let inSet = true;
      if (c.index) {
        const [, score] = answers[k++] as [Error | null, string | null];
        inSet = score !== null && Number(score) === c.score;
        if (score === null) stale.zrem(c.index, c.id);
      }
      return inSet && values ? rowOf(c.job, c.id, c.state, values) : null;
    });
    if (stale.length) await stale.exec();
    return rows;
  }

  /** The newest unfinished runs of the jobs (UNFINISHED_CAP per job and state), newest created first. */
  private async unfinished(jobs: string[], states: string[]): Promise<RunRow[]> {
    const places = jobs.flatMap((job) => UNFINISHED_PLACES.filter((u) => states.includes(u.state)).map((u) => ({ job, ...u })));
    const answers = await this.index.many<string[]>(
      'newest',
      places.map((p) => this.keys.unfinished(p.job, p.suffix)),
      [UNFINISHED_CAP],
    );
    const found = new Map<string, { job: string; id: string; state: RunState }>();
    places.forEach((p, i) => {
      const ids = answers[i] ?? [];
      for (const id of ids) if (!found.has(runIdOf(p.job, id))) found.set(runIdOf(p.job, id), { job: p.job, id, state: p.state });
    });
    const list = [...found.values()];
    const hashes = this.redis.pipeline();
    for (const f of list) hashes.hmget(this.keys.bullJob(f.job, f.id), ...ROW_FIELDS);
    const values = list.length ? ((await hashes.exec()) ?? []) : [];
    return list
      .map((f, i) => rowOf(f.job, f.id, f.state, ((values[i] as [Error | null, (string | null)[]])[1] ?? []) as (string | null)[]))
      .filter((r): r is RunRow => r !== null)
      .sort((a, b) => compare(this.unfinishedKey(b), this.unfinishedKey(a)));
  }

  private unfinishedKey(row: RunRow): Key {
    return { rank: 1, t: Date.parse(row.createdAt ?? '') || 0, id: row.runId };
  }

  /** by=run:<id>: the runs that run started (its children list), filtered and paged in memory. */
  private async childrenOf(
    parent: string,
    o: {
      jobs: string[];
      outcomes: RunOutcome[];
      unfinished: string[];
      from: number;
      to: number;
      cursor: Key | null;
      limit: number;
      matches: (row: RunRow) => boolean;
    },
  ): Promise<RunPage> {
    if (parent.indexOf(':') < 1) return { runs: [], next: null };
    const { job: parentJob, id: parentId } = parseRunId(parent);
    const raw = await this.redis.hget(this.keys.bullJob(parentJob, parentId), RUN_FIELDS.children);
    const children = (parseJson<string[]>(raw) ?? []).map(parseRunId).filter((c) => o.jobs.includes(c.job));
    const read = this.redis.pipeline();
    for (const { job, id } of children) {
      read.hmget(this.keys.bullJob(job, id), ...ROW_FIELDS);
      for (const state of FINISHED) read.zscore(this.keys.finished(job, state), id);
    }
    const answers = children.length ? ((await read.exec()) ?? []) : [];
    const keyed: { key: Key; row: RunRow }[] = [];
    children.forEach(({ job, id }, i) => {
      const hash = hashOf(ROW_FIELDS, (answers[3 * i] as [Error | null, (string | null)[]])[1]);
      const done = FINISHED.find((_, j) => (answers[3 * i + 1 + j] as [Error | null, string | null])[1] !== null);
      if (!hash) return;
      const state: RunState = done ?? (hash.processedOn && !hash.finishedOn ? 'active' : 'waiting');
      const run = runOf(job, id, state, hash);
      const row = runRow(run);
      if (!o.matches(row)) return;
      const finished = done !== undefined;
      if (finished ? !o.outcomes.includes(row.outcome as RunOutcome) : !o.unfinished.includes(state)) return;
      const t = finished ? (run.finishedAt ?? 0) : (run.createdAt ?? 0);
      if (t < o.from || t > o.to) return;
      const key: Key = { rank: finished ? 0 : 1, t, id: row.runId };
      if (o.cursor && compare(key, o.cursor) >= 0) return;
      keyed.push({ key, row });
    });
    keyed.sort((a, b) => compare(b.key, a.key));
    const page = keyed.slice(0, o.limit);
    return { runs: page.map((k) => k.row), next: keyed.length > o.limit ? encodeCursor(page[page.length - 1].key) : null };
  }
}
