// The SQLite uplink append (seq check, records, latest state) over flat rows, run in-process or in a worker thread.
import type Database from 'better-sqlite3';

/** One consumed seq, flattened for a cheap hand-off to a worker: 7 slots per row. */
export const ROW_STRIDE = 7;
// vehicleId, seq, kind (0 telemetry, 1 event, -1 hole), timestamp, receivedAt, traceparent | null, data JSON | null
export type FlatRows = (string | number | null)[];

/** Vehicles not written, as [vehicleId, storedLastSeq, …]. */
export type FlatFailures = (string | number)[];

const SEQ_CACHE_MAX = 200_000;

interface AppendOutcome {
  failures: FlatFailures;
  updates: [string, VehicleSeqState][];
}

interface VehicleSeqState {
  lastSeq: number;
  /** Parsed lazily: vehicles that send only events never need it. */
  latest: Record<string, unknown> | undefined;
  latestJson: string;
}

/**
 * Appends uplink rows in one transaction: for each vehicle (rows grouped by vehicle, seqs ascending)
 * the first seq must follow the stored last seq; its records are inserted, its latest telemetry state
 * merged (each key from the highest seq) and its last seq set. The committed per-vehicle state is
 * cached: this appender is the only writer of those columns.
 */
export class UplinkAppender {
  private readonly cache = new Map<string, VehicleSeqState>();
  private readonly selectSeq: Database.Statement;
  private readonly insert: Database.Statement;
  private readonly upsert: Database.Statement;
  private readonly tx: Database.Transaction<
    (rows: FlatRows, datas?: readonly unknown[]) => AppendOutcome
  >;

  constructor(db: Database.Database) {
    this.selectSeq = db.prepare('SELECT last_seq, latest FROM vehicles WHERE id = ?');
    this.insert = db.prepare(
      'INSERT INTO uplink (vehicle_id, seq, kind, ts, received_at, traceparent, data) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    // markSeen and createCommand may have created the row already (with seq 0 and '{}').
    this.upsert = db.prepare(
      `INSERT INTO vehicles (id, last_seq, latest) VALUES (?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET last_seq = excluded.last_seq, latest = excluded.latest`,
    );
    this.tx = db.transaction((rows: FlatRows, datas?: readonly unknown[]) => this.run(rows, datas));
  }

  private state(vehicleId: string): VehicleSeqState {
    let st = this.cache.get(vehicleId);
    if (st === undefined) {
      const row = this.selectSeq.get(vehicleId) as { last_seq: number; latest: string } | undefined;
      st = { lastSeq: row?.last_seq ?? 0, latest: undefined, latestJson: row?.latest ?? '{}' };
      // Bounded: a cache miss only costs the SELECT again.
      if (this.cache.size >= SEQ_CACHE_MAX) this.cache.clear();
      this.cache.set(vehicleId, st);
    }
    return st;
  }

  private run(rows: FlatRows, datas: readonly unknown[] | undefined): AppendOutcome {
    const failures: FlatFailures = [];
    const updates: [string, VehicleSeqState][] = [];
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
        failures.push(vehicleId, st.lastSeq);
        i = j;
        continue;
      }
      let latest: Record<string, unknown> | undefined;
      for (let k = i; k < j; k += ROW_STRIDE) {
        const kind = rows[k + 2] as number;
        if (kind < 0) continue; // a hole: the seq is consumed, nothing is stored
        const dataJson = rows[k + 6] as string;
        this.insert.run(
          vehicleId,
          rows[k + 1],
          kind,
          rows[k + 3],
          rows[k + 4],
          rows[k + 5],
          dataJson,
        );
        if (kind === 0) {
          // A copy: the cached state changes only once the transaction committed.
          latest ??= { ...(st.latest ??= JSON.parse(st.latestJson) as Record<string, unknown>) };
          // Only keys the stored record carries (JSON has no undefined values).
          // In-process callers pass the data objects along (no parse); the worker parses the JSON.
          const data = (datas?.[k / ROW_STRIDE] ?? JSON.parse(dataJson)) as Record<string, unknown>;
          for (const key in data) if (data[key] !== undefined) latest[key] = data[key];
        }
      }
      const lastSeq = rows[j - ROW_STRIDE + 1] as number;
      const latestJson = latest === undefined ? st.latestJson : JSON.stringify(latest);
      this.upsert.run(vehicleId, lastSeq, latestJson);
      updates.push([vehicleId, { lastSeq, latest: latest ?? st.latest, latestJson }]);
      i = j;
    }
    return { failures, updates };
  }

  /** Runs the transaction; the cache follows only what committed. Throws when SQLite does. */
  append(rows: FlatRows, datas?: readonly unknown[]): FlatFailures {
    // IMMEDIATE: take the write lock up front, waiting (busy_timeout) if the other connection writes;
    // a deferred transaction upgrading from its SELECT could fail with SQLITE_BUSY instead.
    const { failures, updates } = this.tx.immediate(rows, datas);
    for (const [id, st] of updates) this.cache.set(id, st);
    return failures;
  }
}
