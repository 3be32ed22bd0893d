// The SQLite uplink append (seq check, records, latest state) over flat rows, run in-process or in a worker thread.
import type Database from 'better-sqlite3';
import { mergeTelemetry, type RecordData } from '../protocol/record.js';
import { INSERT_LOG_SQL, LogBuilder } from './sqlite-log.js';
import {
  INDEXED_UPTO_KEY,
  PendingIndex,
  UplinkRowReader,
  rowData,
  type PendingIndexOptions,
} from './sqlite-index.js';

/** One consumed seq, flattened for a cheap hand-off to a worker: 7 slots per row. */
export const ROW_STRIDE = 7;
// vehicleId, seq, kind (0 telemetry, 1 event, -1 hole), timestamp, receivedAt, traceparent (text,
// or packed: the tracer's ids, see packTraceparent) | null, data: the record's TLVs, or its JSON, or
// null for a hole
export type FlatRows = (string | number | Uint8Array | null)[];

/** Vehicles not written, as [vehicleId, storedLastSeq, …]. */
export type FlatFailures = (string | number)[];

/** Uplink rows of a hole: the seq was consumed (REJECTED / FORBIDDEN) but nothing is listed. */
export const HOLE = -1;

const SEQ_CACHE_MAX = 200_000;

/**
 * Vehicles whose runs one index transaction writes at most (a synchronous transaction on the event
 * loop: some 3–6 µs per run, so up to ~6 ms); an index write of more vehicles goes in slices, one
 * per turn of the event loop.
 */
export const INDEX_RUNS_PER_WRITE = 1_024;

/**
 * Records a short run may wait above the mark in-process (PendingIndexOptions.holdRows): at 10,000
 * vehicles × 1 msg/s runs of ~13 records instead of 2; a reload after a crash reads them back from
 * the log.
 */
export const INDEX_HOLD_ROWS = 131_072;

/** Checkpoints written per maintenance tick at most (the rest wait for the next tick). */
export const CHECKPOINTS_PER_TICK = 2_000;

/**
 * Checkpoints one transaction writes at most: 11–15 µs each (JSON of the latest state and an
 * upsert; measured at 10,000 vehicles on a slow day, up to 60 µs for a slice that waits on the
 * disk), so one slice holds the event loop for 2–12 ms.
 */
export const CHECKPOINTS_PER_WRITE = 200;

/** How often the index and the per-vehicle checkpoints (last seq, latest) are written. */
const TICK_MS = 2_000;

/** A vehicle's uplink position and merged latest telemetry. */
export interface VehicleState {
  lastSeq: number;
  latest: Record<string, unknown>;
}

/**
 * Reads a vehicle's state: the checkpoint in `vehicles` (last_seq, latest, latest_seq) plus every
 * uplink row after it. The checkpoint is only moved forward now and then (not on every commit), so
 * the rows after it are the truth the checkpoint has not caught up with yet.
 */
export class VehicleStateReader {
  private readonly checkpoint: Database.Statement;
  readonly rows: UplinkRowReader;

  /** `pending`: the appender's unindexed entries on this connection (null: another connection). */
  constructor(db: Database.Database, pending: PendingIndex | null) {
    this.checkpoint = db.prepare('SELECT last_seq, latest, latest_seq FROM vehicles WHERE id = ?');
    this.rows = new UplinkRowReader(db, pending);
  }

  read(vehicleId: string): VehicleState {
    const cp = this.checkpoint.get(vehicleId) as
      { last_seq: number; latest: string; latest_seq: number } | undefined;
    return this.fold(vehicleId, cp?.last_seq ?? 0, cp?.latest ?? '{}', cp?.latest_seq ?? 0);
  }

  /** The state from a checkpoint row the caller already read. */
  fold(vehicleId: string, lastSeq: number, latestJson: string, latestSeq: number): VehicleState {
    const latest = JSON.parse(latestJson) as Record<string, unknown>;
    let last = Math.max(lastSeq, latestSeq);
    for (const r of this.rows.rows(vehicleId, latestSeq, HOLE, -1)) {
      if (r.seq > last) last = r.seq;
      if (r.kind === 0 && r.data !== null) Object.assign(latest, rowData(0, r.data));
    }
    return { lastSeq: last, latest };
  }
}

/** A vehicle the running transaction wrote: its cached state and its rows [from, to) of the batch. */
interface Appended {
  id: string;
  st: CachedState;
  from: number;
  to: number;
}

/** A class, not a literal: one shape for every vehicle keeps the per-commit loads monomorphic. */
class CachedState implements VehicleState {
  lastSeq: number;
  latest: Record<string, unknown>;
  /** The vehicle's integer key in `vehicle_keys` (what uplink rows and their index hold). */
  readonly key: number;
  /** The checkpoint is behind this state: written at the next flush. */
  dirty = false;

  constructor(state: VehicleState, key: number) {
    this.lastSeq = state.lastSeq;
    this.latest = state.latest;
    this.key = key;
  }
}

/**
 * Appends uplink rows in one transaction: for each vehicle (rows grouped by vehicle, seqs ascending)
 * the first seq must follow its last consumed seq; its records (and holes) go into the commit's log
 * row (sqlite-log.ts), and into runs every few seconds. Nothing else is written per commit: the per-vehicle state (last seq, latest) lives in a cache and reaches the
 * `vehicles` checkpoint in tick(), every few seconds. After a crash the rows after the checkpoint
 * rebuild it exactly (VehicleStateReader).
 */
export class UplinkAppender {
  private readonly cache = new Map<string, CachedState>();
  private readonly dirty = new Set<string>();
  /** Index entries of the rows not yet written as runs (see sqlite-index.ts). */
  readonly pending: PendingIndex;
  private readonly reader: VehicleStateReader;
  /** The running commit's log row (sqlite-log.ts). */
  private readonly log = new LogBuilder();
  private readonly insertLog: Database.Statement;
  /** The position the next record gets (sqlite-log.ts). */
  private nextPos: number;
  private readonly selectKey: Database.Statement;
  private readonly insertKey: Database.Statement;
  private readonly writeCheckpoint: Database.Statement;
  private readonly tx: Database.Transaction<(rows: FlatRows) => Appended[]>;
  private readonly indexTx: Database.Transaction<(max: number, everyone: boolean) => number[]>;
  private readonly checkpointTx: Database.Transaction<(ids: string[]) => void>;
  private failures: FlatFailures = [];
  /** The periodic tick while started. */
  private timer: NodeJS.Timeout | undefined;
  /** A size-triggered index round queued for the next turn; an index or checkpoint round in slices. */
  private indexWriteQueued = false;
  private indexing = false;
  private checkpointing = false;
  private stopped = false;

  /** The connection's synchronous level when it flushes every commit (FULL, EXTRA), else 0. */
  private readonly flushLevel: number;

  /** `options`: how the index entries wait (PendingIndexOptions; in-process only). */
  constructor(
    private readonly db: Database.Database,
    options: PendingIndexOptions = {},
  ) {
    const level = db.pragma('synchronous', { simple: true }) as number;
    this.flushLevel = level >= 2 ? level : 0;
    this.pending = new PendingIndex(db, options);
    this.reader = new VehicleStateReader(db, this.pending);
    this.insertLog = db.prepare(INSERT_LOG_SQL);
    this.nextPos = this.firstFreePosition();
    this.selectKey = db.prepare('SELECT key FROM vehicle_keys WHERE id = ?').pluck();
    this.insertKey = db.prepare('INSERT INTO vehicle_keys (id) VALUES (?)');
    // markSeen and createCommand may have created the row; a checkpoint only ever moves forward.
    this.writeCheckpoint = db.prepare(
      `INSERT INTO vehicles (id, last_seq, latest, latest_seq) VALUES (?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET last_seq = excluded.last_seq, latest = excluded.latest, latest_seq = excluded.latest_seq
       WHERE excluded.latest_seq > vehicles.latest_seq`,
    );
    this.tx = db.transaction((rows: FlatRows) => this.run(rows));
    this.indexTx = db.transaction((max: number, everyone: boolean) =>
      this.pending.write(max, everyone),
    );
    this.checkpointTx = db.transaction((ids: string[]) => {
      for (const id of ids) {
        const st = this.cache.get(id);
        if (st === undefined || !st.dirty) continue;
        this.writeCheckpoint.run(id, st.lastSeq, JSON.stringify(st.latest), st.lastSeq);
      }
    });
  }

  /**
   * A vehicle's cached state, read (and its key created) on a miss. Runs inside the append
   * transaction: if that rolls back, append() drops the cache, since a key created here is gone.
   */
  private state(vehicleId: string): CachedState {
    let st = this.cache.get(vehicleId);
    if (st === undefined) {
      // Bounded. Entries not yet checkpointed are flushed first (a miss rebuilds from rows anyway).
      if (this.cache.size >= SEQ_CACHE_MAX) this.flush(true);
      const key =
        (this.selectKey.get(vehicleId) as number | undefined) ??
        Number(this.insertKey.run(vehicleId).lastInsertRowid);
      st = new CachedState(this.reader.read(vehicleId), key);
      this.cache.set(vehicleId, st);
    }
    return st;
  }

  private run(rows: FlatRows): Appended[] {
    const updates: Appended[] = [];
    this.failures = [];
    // The rows that passed the seq check: [row offset, vehicle key, …].
    const accepted: number[] = [];
    const n = rows.length;
    let i = 0;
    while (i < n) {
      const vehicleId = rows[i] as string;
      let j = i + ROW_STRIDE;
      while (j < n && rows[j] === vehicleId) j += ROW_STRIDE;
      const st = this.state(vehicleId);
      let ok = rows[i + 1] === st.lastSeq + 1;
      for (let k = i + ROW_STRIDE; ok && k < j; k += ROW_STRIDE)
        ok = rows[k + 1] === (rows[k + 1 - ROW_STRIDE] as number) + 1;
      if (!ok) {
        this.failures.push(vehicleId, st.lastSeq);
        i = j;
        continue;
      }
      for (let k = i; k < j; k += ROW_STRIDE) accepted.push(k, st.key);
      updates.push({ id: vehicleId, st, from: i, to: j });
      i = j;
    }
    this.insertAccepted(rows, accepted);
    return updates;
  }

  /**
   * Writes the accepted rows in batch order as one row of the uplink log (sqlite-log.ts): one
   * insert per commit, however many records it holds.
   */
  private insertAccepted(rows: FlatRows, acc: readonly number[]): void {
    const log = this.log;
    log.reset();
    for (let a = 0; a < acc.length; a += 2) {
      const k = acc[a]!;
      log.add(
        acc[a + 1]!,
        rows[k + 1] as number,
        rows[k + 2] as number,
        rows[k + 3] as number,
        rows[k + 4] as number,
        rows[k + 5] as string | Uint8Array | null,
        rows[k + 6] as Uint8Array | string | null,
      );
    }
    if (log.count > 0)
      this.insertLog.run(this.nextPos, this.nextPos + log.count - 1, log.firstAt, log.body());
  }

  /** One past the highest position used: in the log, in a run, or below the mark. */
  private firstFreePosition(): number {
    const max = this.db
      .prepare(
        `SELECT max(coalesce((SELECT max(last) FROM uplink_log), 0),
                    coalesce((SELECT max(last_id) FROM uplink_runs), 0),
                    coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?), 0))`,
      )
      .pluck()
      .get(INDEXED_UPTO_KEY) as number;
    return max + 1;
  }

  /** Runs the transaction; the cache follows only what committed. Throws when SQLite does. */
  append(rows: FlatRows, datas?: readonly unknown[]): FlatFailures {
    // IMMEDIATE: take the write lock up front, waiting (busy_timeout) if the other connection writes;
    // a deferred transaction upgrading from its SELECT could fail with SQLITE_BUSY instead.
    let updates: Appended[];
    try {
      updates = this.tx.immediate(rows);
    } catch (err) {
      // Keys created in the failed transaction are gone with it, and so is an index write a cache
      // eviction ran inside it: start over from the database (checkpoints not yet written are
      // rebuilt from the records on the next read, pending entries from the log above the mark).
      this.cache.clear();
      this.dirty.clear();
      this.pending.reload();
      this.nextPos = this.firstFreePosition();
      throw err;
    }
    // Committed: the records wait in memory for their runs, as encoded in the log row.
    const log = this.log;
    const e = log.entries;
    for (let i = 0, pos = this.nextPos; i < e.length; i += 4, pos++)
      this.pending.add(e[i]!, e[i + 1]!, pos, log.buf, e[i + 2]!, e[i + 3]!);
    this.nextPos += log.count;
    log.reset();
    // Committed: the cached states move forward in place (nothing to undo, so nothing is copied).
    for (const { id, st, from, to } of updates) {
      st.lastSeq = rows[to - ROW_STRIDE + 1] as number;
      for (let k = from; k < to; k += ROW_STRIDE) {
        const stored = rows[k + 6] as Uint8Array | string | null;
        if (rows[k + 2] !== 0 || stored === null) continue;
        // In-process callers pass the data objects along (no decoding); the worker decodes.
        const data = (datas?.[k / ROW_STRIDE] ?? rowData(0, stored)) as RecordData;
        mergeTelemetry(st.latest as RecordData, data);
      }
      if (!st.dirty) {
        st.dirty = true;
        this.dirty.add(id);
      }
      // A cache eviction inside the transaction dropped the entry: it holds the newest state.
      if (this.cache.get(id) !== st) this.cache.set(id, st);
    }
    // Under heavy ingest the index is written as soon as enough entries wait, not only on the tick.
    if (this.pending.due && !this.indexWriteQueued) {
      this.indexWriteQueued = true;
      setImmediate(() => {
        this.indexWriteQueued = false;
        this.indexRound();
      });
    }
    return this.failures;
  }

  /** Starts the periodic tick (index and checkpoints every TICK_MS). */
  start(): void {
    this.timer = setInterval(() => this.background(() => this.tick()), TICK_MS);
    this.timer.unref();
  }

  /** Stops the background work and writes everything still pending (close). */
  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.flush();
  }

  /** Background work: a busy or failing database is tried again next time. */
  private background(work: () => void): void {
    try {
      work();
    } catch {
      // The rows keep the truth; the entries and checkpoints stay pending until a write succeeds.
    }
  }

  /**
   * Writes the index runs of up to `max` vehicles (one transaction; PendingIndex.write): by default
   * those due, and every vehicle when `max` is not given. Returns how many.
   */
  writeIndex(max = Infinity, everyone = max === Infinity): number {
    if (this.pending.size === 0) return 0;
    const keys = this.unflushed(() => this.indexTx.immediate(max, everyone));
    this.pending.written(keys);
    return keys.length;
  }

  /**
   * Runs a maintenance transaction (runs, checkpoints) without a flush of its own when the
   * connection flushes every commit (store-sync full). A run write moves records from the log into
   * runs in one transaction: a power loss keeps it whole or not at all (WAL frames are checksummed
   * in order), and without it the records are still in the log, flushed with their own commit. The
   * checkpoints are derived data: after a crash the latest state is rebuilt from the records after
   * them. So nothing acked depends on either; and the WAL is append-only, so the next uplink
   * commit's flush makes them durable with it. What it saves is an fsync wait on the event loop per
   * slice. Inside another transaction (a cache eviction during an append) the outer commit decides.
   */
  private unflushed<T>(work: () => T): T {
    const db = this.db;
    if (this.flushLevel === 0 || db.inTransaction) return work();
    db.pragma('synchronous = NORMAL');
    try {
      return work();
    } finally {
      if (db.open) db.pragma(`synchronous = ${this.flushLevel}`);
    }
  }

  /**
   * Writes the runs of the vehicles waiting now, INDEX_RUNS_PER_WRITE per transaction, one
   * transaction per turn of the event loop (the first at once). Vehicles that get entries meanwhile
   * wait for the next round, so a round ends however fast entries come.
   */
  private indexRound(): void {
    if (this.indexing || this.stopped) return;
    this.indexing = true;
    this.inSlices(
      Math.ceil(this.pending.size / INDEX_RUNS_PER_WRITE),
      () => this.writeIndex(INDEX_RUNS_PER_WRITE) === INDEX_RUNS_PER_WRITE,
      () => (this.indexing = false),
    );
  }

  /** Moves up to CHECKPOINTS_PER_TICK checkpoints, CHECKPOINTS_PER_WRITE per turn of the event loop. */
  private checkpointRound(): void {
    if (this.checkpointing || this.stopped) return;
    this.checkpointing = true;
    this.inSlices(
      Math.ceil(Math.min(this.dirty.size, CHECKPOINTS_PER_TICK) / CHECKPOINTS_PER_WRITE),
      () => {
        this.writeCheckpoints(CHECKPOINTS_PER_WRITE);
        return this.dirty.size > 0;
      },
      () => (this.checkpointing = false),
    );
  }

  /**
   * Runs `slice` (one short transaction) once per turn of the event loop, the first at once, at
   * most `times` times or until it reports nothing left or fails; then `done`.
   */
  private inSlices(times: number, slice: () => boolean, done: () => void): void {
    const step = (): void => {
      let more = false;
      if (!this.stopped && times-- > 0) this.background(() => (more = slice()));
      if (more && times > 0) setImmediate(step);
      else done();
    };
    step();
  }

  /** Moves the checkpoints of up to `max` vehicles that changed since their last one (one transaction). */
  writeCheckpoints(max = Infinity): void {
    if (this.dirty.size === 0) return;
    const ids: string[] = [];
    for (const id of this.dirty) {
      if (ids.length >= max) break;
      ids.push(id);
    }
    this.unflushed(() => this.checkpointTx.immediate(ids));
    for (const id of ids) {
      const st = this.cache.get(id);
      if (st !== undefined) st.dirty = false;
      this.dirty.delete(id);
    }
  }

  /**
   * The periodic work, in short transactions on successive turns of the event loop: the index (its
   * first slice now), then a share of the checkpoints (from the next turn: not in the same stall).
   */
  tick(): void {
    this.indexRound();
    setImmediate(() => this.checkpointRound());
  }

  /** A round of tick() is still going (its slices run on later turns of the event loop). */
  get busy(): boolean {
    return this.indexing || this.checkpointing;
  }

  /** Everything at once: the index and every checkpoint (close, cache eviction). */
  flush(clear = false): void {
    this.writeIndex();
    this.writeCheckpoints();
    if (clear) this.cache.clear();
  }
}

/** Store upkeep run on request (SqliteStore.maintain): run writes, checkpoint writes, or the periodic round (both). */
export type Upkeep = 'index' | 'checkpoints' | 'tick';

/** What the store's worker thread starts with (sqlite-worker.ts). */
export interface WorkerInit {
  path: string;
  sync: 'full' | 'normal';
  /** The periodic index and checkpoint writes (false: on request and on close only). */
  background: boolean;
}

/** A call to the worker thread: an append, or upkeep. It answers { id, failures } or { id, error }. */
export type WorkerCall = { rows: FlatRows } | { upkeep: Upkeep; max: number };

/**
 * Runs upkeep on an appender and resolves when it is done: `index` writes the runs of up to `max`
 * vehicles (all of them when `max` is Infinity), `checkpoints` up to `max` checkpoints, `tick` the
 * timer's round, whose slices run on later turns of the event loop.
 */
export async function runUpkeep(
  appender: UplinkAppender,
  work: Upkeep,
  max: number,
): Promise<void> {
  if (work === 'index') appender.writeIndex(max);
  else if (work === 'checkpoints') appender.writeCheckpoints(max);
  else {
    appender.tick();
    do await new Promise((r) => setImmediate(r));
    while (appender.busy);
  }
}
