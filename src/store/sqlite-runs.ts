// The records of an uplink run: one vehicle's consecutive seqs, stored together (schema 5).
//
// Why runs carry the records: stored in arrival order, one vehicle's records sit about one per 4 KB
// page when thousands of vehicles report, and a history read from a cold page cache costs one disk
// read per record (benchmarks.md, "History reads"). A run holds up to RUN_MAX records of one
// vehicle in one row of `uplink_runs`, so the same read costs one disk read per run. A record is
// encoded once, into its commit's log row (sqlite-log.ts); its entry is copied into its vehicle's
// PendingList after the commit and written with the list as a run a few seconds later.
import type Database from 'better-sqlite3';
import { TRACE_IDS_BYTES as PACKED_TRACEPARENT_BYTES } from '../observability/trace.js';
// Called, never used at load: sqlite-index.ts imports this module too.
import { packTraceparent, type UplinkRow } from './sqlite-index.js';

/**
 * An entry, in memory and in a run's body, in seq order (the seq itself is implied: first_seq and
 * the entry's place):
 * - flags (1 byte): kind in bits 0–1 (KIND_*), traceparent in bits 2–3 (TP_*), data in bits 4–5 (DATA_*);
 * - received_at: unsigned LEB128;
 * - the timestamp as a zigzag LEB128 difference from received_at (not for a hole: its ts is 0);
 * - the traceparent: TP_PACKED: 21 bytes (packTraceparent's layout); TP_TEXT: length + UTF-8;
 *   TP_SAME (in pending lists and run bodies, never in the log): the one of the entry before, which
 *   is how a session's records share it;
 * - the data: length + bytes (DATA_BLOB: the TLVs as received; DATA_TEXT: the JSON of the data).
 * Numbers go through arithmetic, not bit operations: times and ids pass 2^31.
 */
const KIND_TELEMETRY = 0;
const KIND_EVENT = 1;
const KIND_HOLE = 2;
const TP_NONE = 0;
const TP_PACKED = 1 << 2;
const TP_TEXT = 2 << 2;
const TP_SAME = 3 << 2;
const TP_MASK = 3 << 2;
const DATA_NONE = 0;
const DATA_BLOB = 1 << 4;
const DATA_TEXT = 2 << 4;
const DATA_MASK = 3 << 4;

/** Records per run at most: a read that starts inside a run decodes at most this many. */
export const RUN_MAX = 256;

const packScratch = Buffer.alloc(PACKED_TRACEPARENT_BYTES);

/** Writes `v` (0 ≤ v < 2^53) as an unsigned LEB128 varint at `buf[o]`; the offset after it. */
export function writeVarint(buf: Buffer, o: number, v: number): number {
  while (v >= 0x80) {
    buf[o++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  buf[o++] = v;
  return o;
}

/** A varint's value and the offset after it, in one reused pair (no allocation per number). */
export const cursor = { v: 0, o: 0 };

/** Reads the varint at `buf[o]` into `cursor`. */
export function readVarint(buf: Uint8Array, o: number): void {
  let v = 0;
  let scale = 1;
  let b: number;
  do {
    b = buf[o++]!;
    v += (b & 0x7f) * scale;
    scale *= 0x80;
  } while (b & 0x80);
  cursor.v = v;
  cursor.o = o;
}

/**
 * Copies `src[from, to)` to `dst` at `at`; returns the offset after it. A loop for the short
 * copies of entries: Buffer#copy and Uint8Array#set each cost more in their call than ~100 bytes.
 */
function copyBytes(src: Uint8Array, from: number, to: number, dst: Uint8Array, at: number): number {
  if (to - from >= 256) {
    dst.set(src.subarray(from, to), at);
    return at + to - from;
  }
  while (from < to) dst[at++] = src[from++]!;
  return at;
}

const zigzag = (d: number): number => (d >= 0 ? 2 * d : -2 * d - 1);
const unzigzag = (z: number): number => (z % 2 === 0 ? z / 2 : -(z + 1) / 2);

/** The traceparent as packTraceparent packs it into `packScratch`, or null: text (or none). */
function packed(tp: string | Uint8Array | null, seq: number): Uint8Array | null {
  if (tp instanceof Uint8Array) return tp;
  if (typeof tp === 'string' && packTraceparent(tp, seq, packScratch)) return packScratch;
  return null;
}

/**
 * Bytes an entry of these values takes at most (varints counted at their widest: 9 bytes for a
 * time or length, 11 for a zigzag difference).
 */
export function entryBound(
  tp: string | Uint8Array | null,
  data: Uint8Array | string | null,
): number {
  const tpBytes =
    tp === null ? 0 : tp instanceof Uint8Array ? PACKED_TRACEPARENT_BYTES : 9 + 3 * tp.length;
  const dataBytes =
    data === null ? 0 : 9 + (typeof data === 'string' ? 3 * data.length : data.length);
  // A text traceparent that packs takes less than its text bound.
  return 1 + 9 + 11 + Math.max(tpBytes, PACKED_TRACEPARENT_BYTES) + dataBytes;
}

/**
 * Writes the entry of a row at `buf[o]` (room for entryBound bytes) and returns the offset after
 * it. `kind`: 0 telemetry, 1 event, −1 hole; `tp`: the traceparent as the tracer's packed ids (a
 * Uint8Array of PACKED_TRACEPARENT_BYTES), as text, or null; `data`: the TLVs, the JSON text, or
 * null (a hole).
 */
export function encodeEntry(
  buf: Buffer,
  o: number,
  seq: number,
  kind: number,
  ts: number,
  receivedAt: number,
  tp: string | Uint8Array | null,
  data: Uint8Array | string | null,
): number {
  const tpBytes = packed(tp, seq);
  const tpText = tpBytes === null && typeof tp === 'string' ? tp : null;
  const hole = kind < 0;
  buf[o++] =
    (hole ? KIND_HOLE : kind === 1 ? KIND_EVENT : KIND_TELEMETRY) |
    (tpBytes !== null ? TP_PACKED : tpText !== null ? TP_TEXT : TP_NONE) |
    (data === null ? DATA_NONE : typeof data === 'string' ? DATA_TEXT : DATA_BLOB);
  o = writeVarint(buf, o, receivedAt);
  if (!hole) o = writeVarint(buf, o, zigzag(ts - receivedAt));
  if (tpBytes !== null) {
    // The tracer's ids or packScratch: PACKED_TRACEPARENT_BYTES long (no view to make per record).
    buf.set(tpBytes, o);
    o += PACKED_TRACEPARENT_BYTES;
  } else if (tpText !== null) {
    const n = Buffer.byteLength(tpText);
    o = writeVarint(buf, o, n);
    o += buf.write(tpText, o, 'utf8');
  }
  if (data !== null) {
    if (typeof data === 'string') {
      const n = Buffer.byteLength(data);
      o = writeVarint(buf, o, n);
      o += buf.write(data, o, 'utf8');
    } else {
      o = writeVarint(buf, o, data.length);
      o = copyBytes(data, 0, data.length, buf, o);
    }
  }
  return o;
}

/** Where the traceparent of the entry at `buf[o]` starts (its data, when it has none). */
function tpOffset(buf: Uint8Array, o: number): number {
  const flags = buf[o++]!;
  while (buf[o++]! & 0x80);
  if ((flags & 3) !== KIND_HOLE) while (buf[o++]! & 0x80);
  return o;
}

/** The offset after the entry at `buf[o]` (a TP_SAME included). */
export function entryEnd(buf: Uint8Array, o: number): number {
  const flags = buf[o]!;
  o = tpOffset(buf, o);
  const t = flags & TP_MASK;
  if (t === TP_PACKED) o += PACKED_TRACEPARENT_BYTES;
  else if (t === TP_TEXT) {
    readVarint(buf, o);
    o = cursor.o + cursor.v;
  }
  if ((flags & DATA_MASK) !== DATA_NONE) {
    readVarint(buf, o);
    o = cursor.o + cursor.v;
  }
  return o;
}

/**
 * An entry's values in PendingList.add's order: seq, position, kind (0 telemetry, 1 event, −1 hole),
 * ts, received_at, traceparent, data; as a migration reads old rows and tests write them.
 */
export type EntryValues = [
  number,
  number,
  number,
  number,
  number,
  string | Uint8Array | null,
  Uint8Array | string | null,
];

let entryScratch = Buffer.allocUnsafeSlow(4096);

/**
 * One vehicle's entries not yet in a run: [seq, position, offset, …] ascending (a position is the
 * entry's place in the uplink log, see sqlite-log.ts), and their encoded records back to back in
 * `buf` (entry i spans offset i to offset i + 1, or to `len`), already in a run body's form: a
 * traceparent equal to the entry before's is written as TP_SAME. So a run that starts with the
 * list is a slice of it.
 */
export class PendingList {
  readonly entries: number[] = [];
  buf: Buffer;
  len = 0;
  /** Where in `buf` the previous entry's traceparent is, when it has a packed one; else −1. */
  private lastTp = -1;

  constructor(capacity = 512) {
    this.buf = Buffer.allocUnsafeSlow(capacity);
  }

  /** Entries held. */
  get count(): number {
    return this.entries.length / 3;
  }

  /** Empties the list for reuse, keeping its memory. */
  clear(): void {
    this.entries.length = 0;
    this.len = 0;
    this.lastTp = -1;
  }

  /** The position of the first entry (the oldest). */
  get first(): number {
    return this.entries[1]!;
  }

  private reserve(bytes: number): void {
    if (this.len + bytes <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + bytes) cap *= 2;
    const next = Buffer.allocUnsafeSlow(cap);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  /** Appends an entry of these values (encodeEntry). */
  add(
    seq: number,
    pos: number,
    kind: number,
    ts: number,
    receivedAt: number,
    tp: string | Uint8Array | null,
    data: Uint8Array | string | null,
  ): void {
    const bound = entryBound(tp, data);
    if (entryScratch.length < bound) entryScratch = Buffer.allocUnsafeSlow(2 * bound);
    const end = encodeEntry(entryScratch, 0, seq, kind, ts, receivedAt, tp, data);
    this.addEncoded(seq, pos, entryScratch, 0, end);
  }

  /** Appends an entry encoded already (encodeEntry's form): `src[from, to)`. */
  addEncoded(seq: number, pos: number, src: Uint8Array, from: number, to: number): void {
    this.reserve(to - from);
    const buf = this.buf;
    const at = this.len;
    this.entries.push(seq, pos, at);
    const flags = src[from]!;
    if ((flags & TP_MASK) !== TP_PACKED) {
      this.len = copyBytes(src, from, to, buf, at);
      this.lastTp = -1;
      return;
    }
    const p = tpOffset(src, from);
    const last = this.lastTp;
    let same = last >= 0;
    for (let i = 0; same && i < PACKED_TRACEPARENT_BYTES; i++) same = buf[last + i] === src[p + i];
    if (!same) {
      this.len = copyBytes(src, from, to, buf, at);
      this.lastTp = at + (p - from);
      return;
    }
    buf[at] = (flags & ~TP_MASK) | TP_SAME;
    const o = copyBytes(src, from + 1, p, buf, at + 1);
    this.len = copyBytes(src, p + PACKED_TRACEPARENT_BYTES, to, buf, o);
  }

  /** The entries with seq > afterSeq, decoded (see decodeEntries). */
  rows(afterSeq: number, kindMin: number, limit: number, out: UplinkRow[]): void {
    const e = this.entries;
    if (e.length === 0 || e[e.length - 3]! <= afterSeq) return;
    // From the first entry: a TP_SAME refers to the entries before it.
    decodeEntries(this.buf, e[2]!, this.len, e[0]!, afterSeq, kindMin, limit, out, false);
  }
}

let runScratch = Buffer.allocUnsafeSlow(64 * 1024);

/**
 * The body of a run of entries [from, to) of `list`. Its entries are in a run's form already, so
 * a run that starts with the list is a view of it; one that starts later (a split run) gets its
 * first entry's traceparent written out in full in a shared buffer. SQLite copies it when bound.
 */
export function runBody(list: PendingList, from: number, to: number): Buffer {
  const e = list.entries;
  const src = list.buf;
  const start = e[3 * from + 2]!;
  const end = to * 3 < e.length ? e[3 * to + 2]! : list.len;
  const flags = src[start]!;
  if (from === 0 || (flags & TP_MASK) !== TP_SAME) return src.subarray(start, end);
  // The traceparent it refers to: the last one written in full before it.
  let tp = -1;
  for (let i = 0; i < from; i++) {
    const o = e[3 * i + 2]!;
    if ((src[o]! & TP_MASK) === TP_PACKED) tp = tpOffset(src, o);
  }
  const need = end - start + PACKED_TRACEPARENT_BYTES;
  if (runScratch.length < need)
    runScratch = Buffer.allocUnsafeSlow(Math.max(need, 2 * runScratch.length));
  const out = runScratch;
  const p = tpOffset(src, start);
  out[0] = (flags & ~TP_MASK) | TP_PACKED;
  let o = copyBytes(src, start + 1, p, out, 1);
  o = copyBytes(src, tp, tp + PACKED_TRACEPARENT_BYTES, out, o);
  o = copyBytes(src, p, end, out, o);
  return out.subarray(0, o);
}

/**
 * Decodes entries from `buf[o, end)`, the first one of seq `seq`, into `out` (those with a seq
 * after `afterSeq` and a kind ≥ kindMin: −1 holes too, 0 records only) until `out` holds `limit`
 * (−1: no limit). The rows' data and packed traceparents are views of `buf` when `views` (a run's
 * body, read from SQLite, is the rows' own) and copies otherwise (a pending list's buffer is reused).
 */
export function decodeEntries(
  buf: Uint8Array,
  o: number,
  end: number,
  seq: number,
  afterSeq: number,
  kindMin: number,
  limit: number,
  out: UplinkRow[],
  views: boolean,
): void {
  let tp: string | Uint8Array | null = null;
  for (; o < end && out.length !== limit; seq++) {
    const flags = buf[o++]!;
    readVarint(buf, o);
    const receivedAt = cursor.v;
    o = cursor.o;
    const k = flags & 3;
    let ts = 0;
    if (k !== KIND_HOLE) {
      readVarint(buf, o);
      ts = receivedAt + unzigzag(cursor.v);
      o = cursor.o;
    }
    const t = flags & TP_MASK;
    if (t === TP_PACKED) {
      const v = buf.subarray(o, o + PACKED_TRACEPARENT_BYTES);
      tp = views ? v : Uint8Array.from(v);
      o += PACKED_TRACEPARENT_BYTES;
    } else if (t === TP_TEXT) {
      readVarint(buf, o);
      tp = Buffer.from(buf.buffer, buf.byteOffset + cursor.o, cursor.v).toString('utf8');
      o = cursor.o + cursor.v;
    } else if (t === TP_NONE) tp = null;
    let data: Uint8Array | string | null = null;
    const d = flags & DATA_MASK;
    if (d !== DATA_NONE) {
      readVarint(buf, o);
      const from = cursor.o;
      o = from + cursor.v;
      if (d === DATA_TEXT)
        data = Buffer.from(buf.buffer, buf.byteOffset + from, cursor.v).toString('utf8');
      else data = views ? buf.subarray(from, o) : Buffer.from(buf.subarray(from, o));
    }
    const kind = k === KIND_HOLE ? -1 : k;
    if (kind < kindMin || seq <= afterSeq) continue;
    out.push({ seq, kind, ts, received_at: receivedAt, traceparent: tp, data });
  }
}

/** Inserts a run (the statement insertRuns takes). */
export const INSERT_RUN_SQL =
  'INSERT OR REPLACE INTO uplink_runs (last_id, vkey, first_seq, last_seq, first_at, last_at, records, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)';

/**
 * Facts of entries [from, to) of `list` that retention goes by: the oldest received_at of a record
 * (holes not counted; the newest entry's when there is none), the newest of any entry, and the
 * records (holes not counted).
 */
function runFacts(list: PendingList, from: number, to: number): [number, number, number] {
  const e = list.entries;
  const buf = list.buf;
  let firstAt = Infinity;
  let lastAt = 0;
  let records = 0;
  for (let i = from; i < to; i++) {
    const o = e[3 * i + 2]!;
    readVarint(buf, o + 1);
    if (cursor.v > lastAt) lastAt = cursor.v;
    if ((buf[o]! & 3) === KIND_HOLE) continue;
    records++;
    if (cursor.v < firstAt) firstAt = cursor.v;
  }
  return [firstAt === Infinity ? lastAt : firstAt, lastAt, records];
}

/**
 * Writes a vehicle's entries as runs: a run ends where the seqs stop being consecutive or the
 * positions ascending, or at RUN_MAX entries. `insert` is INSERT_RUN_SQL.
 */
export function insertRuns(insert: Database.Statement, vkey: number, list: PendingList): void {
  const e = list.entries;
  const n = e.length / 3;
  let start = 0;
  for (let i = 1; i <= n; i++) {
    if (
      i < n &&
      i - start < RUN_MAX &&
      e[3 * i] === e[3 * i - 3]! + 1 &&
      e[3 * i + 1]! > e[3 * i - 2]!
    )
      continue;
    const [firstAt, lastAt, records] = runFacts(list, start, i);
    const body = runBody(list, start, i);
    insert.run(e[3 * i - 2], vkey, e[3 * start], e[3 * i - 3], firstAt, lastAt, records, body);
    start = i;
  }
}

/** A run after trimRun: its new body and facts, and how many records became holes. */
export interface TrimmedRun {
  body: Buffer;
  firstAt: number;
  lastAt: number;
  records: number;
  removed: number;
}

/**
 * Retention inside a run: its records received before `before`, at most `max` of them in seq
 * order, become holes (a hole keeps its received_at, so the run goes whole once every entry is
 * that old). The seqs stay consumed; nothing else of the run changes.
 */
export function trimRun(
  body: Uint8Array,
  firstSeq: number,
  before: number,
  max: number,
): TrimmedRun {
  const rows: UplinkRow[] = [];
  decodeEntries(body, 0, body.length, firstSeq, 0, -1, -1, rows, true);
  const list = new PendingList(body.length + 64);
  let removed = 0;
  for (const r of rows) {
    if (r.kind >= 0 && r.received_at < before && removed < max) {
      removed++;
      list.add(r.seq, 0, -1, 0, r.received_at, null, null);
    } else list.add(r.seq, 0, r.kind, r.ts, r.received_at, r.traceparent, r.data);
  }
  const [firstAt, lastAt, records] = runFacts(list, 0, list.count);
  // A copy: runBody may give a view of a shared buffer.
  return { body: Buffer.from(runBody(list, 0, list.count)), firstAt, lastAt, records, removed };
}
