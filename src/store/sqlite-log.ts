// The SQLite uplink log: one row per group commit, holding its records until their runs are written.
//
// What makes an uplink message durable is its commit: the records of one group commit go in as one
// row of `uplink_log` (one insert however many records, instead of one B-tree row each), and are
// acked once it committed. Every few seconds each vehicle's records are written again, together,
// as a run (sqlite-runs.ts, sqlite-index.ts), and the log rows whose records are all in runs are
// deleted: the log holds only the last seconds (in-process, up to INDEX_HOLD_ROWS records).
//
// Each record has a position: the log row's id is the position of its first record, the others
// follow (a row holds positions id…last). Positions ascend with commits and never repeat, so they
// order a vehicle's records as their seqs do; a run is keyed by its last record's position.
import {
  encodeEntry,
  entryBound,
  entryEnd,
  cursor,
  readVarint,
  writeVarint,
} from './sqlite-runs.js';

export const INSERT_LOG_SQL =
  'INSERT INTO uplink_log (id, last, first_at, body) VALUES (?, ?, ?, ?)';

/**
 * One commit's log body: per record its vehicle key and seq (varints), then its entry (encodeEntry).
 * Reused from commit to commit; SQLite copies the body when the insert runs.
 */
export class LogBuilder {
  buf = Buffer.allocUnsafeSlow(64 * 1024);
  len = 0;
  /** The oldest received_at of the records added. */
  firstAt = Infinity;
  /** [vkey, seq, entry start, entry end, …] of the records added, in order. */
  readonly entries: number[] = [];

  reset(): void {
    this.len = 0;
    this.firstAt = Infinity;
    this.entries.length = 0;
  }

  get count(): number {
    return this.entries.length / 4;
  }

  add(
    vkey: number,
    seq: number,
    kind: number,
    ts: number,
    receivedAt: number,
    tp: string | Uint8Array | null,
    data: Uint8Array | string | null,
  ): void {
    const need = this.len + 18 + entryBound(tp, data);
    if (need > this.buf.length) {
      const next = Buffer.allocUnsafeSlow(Math.max(need, 2 * this.buf.length));
      this.buf.copy(next, 0, 0, this.len);
      this.buf = next;
    }
    let o = writeVarint(this.buf, this.len, vkey);
    o = writeVarint(this.buf, o, seq);
    const end = encodeEntry(this.buf, o, seq, kind, ts, receivedAt, tp, data);
    this.entries.push(vkey, seq, o, end);
    this.len = end;
    if (receivedAt < this.firstAt) this.firstAt = receivedAt;
  }

  body(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

/**
 * Calls `fn` for each record of the log row `id` with body `body`: its vehicle key, seq, position,
 * and its entry as `body[from, to)`.
 */
export function forEachLogEntry(
  id: number,
  body: Uint8Array,
  fn: (vkey: number, seq: number, pos: number, from: number, to: number) => void,
): void {
  let o = 0;
  for (let pos = id; o < body.length; pos++) {
    readVarint(body, o);
    const vkey = cursor.v;
    readVarint(body, cursor.o);
    const seq = cursor.v;
    const from = cursor.o;
    o = entryEnd(body, from);
    fn(vkey, seq, pos, from, o);
  }
}
