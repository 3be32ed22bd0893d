// The per-vehicle seq index of the SQLite uplink rows (written in bulk, read through), and the row codecs.
import type Database from 'better-sqlite3';
import {
  decodeEventSample,
  decodeTelemetrySample,
  eventData,
  telemetryData,
  toHex,
} from '../protocol/index.js';
import type { RecordData } from '../protocol/record.js';
import { TRACE_IDS_BYTES } from '../observability/trace.js';

/**
 * Why the index is deferred and kept in runs: vehicles report about once a second, so one group
 * commit holds about one row per vehicle. A B-tree index on (vehicle, seq) updated per commit
 * rewrites one index page (4 KB into the WAL, and again at checkpoint) for nearly every row, which
 * cost more than the row; and one index entry per row, even written in bulk, cost a B-tree insert
 * per message. Instead the rows go into `uplink` (append-only by id), their index entries stay in
 * memory, and every few seconds each vehicle's entries are written as one run: a row of
 * `uplink_runs` holding its consecutive seqs first_seq…last_seq and their row ids (encodeRunIds), so
 * the index costs one insert per vehicle per write, not one per message.
 * `meta.uplink_indexed_upto` is the highest row id indexed; rows above it are found from memory on
 * the appender's connection, or by scanning that tail on another connection. The index is derived
 * data: after a crash the tail is re-read from `uplink`, which alone holds what was acked.
 */
export const INDEXED_UPTO_KEY = 'uplink_indexed_upto';

/**
 * Pending index entries that make an index write due at once, besides the timer: it bounds the
 * memory they take and the tail a reader on another connection scans (worker mode).
 */
export const INDEX_WRITE_ENTRIES = 16_384;

/** With holdRows: vehicles with a full run waiting that make an index write due at once. */
export const INDEX_WRITE_RUNS = 1_024;

/** Uplink row columns as reads return them. */
export interface UplinkRow {
  seq: number;
  kind: number;
  ts: number;
  received_at: number;
  /** The traceparent as text, or packed (packTraceparent); unpack with traceparentOf. */
  traceparent: string | Uint8Array | null;
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

/**
 * Bytes of a packed traceparent: trace-id head (12), span id (8), flags (1); the layout of
 * UplinkTracer.ids, which the gateway passes as is (UplinkWrite.traceIds).
 */
export const PACKED_TRACEPARENT_BYTES = TRACE_IDS_BYTES;

/** Value of a lower-case hex digit's char code, else -1 (upper case would not round-trip). */
const HEX_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) HEX_VALUE['0123456789abcdef'.charCodeAt(i)] = i;

/** Packs the hex digits tp[from, to) into out from byte o; the next byte, or -1 on a non-hex digit. */
function packHex(tp: string, from: number, to: number, out: Uint8Array, o: number): number {
  for (let i = from; i < to; i += 2) {
    const hi = tp.charCodeAt(i);
    const lo = tp.charCodeAt(i + 1);
    const h = hi < 128 ? HEX_VALUE[hi]! : -1;
    const l = lo < 128 ? HEX_VALUE[lo]! : -1;
    if ((h | l) < 0) return -1;
    out[o++] = h * 16 + l;
  }
  return o;
}

/**
 * Packs the traceparent of uplink row `seq` into `out` (PACKED_TRACEPARENT_BYTES) when it has the
 * form the gateway gives uplink records (UplinkTracer): version 00, lower-case hex, and a trace id
 * whose last 8 digits are the row's seq. The seq is not stored again, and the dashes and version
 * are implied: 21 bytes in the row instead of 55 characters (~19 % of a telemetry row). Returns
 * false for any other string, which is stored as text; traceparentOf gives back the exact string.
 */
export function packTraceparent(tp: string, seq: number, out: Uint8Array): boolean {
  if (tp.length !== 55 || tp.charCodeAt(0) !== 48 || tp.charCodeAt(1) !== 48) return false;
  if (tp.charCodeAt(2) !== 45 || tp.charCodeAt(35) !== 45 || tp.charCodeAt(52) !== 45) return false;
  const s = seq >>> 0;
  if (s !== seq) return false;
  for (let i = 0; i < 8; i++) {
    const c = tp.charCodeAt(27 + i);
    if (c >= 128 || HEX_VALUE[c] !== (s >>> (28 - 4 * i)) % 16) return false;
  }
  let o = packHex(tp, 3, 27, out, 0); // the trace id without its seq digits
  if (o >= 0) o = packHex(tp, 36, 52, out, o); // the span id
  if (o >= 0) o = packHex(tp, 53, 55, out, o); // the flags
  return o === PACKED_TRACEPARENT_BYTES;
}

/** The traceparent text of an uplink row's column (text as stored, or packed by packTraceparent). */
export function traceparentOf(value: string | Uint8Array, seq: number): string {
  if (typeof value === 'string') return value;
  const seqHex = (seq >>> 0).toString(16).padStart(8, '0');
  return `00-${toHex(value, 0, 12)}${seqHex}-${toHex(value, 12, 20)}-${toHex(value, 20, 21)}`;
}

/** Entries per run at most: a read that starts inside a run decodes at most this many ids. */
export const RUN_MAX = 256;

/** Runs fetched per query by a read. */
const RUNS_PER_READ = 16;

const runScratch = Buffer.allocUnsafe(RUN_MAX * 8 + 16);

/**
 * The row ids of entries [from, to) of `list` ([seq, id, …]) as a run's BLOB: unsigned LEB128
 * varints, the first id as is and then each id's difference from the one before (ids ascend within
 * a vehicle's run, and are a few thousand apart at most ingest rates: two bytes an entry). Returns
 * a view of a shared buffer (SQLite copies it when bound).
 */
export function encodeRunIds(list: readonly number[], from: number, to: number): Buffer {
  let o = 0;
  let prev = 0;
  for (let i = from; i < to; i++) {
    const id = list[2 * i + 1]!;
    let v = id - prev;
    prev = id;
    // Arithmetic, not bit operations: row ids may pass 2^31.
    while (v >= 0x80) {
      runScratch[o++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    runScratch[o++] = v;
  }
  return runScratch.subarray(0, o);
}

/** The row ids of a run (encodeRunIds), in seq order. */
export function decodeRunIds(blob: Uint8Array): number[] {
  const ids: number[] = [];
  let prev = 0;
  let i = 0;
  while (i < blob.length) {
    let v = 0;
    let scale = 1;
    let b: number;
    do {
      b = blob[i++]!;
      v += (b & 0x7f) * scale;
      scale *= 0x80;
    } while (b & 0x80 && i < blob.length);
    prev += v;
    ids.push(prev);
  }
  return ids;
}

/**
 * Writes a vehicle's entries ([seq, id, …], seqs ascending) as runs: a run ends where the seqs stop
 * being consecutive or the ids ascending, or at RUN_MAX entries. `insert` takes (last_id, vkey, first_seq, last_seq, ids).
 */
export function insertRuns(
  insert: Database.Statement,
  vkey: number,
  list: readonly number[],
): void {
  const n = list.length / 2;
  let start = 0;
  for (let i = 1; i <= n; i++) {
    if (
      i < n &&
      i - start < RUN_MAX &&
      list[2 * i] === list[2 * i - 2]! + 1 &&
      list[2 * i + 1]! > list[2 * i - 1]!
    )
      continue;
    insert.run(
      list[2 * i - 1],
      vkey,
      list[2 * start],
      list[2 * i - 2],
      encodeRunIds(list, start, i),
    );
    start = i;
  }
}

/** Inserts a run (the statement insertRuns takes). */
export const INSERT_RUN_SQL =
  'INSERT OR REPLACE INTO uplink_runs (last_id, vkey, first_seq, last_seq, ids) VALUES (?, ?, ?, ?, ?)';

/**
 * A vehicle's entries that count as a full run: with `holdRows` set, a vehicle with fewer waits for
 * more (see PendingIndex). 32 entries of a vehicle reporting once a second are half a minute.
 */
export const RUN_TARGET = 32;

export interface PendingIndexOptions {
  /**
   * How far (in rows) a vehicle's entries may fall behind the newest row while they are fewer than
   * RUN_TARGET; 0 (the default): every index write takes every vehicle. At one message a second per
   * vehicle a write every few seconds makes runs of one or two entries, each an insert into
   * `uplink_runs` and its (vkey, last_seq) index; holding them until RUN_TARGET entries or this many
   * rows makes longer runs and far fewer inserts. The cost is the tail above the mark: a reload
   * after a crash reads it, and a reader on another connection scans it on every read, so only the
   * appender whose readers share its connection (in-process, reading from memory) holds entries.
   */
  holdRows?: number;
}

/**
 * Index entries of rows not yet in `uplink_runs`: per vehicle key, [seq, id, seq, id, …] ascending.
 * They are written a slice of vehicles at a time (write(max), then written() once that committed),
 * so one write's stall is bounded however many vehicles report. The mark
 * (`meta.uplink_indexed_upto`) is then the highest row id below which every row is indexed; rows
 * above it may be indexed already (their vehicle's slice went first), so whoever reads rows above
 * the mark skips the seqs its vehicle's runs hold.
 *
 * The map's insertion order is the order of each list's first id: a list is created by the newest
 * row (ids ascend as rows are added, and a reload adds them in id order) and only ever deleted
 * whole. The oldest lists are its first ones, and the mark is found from the front.
 */
export class PendingIndex {
  private byKey = new Map<number, number[]>();
  private maxId = 0;
  /** Entries held. */
  entries = 0;
  /** Vehicles whose list reached RUN_TARGET since the last write (may repeat, or be gone). */
  private ready: number[] = [];
  private readonly holdRows: number;
  private readonly upto: Database.Statement;
  private readonly tail: Database.Statement;
  private readonly indexedTo: Database.Statement;
  private readonly insert: Database.Statement;
  private readonly setUpto: Database.Statement;

  constructor(db: Database.Database, options: PendingIndexOptions = {}) {
    this.holdRows = Math.max(0, options.holdRows ?? 0);
    this.upto = db.prepare('SELECT value FROM meta WHERE key = ?').pluck();
    this.tail = db.prepare('SELECT id, vkey, seq FROM uplink WHERE id > ? ORDER BY id').raw();
    this.indexedTo = db.prepare('SELECT max(last_seq) FROM uplink_runs WHERE vkey = ?').pluck();
    this.insert = db.prepare(INSERT_RUN_SQL);
    this.setUpto = db.prepare(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    );
    this.reload();
  }

  /**
   * Rebuilds the entries from the rows above the indexed mark that no run holds yet (on open, and
   * after a rollback).
   */
  reload(): void {
    this.byKey = new Map();
    this.ready = [];
    this.entries = 0;
    const upto = Number((this.upto.get(INDEXED_UPTO_KEY) as string | undefined) ?? 0);
    this.maxId = upto;
    // Read whole first: no other statement may run while one iterates.
    const rows = this.tail.all(upto) as [number, number, number][];
    const indexed = new Map<number, number>();
    for (const [id, vkey, seq] of rows) {
      let to = indexed.get(vkey);
      if (to === undefined) {
        to = (this.indexedTo.get(vkey) as number | null) ?? 0;
        indexed.set(vkey, to);
      }
      if (seq > to) this.add(vkey, seq, id);
    }
  }

  add(vkey: number, seq: number, id: number): void {
    const list = this.byKey.get(vkey);
    if (list === undefined) this.byKey.set(vkey, [seq, id]);
    else if (list.push(seq, id) === 2 * RUN_TARGET && this.holdRows > 0) this.ready.push(vkey);
    if (id > this.maxId) this.maxId = id;
    this.entries++;
  }

  /** [seq, id, …] of a vehicle's unindexed rows, ascending; undefined when it has none. */
  get(vkey: number): readonly number[] | undefined {
    return this.byKey.get(vkey);
  }

  /** Vehicles with entries. */
  get size(): number {
    return this.byKey.size;
  }

  /**
   * An index write is due before the timer: enough full runs wait, or (without holdRows, or far
   * past it) enough entries, which bounds their memory and the tail above the mark.
   */
  get due(): boolean {
    if (this.holdRows === 0) return this.entries >= INDEX_WRITE_ENTRIES;
    return (
      this.ready.length >= INDEX_WRITE_RUNS || this.entries >= this.holdRows + INDEX_WRITE_ENTRIES
    );
  }

  /**
   * Writes the runs of up to `max` vehicles and moves the mark: those with RUN_TARGET entries, then
   * those waiting longest (every vehicle without holdRows; with it, those holdRows or more rows
   * behind the newest, or all of them when `everyone`). The caller runs this inside a transaction
   * and passes the keys it returns to written() once it committed.
   */
  write(max = Infinity, everyone = false): number[] {
    const keys: number[] = [];
    const chosen = new Set<number>();
    if (this.holdRows > 0 && !everyone) {
      let i = 0;
      for (; i < this.ready.length && keys.length < max; i++) {
        const vkey = this.ready[i]!;
        const list = this.byKey.get(vkey);
        if (list === undefined || list.length < 2 * RUN_TARGET || chosen.has(vkey)) continue;
        chosen.add(vkey);
        keys.push(vkey);
      }
      this.ready = i === this.ready.length ? [] : this.ready.slice(i);
    }
    const behind = this.holdRows > 0 && !everyone ? this.maxId - this.holdRows : Infinity;
    for (const [vkey, list] of this.byKey) {
      if (keys.length >= max || list[1]! > behind) break;
      if (chosen.has(vkey)) continue;
      chosen.add(vkey);
      keys.push(vkey);
    }
    if (keys.length === 0) return keys;
    // In key order within the slice: neighbouring keys share B-tree pages.
    keys.sort((a, b) => a - b);
    for (const vkey of keys) insertRuns(this.insert, vkey, this.byKey.get(vkey)!);
    // Below the first id still waiting, every row is indexed: the first list not written, in map
    // order (the order of first ids).
    let upto = this.maxId;
    for (const [vkey, list] of this.byKey) {
      if (chosen.has(vkey)) continue;
      upto = list[1]! - 1;
      break;
    }
    this.setUpto.run(INDEXED_UPTO_KEY, String(upto));
    return keys;
  }

  /** Drops the entries a committed write() wrote. */
  written(keys: readonly number[]): void {
    for (const vkey of keys) {
      const list = this.byKey.get(vkey);
      if (list === undefined) continue;
      this.entries -= list.length / 2;
      this.byKey.delete(vkey);
    }
  }
}

/**
 * A vehicle's uplink rows after a seq, in seq order: the indexed part through `uplink_runs`, then the
 * rows above the mark, from the appender's PendingIndex (same connection) or, on another connection,
 * by scanning the tail of `uplink` (bounded by the few seconds between index writes). With a tail
 * scan both parts are read in one read transaction, so an index write in between cannot split them.
 * A row a run names may be gone (retention deletes rows before the runs that name them): skipped.
 */
export class UplinkRowReader {
  private readonly key: Database.Statement;
  private readonly runs: Database.Statement;
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
    this.runs = db
      .prepare(
        'SELECT first_seq, last_seq, ids FROM uplink_runs WHERE vkey = ? AND last_seq > ? ORDER BY last_seq LIMIT ?',
      )
      .raw();
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
    const out: UplinkRow[] = [];
    if (limit === 0) return out;
    // Runs a few at a time (no other statement may run while one iterates), from afterSeq on.
    let from = afterSeq;
    for (;;) {
      const runs = this.runs.all(vkey, from, RUNS_PER_READ) as [number, number, Uint8Array][];
      for (const [firstSeq, lastSeq, blob] of runs) {
        const ids = decodeRunIds(blob);
        for (let i = Math.max(0, afterSeq + 1 - firstSeq); i < ids.length; i++) {
          const r = this.byId.get(ids[i]) as UplinkRow | undefined;
          if (r === undefined || r.kind < kindMin) continue;
          out.push(r);
          if (out.length === limit) return out;
        }
        from = lastSeq;
      }
      if (runs.length < RUNS_PER_READ) break;
    }
    // Every unindexed row of a vehicle has a higher seq than its indexed ones (same order as ids),
    // and rows above the mark may be indexed already: the tail starts after the last run read.
    const more = limit < 0 ? -1 : limit - out.length;
    if (this.pending === null) {
      const upto = Number((this.upto!.get(INDEXED_UPTO_KEY) as string | undefined) ?? 0);
      const after = Math.max(afterSeq, from);
      for (const r of this.tail!.all(upto, vkey, after, kindMin, more) as UplinkRow[]) out.push(r);
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
