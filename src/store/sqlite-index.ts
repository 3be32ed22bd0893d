// The per-vehicle seq index of the SQLite uplink rows, written in bulk, and the reads through it.
import type Database from 'better-sqlite3';
import {
  decodeEventSample,
  decodeTelemetrySample,
  eventData,
  telemetryData,
} from '../protocol/index.js';
import type { RecordData } from '../protocol/record.js';

/**
 * Why the index is deferred: vehicles report about once a second, so one group commit holds about
 * one row per vehicle. A B-tree index on (vehicle, seq) updated per commit rewrites one index page
 * (4 KB into the WAL, and again at checkpoint) for nearly every row, which cost more than the row.
 * Instead the rows go into `uplink` (append-only by id), their index entries stay in memory, and
 * every few seconds they are inserted into `uplink_seq` sorted, touching each vehicle's page once.
 * `meta.uplink_indexed_upto` is the highest row id indexed; rows above it are found from memory on
 * the appender's connection, or by scanning that tail on another connection. The index is derived
 * data: after a crash the tail is re-read from `uplink`, which alone holds what was acked.
 */
export const INDEXED_UPTO_KEY = 'uplink_indexed_upto';

/** Uplink row columns as reads return them. */
export interface UplinkRow {
  seq: number;
  kind: number;
  ts: number;
  received_at: number;
  traceparent: string | null;
  /** The record's TLVs as received (BLOB), or the JSON of its data (TEXT); null for a hole. */
  data: Uint8Array | string | null;
}

/**
 * The record data of a row (kind 0 telemetry, 1 event). Rows keep the TLVs as the vehicle sent
 * them (no JSON per message on the write path) and are decoded here with the same codec functions
 * the gateway used when it accepted them; rows written without TLVs (worker mode, older versions)
 * hold JSON text.
 */
export function rowData(kind: number, data: Uint8Array | string): RecordData {
  if (typeof data === 'string') return JSON.parse(data) as RecordData;
  return kind === 1
    ? eventData(decodeEventSample(data, 0, data.length))
    : telemetryData(decodeTelemetrySample(data, 0, data.length));
}

/** Index entries of rows not yet in `uplink_seq`: per vehicle key, [seq, id, seq, id, …] ascending. */
export class PendingIndex {
  private byKey = new Map<number, number[]>();
  private maxId = 0;
  /** Entries held (rows above the mark). */
  entries = 0;
  private readonly upto: Database.Statement;
  private readonly tail: Database.Statement;
  private readonly insert: Database.Statement;
  private readonly setUpto: Database.Statement;

  constructor(db: Database.Database) {
    this.upto = db.prepare('SELECT value FROM meta WHERE key = ?').pluck();
    this.tail = db.prepare('SELECT id, vkey, seq FROM uplink WHERE id > ? ORDER BY id');
    this.insert = db.prepare('INSERT OR IGNORE INTO uplink_seq (vkey, seq, id) VALUES (?, ?, ?)');
    this.setUpto = db.prepare(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    );
    this.reload();
  }

  /** Rebuilds the entries from the rows above the indexed mark (on open, and after a rollback). */
  reload(): void {
    this.byKey = new Map();
    this.entries = 0;
    const upto = Number((this.upto.get(INDEXED_UPTO_KEY) as string | undefined) ?? 0);
    this.maxId = upto;
    for (const r of this.tail.iterate(upto) as Iterable<{ id: number; vkey: number; seq: number }>)
      this.add(r.vkey, r.seq, r.id);
  }

  add(vkey: number, seq: number, id: number): void {
    const list = this.byKey.get(vkey);
    if (list === undefined) this.byKey.set(vkey, [seq, id]);
    else list.push(seq, id);
    if (id > this.maxId) this.maxId = id;
    this.entries++;
  }

  /** [seq, id, …] of a vehicle's unindexed rows, ascending; undefined when it has none. */
  get(vkey: number): readonly number[] | undefined {
    return this.byKey.get(vkey);
  }

  get size(): number {
    return this.byKey.size;
  }

  /**
   * Inserts every entry into `uplink_seq`, sorted, and moves the mark. The caller runs this inside
   * a transaction and calls clear() once it committed.
   */
  write(): void {
    if (this.byKey.size === 0) return;
    const keys = [...this.byKey.keys()].sort((a, b) => a - b);
    for (const vkey of keys) {
      const list = this.byKey.get(vkey)!;
      for (let i = 0; i < list.length; i += 2) this.insert.run(vkey, list[i], list[i + 1]);
    }
    this.setUpto.run(INDEXED_UPTO_KEY, String(this.maxId));
  }

  clear(): void {
    this.byKey = new Map();
    this.entries = 0;
  }
}

/**
 * A vehicle's uplink rows after a seq, in seq order: the indexed part from `uplink_seq`, then the
 * rows above the mark, from the appender's PendingIndex (same connection) or, on another connection,
 * by scanning the tail of `uplink` (bounded by the few seconds between index writes). With a tail
 * scan both parts are read in one read transaction, so an index write in between cannot split them.
 */
export class UplinkRowReader {
  private readonly key: Database.Statement;
  private readonly indexed: Database.Statement;
  private readonly byId: Database.Statement;
  private readonly tail: Database.Statement | undefined;
  private readonly upto: Database.Statement | undefined;
  private readonly snapshot: Database.Transaction<
    (vkey: number, afterSeq: number, kindMin: number, limit: number) => UplinkRow[]
  >;

  /** `pending`: the appender's entries on this connection; null to scan the tail instead. */
  constructor(
    db: Database.Database,
    private readonly pending: PendingIndex | null,
  ) {
    const cols = 'u.seq, u.kind, u.ts, u.received_at, u.traceparent, u.data';
    this.key = db.prepare('SELECT key FROM vehicle_keys WHERE id = ?').pluck();
    this.indexed = db.prepare(
      `SELECT ${cols} FROM uplink_seq i JOIN uplink u ON u.id = i.id
       WHERE i.vkey = ? AND i.seq > ? AND u.kind >= ? ORDER BY i.seq LIMIT ?`,
    );
    this.byId = db.prepare(`SELECT ${cols} FROM uplink u WHERE u.id = ?`);
    if (pending === null) {
      this.upto = db.prepare('SELECT value FROM meta WHERE key = ?').pluck();
      this.tail = db.prepare(
        `SELECT ${cols} FROM uplink u WHERE u.id > ? AND u.vkey = ? AND u.seq > ? AND u.kind >= ?
         ORDER BY u.id LIMIT ?`,
      );
    }
    this.snapshot = db.transaction((vkey, afterSeq, kindMin, limit) =>
      this.collect(vkey, afterSeq, kindMin, limit),
    );
  }

  /**
   * Rows of `vehicleId` with seq > afterSeq and kind ≥ kindMin (−1: holes too; 0: records only), at
   * most `limit` (−1: all), in seq order.
   */
  rows(vehicleId: string, afterSeq: number, kindMin: number, limit: number): UplinkRow[] {
    const vkey = this.key.get(vehicleId) as number | undefined;
    if (vkey === undefined) return [];
    // A read transaction only when two statements must see one snapshot (the tail scan).
    if (this.pending === null) return this.snapshot.deferred(vkey, afterSeq, kindMin, limit);
    return this.collect(vkey, afterSeq, kindMin, limit);
  }

  private collect(vkey: number, afterSeq: number, kindMin: number, limit: number): UplinkRow[] {
    const out = this.indexed.all(vkey, afterSeq, kindMin, limit) as UplinkRow[];
    // Every unindexed row of a vehicle has a higher seq than its indexed ones (same order as ids).
    if (limit >= 0 && out.length >= limit) return out;
    const more = limit < 0 ? -1 : limit - out.length;
    if (this.pending === null) {
      const upto = Number((this.upto!.get(INDEXED_UPTO_KEY) as string | undefined) ?? 0);
      for (const r of this.tail!.all(upto, vkey, afterSeq, kindMin, more) as UplinkRow[])
        out.push(r);
      return out;
    }
    const list = this.pending.get(vkey);
    if (list === undefined) return out;
    for (let i = 0; i < list.length && out.length !== limit; i += 2) {
      if (list[i]! <= afterSeq) continue;
      // Never missing (retention deletes only indexed rows), but a read must not throw over it.
      const r = this.byId.get(list[i + 1]) as UplinkRow | undefined;
      if (r !== undefined && r.kind >= kindMin) out.push(r);
    }
    return out;
  }
}
