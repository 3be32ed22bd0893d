// The SQLite uplink records in per-vehicle runs (written in bulk from the log, read through), and the row codecs.
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
import { forEachLogEntry } from './sqlite-log.js';
import { INSERT_RUN_SQL, PendingList, decodeEntries, insertRuns } from './sqlite-runs.js';

/**
 * Why records are written twice, first to the log and then in runs: vehicles report about once a
 * second, so one group commit holds about one record per vehicle. Storing each record where its
 * vehicle's others are (a B-tree on (vehicle, seq)) rewrites one 4 KB page per record per commit;
 * and an index on (vehicle, seq) beside rows in arrival order cost a B-tree insert per message,
 * and left one vehicle's records one per page, so a history read from a cold cache cost a disk read
 * per record. Instead a commit's records go into one row of `uplink_log` (sqlite-log.ts), stay in
 * memory per vehicle, and every few seconds each vehicle's are written as one run: a row of
 * `uplink_runs` holding its consecutive seqs first_seq…last_seq and their records (sqlite-runs.ts).
 * That costs one insert per vehicle per write, not one per message, and a history read one page per
 * run. `meta.uplink_indexed_upto` is the position below which every record is in a run; the log
 * rows below it are deleted, and the records above it are found from memory on the appender's
 * connection, or by reading the log on another connection. After a crash the records above the
 * mark are read back from the log, which holds what was acked until its runs are written.
 */
export const INDEXED_UPTO_KEY = 'uplink_indexed_upto';

/**
 * Pending entries that make a run write due at once, besides the timer: it bounds the memory they
 * take and the part of the log a reader on another connection reads (worker mode).
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

/** Emptied pending lists kept for reuse, at most, and the largest kept (about 4 MB in all). */
const FREE_LISTS = 1_024;
const FREE_LIST_BYTES = 4_096;

/** Runs fetched per query by a read. */
const RUNS_PER_READ = 16;

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
   * `uplink_runs` and its (vkey, last_seq) index, and a history read one disk read per run; holding
   * them until RUN_TARGET entries or this many rows makes longer runs and far fewer inserts. The
   * cost is the log above the mark: a reload after a crash reads it, and a reader on another
   * connection reads it on every read, so only the appender whose readers share its connection
   * (in-process, reading from memory) holds entries.
   */
  holdRows?: number;
}

/**
 * Rows not yet in `uplink_runs`, per vehicle key: their entries and encoded records (PendingList).
 * They are written a slice of vehicles at a time (write(max), then written() once that committed),
 * so one write's stall is bounded however many vehicles report. The mark
 * (`meta.uplink_indexed_upto`) is then the highest position below which every record is in a run,
 * and the log rows below it are deleted in the same transaction; records above it may be in runs
 * already (their vehicle's slice went first), so whoever reads records above the mark skips the seqs
 * its vehicle's runs hold.
 *
 * The map's insertion order is the order of each list's first id: a list is created by the newest
 * row (ids ascend as rows are added, and a reload adds them in id order) and only ever deleted
 * whole. The oldest lists are its first ones, and the mark is found from the front.
 */
export class PendingIndex {
  private byKey = new Map<number, PendingList>();
  /** Emptied lists, reused (FREE_LISTS at most). */
  private readonly free: PendingList[] = [];
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
  private readonly dropRows: Database.Statement;

  constructor(db: Database.Database, options: PendingIndexOptions = {}) {
    this.holdRows = Math.max(0, options.holdRows ?? 0);
    this.upto = db.prepare('SELECT value FROM meta WHERE key = ?').pluck();
    this.tail = db.prepare('SELECT id, body FROM uplink_log WHERE last > ? ORDER BY id').raw();
    this.indexedTo = db.prepare('SELECT max(last_seq) FROM uplink_runs WHERE vkey = ?').pluck();
    this.insert = db.prepare(INSERT_RUN_SQL);
    this.setUpto = db.prepare(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    );
    this.dropRows = db.prepare('DELETE FROM uplink_log WHERE id <= ? AND last <= ?');
    this.reload();
  }

  /**
   * Rebuilds the entries from the log records above the mark that no run holds yet (on open, and
   * after a rollback).
   */
  reload(): void {
    this.byKey = new Map();
    this.ready = [];
    this.entries = 0;
    const upto = Number((this.upto.get(INDEXED_UPTO_KEY) as string | undefined) ?? 0);
    this.maxId = upto;
    // Read whole first: no other statement may run while one iterates.
    const logs = this.tail.all(upto) as [number, Buffer][];
    const indexed = new Map<number, number>();
    for (const [id, body] of logs) {
      forEachLogEntry(id, body, (vkey, seq, pos, from, to) => {
        if (pos <= upto) return;
        let done = indexed.get(vkey);
        if (done === undefined) {
          done = (this.indexedTo.get(vkey) as number | null) ?? 0;
          indexed.set(vkey, done);
        }
        if (seq > done) this.add(vkey, seq, pos, body, from, to);
      });
    }
  }

  /** Adds a committed record: its entry, encoded, is `src[from, to)` (PendingList.addEncoded). */
  add(vkey: number, seq: number, pos: number, src: Buffer, from: number, to: number): void {
    let list = this.byKey.get(vkey);
    if (list === undefined) this.byKey.set(vkey, (list = this.free.pop() ?? new PendingList()));
    list.addEncoded(seq, pos, src, from, to);
    if (list.count === RUN_TARGET && this.holdRows > 0) this.ready.push(vkey);
    if (pos > this.maxId) this.maxId = pos;
    this.entries++;
  }

  /** A vehicle's rows not yet in runs; undefined when it has none. */
  get(vkey: number): PendingList | undefined {
    return this.byKey.get(vkey);
  }

  /** Vehicles with entries. */
  get size(): number {
    return this.byKey.size;
  }

  /**
   * An index write is due before the timer: enough full runs wait, or (without holdRows, or far
   * past it) enough entries, which bounds their memory and the log above the mark.
   */
  get due(): boolean {
    if (this.holdRows === 0) return this.entries >= INDEX_WRITE_ENTRIES;
    return (
      this.ready.length >= INDEX_WRITE_RUNS || this.entries >= this.holdRows + INDEX_WRITE_ENTRIES
    );
  }

  /**
   * Writes the runs of up to `max` vehicles, moves the mark and deletes the rows below it: those
   * with RUN_TARGET entries, then those waiting longest (every vehicle without holdRows; with it,
   * those holdRows or more rows behind the newest, or all of them when `everyone`). The caller runs
   * this inside a transaction and passes the keys it returns to written() once it committed.
   */
  write(max = Infinity, everyone = false): number[] {
    const keys: number[] = [];
    const chosen = new Set<number>();
    if (this.holdRows > 0 && !everyone) {
      let i = 0;
      for (; i < this.ready.length && keys.length < max; i++) {
        const vkey = this.ready[i]!;
        const list = this.byKey.get(vkey);
        if (list === undefined || list.count < RUN_TARGET || chosen.has(vkey)) continue;
        chosen.add(vkey);
        keys.push(vkey);
      }
      this.ready = i === this.ready.length ? [] : this.ready.slice(i);
    }
    const behind = this.holdRows > 0 && !everyone ? this.maxId - this.holdRows : Infinity;
    for (const [vkey, list] of this.byKey) {
      if (keys.length >= max || list.first > behind) break;
      if (chosen.has(vkey)) continue;
      chosen.add(vkey);
      keys.push(vkey);
    }
    if (keys.length === 0) return keys;
    // In key order within the slice: neighbouring keys share B-tree pages.
    keys.sort((a, b) => a - b);
    for (const vkey of keys) insertRuns(this.insert, vkey, this.byKey.get(vkey)!);
    // Below the first id still waiting, every row is in a run: the first list not written, in map
    // order (the order of first ids).
    let upto = this.maxId;
    for (const [vkey, list] of this.byKey) {
      if (chosen.has(vkey)) continue;
      upto = list.first - 1;
      break;
    }
    const before = Number((this.upto.get(INDEXED_UPTO_KEY) as string | undefined) ?? 0);
    if (upto > before) {
      this.setUpto.run(INDEXED_UPTO_KEY, String(upto));
      // The runs hold those records now: the log keeps only the rows with records above the mark.
      this.dropRows.run(upto, upto);
    }
    return keys;
  }

  /** Drops the entries a committed write() wrote. */
  written(keys: readonly number[]): void {
    for (const vkey of keys) {
      const list = this.byKey.get(vkey);
      if (list === undefined) continue;
      this.entries -= list.count;
      this.byKey.delete(vkey);
      // Kept for the next vehicle: a list grows to its run's size once, not once per run.
      if (this.free.length < FREE_LISTS && list.buf.length <= FREE_LIST_BYTES) {
        list.clear();
        this.free.push(list);
      }
    }
  }
}

/**
 * A vehicle's uplink rows after a seq, in seq order: the records in `uplink_runs`, then those
 * above the mark, from the appender's PendingIndex (same connection) or, on another connection, by
 * reading the log above the mark (bounded by the few seconds between run writes). With a log read
 * both parts are read in one read transaction, so an index write in between cannot split them.
 */
export class UplinkRowReader {
  private readonly key: Database.Statement;
  private readonly runs: Database.Statement;
  private readonly tail: Database.Statement | undefined;
  private readonly upto: Database.Statement | undefined;
  private readonly snapshot: Database.Transaction<
    (vkey: number, afterSeq: number, kindMin: number, limit: number) => UplinkRow[]
  >;

  /** `pending`: the appender's entries on this connection; null to read the log instead. */
  constructor(
    db: Database.Database,
    private readonly pending: PendingIndex | null,
  ) {
    this.key = db.prepare('SELECT key FROM vehicle_keys WHERE id = ?').pluck();
    this.runs = db
      .prepare(
        'SELECT first_seq, last_seq, body FROM uplink_runs WHERE vkey = ? AND last_seq > ? ORDER BY last_seq LIMIT ?',
      )
      .raw();
    if (pending === null) {
      this.upto = db.prepare('SELECT value FROM meta WHERE key = ?').pluck();
      this.tail = db.prepare('SELECT id, body FROM uplink_log WHERE last > ? ORDER BY id').raw();
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
    // A read transaction only when two statements must see one snapshot (the log read).
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
      for (const [firstSeq, lastSeq, body] of runs) {
        decodeEntries(body, 0, body.length, firstSeq, afterSeq, kindMin, limit, out, true);
        if (out.length === limit) return out;
        from = lastSeq;
      }
      if (runs.length < RUNS_PER_READ) break;
    }
    // Every unindexed row of a vehicle has a higher seq than its indexed ones (same order as ids),
    // and records above the mark may be in runs already: the rest starts after the last run read.
    const after = Math.max(afterSeq, from);
    if (this.pending === null) {
      // The log rows above the mark, every vehicle's records in them (bounded: the worker writes
      // every vehicle's runs every few seconds, or once INDEX_WRITE_ENTRIES wait).
      const upto = Number((this.upto!.get(INDEXED_UPTO_KEY) as string | undefined) ?? 0);
      for (const [id, body] of this.tail!.all(upto) as [number, Uint8Array][]) {
        forEachLogEntry(id, body, (k, seq, pos, start, end) => {
          if (k !== vkey || pos <= upto || seq <= after || out.length === limit) return;
          decodeEntries(body, start, end, seq, after, kindMin, limit, out, true);
        });
      }
      return out;
    }
    const list = this.pending.get(vkey);
    if (list !== undefined) list.rows(after, kindMin, limit, out);
    return out;
  }
}
